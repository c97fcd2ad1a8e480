//! XEP-0484 FAST inside SASL2: offered as `<fast/>` in SASL2's `<inline/>` with the
//! HT-SHA-256-NONE mechanism; `<request-token/>` in an `<authenticate/>` gets a token in
//! `<success/>`; an `<authenticate/>` with that mechanism and `<fast/>` logs in with it. The
//! tokens themselves live in [`postern_accounts::fast`]; this file speaks the protocol.

use std::time::Duration;

use minidom::Element;
use postern_accounts::fast::HT_SHA_256_NONE;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;

use crate::features::Features;
use crate::server::Server;

/// The `[xmpp.fast]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastConfig {
    /// How long a token stays valid; each login with it can get a fresh one.
    #[serde(deserialize_with = "crate::config::duration")]
    pub token_lifetime: Duration,
}

impl Default for FastConfig {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Longest user-agent id a token is bound to.
const MAX_AGENT: usize = 128;

/// The offer inside SASL2's `<inline/>`: the FAST mechanisms registered, if any.
pub fn feature(offers: &Features) -> Option<Element> {
    let mut fast = Element::bare("fast", ns::FAST);
    for m in offers.fast_mechanisms() {
        fast.append_child(
            Element::builder("mechanism", ns::FAST)
                .append(m.name)
                .build(),
        );
    }
    fast.children().next().is_some().then_some(fast)
}

/// The device a SASL2 `<authenticate/>` comes from (its `<user-agent id/>`).
pub fn agent(request: &Element) -> Option<&str> {
    request
        .get_child("user-agent", ns::SASL2)
        .and_then(|u| u.attr("id"))
        .filter(|id| !id.is_empty() && id.len() <= MAX_AGENT)
}

/// An HT-SHA-256-NONE login of `account` with `proof`; `Ok(Some(server proof))` when a
/// token of that device matches. A request without `<fast/>` or without a device id fails.
pub async fn login(
    server: &Server,
    request: &Element,
    account: &BareJid,
    proof: &[u8],
) -> Result<Option<Vec<u8>>, postern_accounts::AccountError> {
    let (Some(fast), Some(agent)) = (request.get_child("fast", ns::FAST), agent(request)) else {
        return Ok(None);
    };
    let invalidate = matches!(fast.attr("invalidate"), Some("true" | "1"));
    server
        .accounts
        .fast_verify(account.as_str(), agent, HT_SHA_256_NONE, proof, invalidate)
        .await
}

/// An HT initial response, `authcid NUL proof`, split.
pub fn split(data: &[u8]) -> Option<(&str, &[u8])> {
    let nul = data.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&data[..nul]).ok()?, &data[nul + 1..]))
}

/// `<token/>` for `<success/>`, when the request asked for one (and names its device).
pub async fn issue(server: &Server, request: &Element, account: &BareJid) -> Option<Element> {
    let wanted = request.get_child("request-token", ns::FAST)?;
    if wanted.attr("mechanism") != Some(HT_SHA_256_NONE) {
        return None;
    }
    let agent = agent(request)?;
    let lifetime = server.config.fast.token_lifetime;
    match server
        .accounts
        .fast_issue(account.as_str(), agent, HT_SHA_256_NONE, lifetime)
        .await
    {
        Ok(t) => {
            let expiry = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.expires_ms)
                .unwrap_or_else(chrono::Utc::now)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            Some(
                Element::builder("token", ns::FAST)
                    .attr(minidom::rxml::xml_ncname!("token").to_owned(), t.token)
                    .attr(minidom::rxml::xml_ncname!("expiry").to_owned(), expiry)
                    .build(),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "could not issue a FAST token");
            None
        }
    }
}
