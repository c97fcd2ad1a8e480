//! SASL (RFC 6120 §6): SCRAM-SHA-1/256/512 and their -PLUS variants with channel binding,
//! and PLAIN (always inside TLS here). Unknown users and wrong passwords get the same answer,
//! `not-authorized`, after the same work. The same mechanisms run inside XEP-0388 SASL2
//! (`<authenticate/>`), whose success is taken on by [`super::sasl2`].

use std::net::IpAddr;

use base64::Engine;
use futures::SinkExt;
use minidom::Element;
use postern_accounts::scram::{ChannelBindings, ScramHash, ScramServer};
use tokio::time::Instant;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;
use xmpp_parsers::sasl_cb::{SaslChannelBinding, Type as CbType};
use xmpp_parsers::stream_error::DefinedCondition;
use xmpp_parsers::stream_features::StreamFeatures;

use super::{Xml, close, negotiation_read, open_accepted, stream_error};
use crate::features::{Mechanism, MechanismKind, Stage};
use crate::router::RouterBuilder;
use crate::server::Server;
use crate::stanza::{Inbound, Sasl};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An authenticated stream, after the SASL stream restart; it can only bind a resource.
pub struct Authenticated {
    pub(super) xml: Xml,
    pub(super) jid: BareJid,
}

/// Where authentication led.
pub(super) enum Authed {
    /// Authenticated; a resource is still to be bound.
    Stream(Authenticated),
    /// SASL2 with Bind2: bound in the same round trip.
    Bound(super::bind::Bound),
    /// SASL2 with an inline resumption: the connection went to the session it resumed.
    Handed,
}

/// The namespace of an exchange's framing: XEP-0388 SASL2 when the client sent an
/// `<authenticate/>` (no restart after it), RFC 6120 SASL otherwise.
fn framing(request: Option<&Element>) -> &'static str {
    if request.is_some() {
        ns::SASL2
    } else {
        ns::SASL
    }
}

/// The mechanisms this file runs, in order of preference (channel binding first).
pub(super) fn register(r: &mut RouterBuilder) {
    for plus in [true, false] {
        for hash in ScramHash::ALL {
            r.sasl_mechanism(Mechanism {
                name: hash.mechanism_name(plus),
                kind: MechanismKind::Scram { hash, plus },
            });
        }
    }
    r.sasl_mechanism(Mechanism {
        name: "PLAIN",
        kind: MechanismKind::Plain,
    });
    r.sasl_mechanism(Mechanism {
        name: postern_accounts::fast::HT_SHA_256_NONE,
        kind: MechanismKind::FastToken,
    });
}

/// Stream features of a secured, unauthenticated stream: SASL mechanisms, the XEP-0440
/// binding types, and XEP-0388 SASL2 with what may be done inline (Bind2 and its features,
/// and what modules offer).
pub fn features(server: &Server, bindings: &ChannelBindings) -> StreamFeatures {
    let mut types = Vec::new();
    if bindings.tls_exporter.is_some() {
        types.push(CbType::TlsExporter);
    }
    if bindings.tls_server_end_point.is_some() {
        types.push(CbType::TlsServerEndPoint);
    }
    let offers = server.router.offers();
    let names: Vec<String> = offers
        .mechanisms(bindings)
        .map(|m| m.name.to_owned())
        .collect();
    let inline = xmpp_parsers::sasl2::InlineFeatures {
        bind2: Some(xmpp_parsers::bind2::BindFeature {
            inline_features: offers.bind2_vars().map(str::to_owned).collect(),
        }),
        sm: None,
        payloads: offers
            .sasl2_inline()
            .iter()
            .cloned()
            .chain(super::fast::feature(offers))
            .collect(),
    };
    StreamFeatures {
        sasl_mechanisms: names.iter().cloned().collect(),
        sasl_cb: (!types.is_empty()).then_some(SaslChannelBinding { types }),
        sasl2: Some(xmpp_parsers::sasl2::Authentication {
            mechanisms: names,
            inline: Some(inline),
        }),
        others: offers.stream(Stage::BeforeAuth).to_vec(),
        ..StreamFeatures::default()
    }
}

/// Why one authentication attempt failed.
enum Failure {
    /// Answer `<failure><condition/></failure>` and let the client try again. `account` is
    /// the address tried, for throttling.
    Sasl {
        condition: &'static str,
        account: Option<String>,
    },
    /// The stream ends (the client broke protocol or went away).
    Close(Option<xmpp_parsers::stream_error::StreamError>),
}

fn fail(condition: &'static str) -> Failure {
    Failure::Sasl {
        condition,
        account: None,
    }
}

/// Refusals of any kind on one connection before it is closed.
const MAX_REFUSALS: u32 = 10;

/// Runs SASL until success (then restarts the stream, or for SASL2 goes on inline) or the
/// stream ends.
pub(super) async fn negotiate(
    server: &Server,
    mut xml: Xml,
    domain: String,
    bindings: &ChannelBindings,
    ip: IpAddr,
    deadline: Instant,
) -> Option<Authed> {
    // Credential failures are capped by config; other refusals (a mechanism or binding type
    // the client guessed wrong, as slixmpp does on TLS 1.2) are not guesses, but are bounded too.
    let mut wrong_credentials = 0;
    let mut refusals = 0;
    loop {
        let el = match negotiation_read(&mut xml, deadline).await {
            Ok(el) => el,
            Err(e) => return close(xml, e).await,
        };
        let mut request = None;
        let attempt = match Inbound::decode(el) {
            Inbound::Sasl(Sasl::Auth { mechanism, data }) => {
                let exchange = Exchange::new(server, &domain, bindings, deadline, None);
                exchange.run(&mut xml, &mechanism, data).await
            }
            Inbound::Sasl(Sasl::Authenticate(el)) => {
                let mechanism = el.attr("mechanism").unwrap_or_default().to_owned();
                let data = el
                    .get_child("initial-response", ns::SASL2)
                    .map_or(Ok(Vec::new()), |c| crate::stanza::sasl_data(&c.text()));
                let exchange = Exchange::new(server, &domain, bindings, deadline, Some(&el));
                let attempt = exchange.run(&mut xml, &mechanism, data).await;
                request = Some(el);
                attempt
            }
            Inbound::Sasl(Sasl::Abort) => Err(fail("aborted")),
            Inbound::Sasl(Sasl::Response(_)) => Err(fail("malformed-request")),
            Inbound::Stanza(_) | Inbound::BadStanza { .. } => {
                Err(Failure::Close(Some(stream_error(
                    DefinedCondition::NotAuthorized,
                    "Authenticate before sending stanzas",
                ))))
            }
            Inbound::StartTls | Inbound::Other(_) => Err(Failure::Close(Some(stream_error(
                DefinedCondition::PolicyViolation,
                "Expected SASL authentication",
            )))),
        };
        match attempt {
            Ok((jid, additional)) => {
                server.auth_throttle.success(jid.as_str());
                tracing::info!(%jid, sasl2 = request.is_some(), "authenticated");
                if let Some(request) = request {
                    return super::sasl2::succeed(server, xml, jid, additional, *request).await;
                }
                let success = sasl_element("success", additional.map(|d| B64.encode(d)));
                xml.get_stream().expect_stream_header();
                xml.get_stream().features_due();
                let accepted = match xml.accept_reset(&success).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "no valid stream header after SASL success");
                        return None;
                    }
                };
                let (xml, _) = open_accepted(server, accepted, |_| bound_features(server)).await?;
                return Some(Authed::Stream(Authenticated { xml, jid }));
            }
            Err(Failure::Close(e)) => return close(xml, e).await,
            Err(Failure::Sasl { condition, account }) => {
                refusals += 1;
                if condition == "not-authorized" {
                    wrong_credentials += 1;
                    let delay = server.auth_throttle.failure(ip, account.as_deref());
                    tracing::info!(
                        account = account.as_deref().unwrap_or("-"),
                        ?delay,
                        "authentication failed"
                    );
                    tokio::time::sleep(delay).await;
                }
                let failure = Element::builder("failure", framing(request.as_deref()))
                    .append(Element::bare(condition, ns::SASL))
                    .build();
                xml.send(&failure).await.ok()?;
                if wrong_credentials >= server.config.limits.auth_attempts_per_connection
                    || refusals >= MAX_REFUSALS
                {
                    let e = stream_error(
                        DefinedCondition::PolicyViolation,
                        "Too many failed authentication attempts",
                    );
                    return close(xml, Some(e)).await;
                }
            }
        }
    }
}

/// Features after authentication: `<bind/>` plus what modules add.
pub(super) fn bound_features(server: &Server) -> StreamFeatures {
    StreamFeatures {
        others: server.router.offers().stream(Stage::Authenticated).to_vec(),
        ..StreamFeatures::default()
    }
}

/// The account address for a SASL authentication identity: a full address must be on the
/// stream's domain; a bare localpart gets the domain appended.
fn address(username: &str, domain: &str) -> Option<BareJid> {
    let addr = if username.contains('@') {
        username.to_owned()
    } else {
        format!("{username}@{domain}")
    };
    let jid: BareJid = addr.to_lowercase().parse().ok()?;
    (jid.node().is_some() && jid.domain().as_str() == domain).then_some(jid)
}

/// An authorization identity is only accepted when it names the authenticated account.
fn authzid_ok(authzid: Option<&str>, jid: &BareJid) -> bool {
    authzid.is_none_or(|a| a.is_empty() || a.to_lowercase() == jid.as_str())
}

type Attempt = Result<(BareJid, Option<Vec<u8>>), Failure>;

async fn plain(server: &Server, domain: &str, data: &[u8]) -> Attempt {
    let mut parts = data.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail("malformed-request"));
    };
    let (Ok(authzid), Ok(authcid), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
    ) else {
        return Err(fail("malformed-request"));
    };
    let jid = address(authcid, domain);
    // Verify even for an impossible address, so the timing says nothing.
    let candidate = jid
        .as_ref()
        .map_or_else(|| format!("invalid@{domain}"), |j| j.to_string());
    let ok = server
        .accounts
        .verify_password(&candidate, password)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password verification failed");
            fail("temporary-auth-failure")
        })?;
    match jid {
        Some(jid) if ok && authzid_ok(Some(authzid), &jid) => Ok((jid, None)),
        Some(jid) if ok => Err(Failure::Sasl {
            condition: "invalid-authzid",
            account: Some(jid.to_string()),
        }),
        jid => Err(Failure::Sasl {
            condition: "not-authorized",
            account: jid.map(|j| j.to_string()),
        }),
    }
}

/// One authentication attempt's context.
struct Exchange<'a> {
    server: &'a Server,
    domain: &'a str,
    bindings: &'a ChannelBindings,
    deadline: Instant,
    /// The SASL2 `<authenticate/>`, which FAST needs (device id, `<fast/>`).
    request: Option<&'a Element>,
}

impl<'a> Exchange<'a> {
    /// SASL framing with no `request`, SASL2 with one (the `<authenticate/>`).
    fn new(
        server: &'a Server,
        domain: &'a str,
        bindings: &'a ChannelBindings,
        deadline: Instant,
        request: Option<&'a Element>,
    ) -> Self {
        Exchange {
            server,
            domain,
            bindings,
            deadline,
            request,
        }
    }

    /// Runs `mechanism` from the client's first message `data`.
    async fn run(&self, xml: &mut Xml, mechanism: &str, data: Result<Vec<u8>, ()>) -> Attempt {
        let Ok(data) = data else {
            return Err(fail("incorrect-encoding"));
        };
        let offered = self.server.router.offers().mechanism(mechanism);
        let Some(m) = offered.filter(|m| m.usable(self.bindings)) else {
            return Err(fail("invalid-mechanism"));
        };
        match (m.kind, self.request) {
            (MechanismKind::Plain, _) => plain(self.server, self.domain, &data).await,
            (MechanismKind::Scram { hash, plus }, _) => self.scram(xml, hash, plus, &data).await,
            (MechanismKind::FastToken, Some(request)) => {
                fast(self.server, self.domain, request, &data).await
            }
            // FAST is part of SASL2 only.
            (MechanismKind::FastToken, None) => Err(fail("invalid-mechanism")),
        }
    }

    async fn scram(&self, xml: &mut Xml, hash: ScramHash, plus: bool, first: &[u8]) -> Attempt {
        let (server, domain, bindings, deadline) =
            (self.server, self.domain, self.bindings, self.deadline);
        let mut exchange = ScramServer::new(hash, plus, bindings.any(), bindings.clone());
        let client_first = exchange
            .client_first(first)
            .map_err(|e| fail(e.sasl_condition()))?;
        let jid = address(&client_first.username, domain);
        let account = jid.as_ref().map(|j| j.to_string());
        let keys = match &jid {
            Some(j) => server
                .accounts
                .scram_keys(j.as_str(), hash)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "credential lookup failed");
                    fail("temporary-auth-failure")
                })?,
            None => None,
        };
        let challenge = exchange.server_first(keys);
        let el = Element::builder("challenge", framing(self.request))
            .append(B64.encode(challenge))
            .build();
        xml.send(&el).await.map_err(|_| Failure::Close(None))?;
        let response = negotiation_read(xml, deadline)
            .await
            .map_err(Failure::Close)?;
        let data = match Inbound::decode(response) {
            Inbound::Sasl(Sasl::Response(Ok(d))) => d,
            Inbound::Sasl(Sasl::Response(Err(()))) => return Err(fail("incorrect-encoding")),
            Inbound::Sasl(Sasl::Abort) => return Err(fail("aborted")),
            _ => {
                return Err(Failure::Close(Some(stream_error(
                    DefinedCondition::NotAuthorized,
                    "Expected a SASL response",
                ))));
            }
        };
        match (exchange.client_final(&data), jid) {
            (Ok(server_final), Some(jid)) if authzid_ok(client_first.authzid.as_deref(), &jid) => {
                Ok((jid, Some(server_final)))
            }
            (Ok(_), Some(_)) => Err(Failure::Sasl {
                condition: "invalid-authzid",
                account,
            }),
            (Err(e), _) => Err(Failure::Sasl {
                condition: e.sasl_condition(),
                account,
            }),
            (Ok(_), None) => Err(Failure::Sasl {
                condition: "not-authorized",
                account,
            }),
        }
    }
}

/// An XEP-0484 token login (SASL2 only).
async fn fast(server: &Server, domain: &str, request: &Element, data: &[u8]) -> Attempt {
    let Some((authcid, proof)) = super::fast::split(data) else {
        return Err(fail("malformed-request"));
    };
    let Some(jid) = address(authcid, domain) else {
        return Err(fail("not-authorized"));
    };
    match super::fast::login(server, request, &jid, proof).await {
        Ok(Some(server_proof)) => Ok((jid, Some(server_proof))),
        Ok(None) => Err(Failure::Sasl {
            condition: "not-authorized",
            account: Some(jid.to_string()),
        }),
        Err(e) => {
            tracing::error!(error = %e, "FAST token check failed");
            Err(fail("temporary-auth-failure"))
        }
    }
}

fn sasl_element(name: &str, text: Option<String>) -> Element {
    let b = Element::builder(name, ns::SASL);
    match text {
        Some(t) => b.append(t).build(),
        None => b.build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_map_to_addresses_on_the_stream_domain_only() {
        assert_eq!(
            address("Alice", "example.com").map(|j| j.to_string()),
            Some("alice@example.com".into())
        );
        assert_eq!(
            address("alice@example.com", "example.com").map(|j| j.to_string()),
            Some("alice@example.com".into())
        );
        assert!(address("alice@other.org", "example.com").is_none());
        assert!(address("", "example.com").is_none());
    }

    #[test]
    fn plus_mechanisms_are_offered_only_with_a_binding_and_fast_only_inside_sasl2() {
        let mut r = RouterBuilder::default();
        register(&mut r);
        let router = r.build().expect("registry");
        let offers = router.offers();
        let names =
            |b: &ChannelBindings| -> Vec<&str> { offers.mechanisms(b).map(|m| m.name).collect() };
        let none = ChannelBindings {
            tls_exporter: None,
            tls_server_end_point: None,
        };
        assert!(!names(&none).iter().any(|m| m.ends_with("-PLUS")));
        assert_eq!(names(&none).first(), Some(&"SCRAM-SHA-512"));
        let some = ChannelBindings {
            tls_exporter: None,
            tls_server_end_point: Some(vec![1; 32]),
        };
        assert_eq!(names(&some).first(), Some(&"SCRAM-SHA-512-PLUS"));
        assert!(names(&some).contains(&"PLAIN"));
        assert!(!names(&some).contains(&"HT-SHA-256-NONE"));
        let fast: Vec<&str> = offers.fast_mechanisms().map(|m| m.name).collect();
        assert_eq!(fast, ["HT-SHA-256-NONE"]);
    }
}
