//! What follows a successful XEP-0388 SASL2 `<authenticate/>`: no stream restart; what the
//! client asked for inline is done before `<success/>` is written, so a client is back in one
//! round trip:
//!
//! - an inline `<resume/>` (or any element a module handles before binding, see
//!   [`crate::router::RouterBuilder::pre_bind_nonza`]): its answer goes into `<success/>`; a
//!   successful resumption hands the connection to the resumed session, whose first words
//!   (`<resumed/>`) are written inside `<success/>` by that session's task;
//! - XEP-0386 Bind2 `<bind/>`: a resource `tag.random` is bound and the inline features
//!   modules offer ([`crate::router::RouterBuilder::bind2_feature`]: carbons, SM, CSI) run on
//!   the new session, their answers in `<bound/>`;
//! - neither: `<success/>`, then the features of an authenticated stream (`<bind/>`, …);
//! - XEP-0484 `<request-token/>`: a FAST token in `<success/>` ([`super::fast`]).

use futures::SinkExt;
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ns;

use super::Xml;
use super::bind::{Bound, bind_session, full_jid, random_hex};
use super::sasl::{Authed, Authenticated, bound_features};
use crate::router::PreBind;
use crate::server::Server;
use crate::sessions::Attach;

/// Longest Bind2 tag kept in a resource (the rest is cut).
const MAX_TAG: usize = 64;

/// `<success/>` (xmpp-parsers' type writes an empty `<additional-data/>` when there is none,
/// which says "empty additional data" rather than "none").
#[derive(Clone)]
struct Success {
    additional_data: Option<Vec<u8>>,
    authorization_identifier: Jid,
    payloads: Vec<Element>,
}

impl From<Success> for Element {
    fn from(s: Success) -> Element {
        use base64::Engine;
        let mut b = Element::builder("success", ns::SASL2);
        if let Some(data) = s.additional_data {
            let text = base64::engine::general_purpose::STANDARD.encode(data);
            b = b.append(Element::builder("additional-data", ns::SASL2).append(text));
        }
        b.append(
            Element::builder("authorization-identifier", ns::SASL2)
                .append(s.authorization_identifier.to_string()),
        )
        .append_all(s.payloads)
        .build()
    }
}

pub(super) async fn succeed(
    server: &Server,
    mut xml: Xml,
    jid: BareJid,
    additional: Option<Vec<u8>>,
    request: Element,
) -> Option<Authed> {
    let mut success = Success {
        additional_data: additional,
        authorization_identifier: Jid::from(jid.clone()),
        payloads: Vec::new(),
    };
    if let Some(token) = super::fast::issue(server, &request, &jid).await {
        success.payloads.push(token);
    }
    let mut bind = None;
    for child in request.children() {
        if child.is("bind", ns::BIND2) {
            bind = Some(child.clone());
            continue;
        }
        if child.ns() == ns::SASL2 || child.ns() == ns::FAST {
            continue; // initial-response, user-agent; FAST's are done above
        }
        match server.router.pre_bind_nonza(server, &jid, child.clone()) {
            Some(PreBind::Reply(answer)) => success.payloads.push(answer),
            Some(PreBind::Ignore) => {}
            Some(PreBind::Attach {
                session,
                greet,
                too_late,
            }) => {
                // The session's task writes <success/> with its first element (<resumed/>)
                // inside, then what it has to send again.
                let mut ours = success.clone();
                ours.authorization_identifier = Jid::from(session.jid.clone());
                let greet = Box::new(move |s: &std::sync::Arc<crate::sessions::Session>| {
                    let mut out = greet(s);
                    if !out.is_empty() {
                        ours.payloads.push(out.remove(0));
                    }
                    out.insert(0, Element::from(ours));
                    out
                });
                match session.attach(Box::new(Attach { xml, greet })) {
                    Ok(()) => return Some(Authed::Handed),
                    Err(back) => {
                        xml = back.xml;
                        success.payloads.push(too_late);
                    }
                }
            }
            None => {
                tracing::debug!(name = child.name(), ns = %child.ns(), "SASL2 inline element ignored")
            }
        }
    }
    let Some(bind) = bind else {
        xml.send(&Element::from(success)).await.ok()?;
        // No restart: the features of an authenticated stream follow on the same stream.
        xml.get_stream().features_due();
        xml.send(&bound_features(server)).await.ok()?;
        return Some(Authed::Stream(Authenticated { xml, jid }));
    };
    let resource = match bind.get_child("tag", ns::BIND2).map(Element::text) {
        Some(tag) if !tag.trim().is_empty() => {
            let tag: String = tag.trim().chars().take(MAX_TAG).collect();
            format!("{tag}.{}", random_hex())
        }
        _ => random_hex(),
    };
    // A tag that makes no valid resource is dropped rather than refused.
    let full = full_jid(&jid, &resource).or_else(|| full_jid(&jid, &random_hex()))?;
    let (session, rx) = bind_session(server, &full);
    if let Some(id) = super::fast::agent(&request) {
        let id = id.to_owned();
        session
            .ext
            .with(|d: &mut crate::sessions::DeviceId| d.0 = Some(id));
    }
    let mut bound = Element::bare("bound", ns::BIND2);
    for feature in bind.children().filter(|c| !c.is("tag", ns::BIND2)) {
        if let Some(answer) = server
            .router
            .bind2_inline(server, &session, feature.clone())
        {
            bound.append_child(answer);
        }
    }
    success.authorization_identifier = Jid::from(full.clone());
    success.payloads.push(bound);
    // The Bind2 features already ran on the session: even if this write fails, the session
    // goes on to its task, which finds the connection lost and ends it properly (SM kept,
    // counters released, `Closed` fired).
    let _ = xml.send(&Element::from(success)).await;
    tracing::info!(jid = %full, "bound (Bind2)");
    Some(Authed::Bound(Bound { xml, session, rx }))
}
