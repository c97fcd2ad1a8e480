//! Resource binding (RFC 6120 §7). A resource already bound is taken over: the old session
//! is closed with `<conflict/>` (§7.7.2.2, the policy of Prosody and ejabberd).

use std::sync::Arc;

use futures::SinkExt;
use minidom::Element;
use tokio::sync::mpsc;
use tokio::time::Instant;
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmpp_parsers::ns;
use xmpp_parsers::stream_error::DefinedCondition;

use super::sasl::Authenticated;
use super::{Xml, close, negotiation_read, stream_error};
use crate::router::PreBind;
use crate::server::Server;
use crate::sessions::{Attach, Outbound, Session};
use crate::stanza::{Inbound, Stanza, StanzaFault, error_reply};

/// A bound session: its stream, its registry entry and its queue.
pub struct Bound {
    pub(super) xml: Xml,
    pub(super) session: Arc<Session>,
    pub(super) rx: mpsc::Receiver<Outbound>,
}

impl Authenticated {
    /// Binds a resource; `None` when the stream ended, or when the connection was handed to
    /// an existing session (stream resumption) whose task now serves it.
    pub(super) async fn bind(mut self, server: &Server, deadline: Instant) -> Option<Bound> {
        loop {
            let el = match negotiation_read(&mut self.xml, deadline).await {
                Ok(el) => el,
                Err(e) => return close(self.xml, e).await,
            };
            let (id, payload) = match Inbound::decode(el) {
                Inbound::Stanza(Stanza::Iq(Iq::Set { id, payload, .. }))
                    if payload.is("bind", ns::BIND) =>
                {
                    (id, payload)
                }
                Inbound::Other(el) => match server.router.pre_bind_nonza(server, &self.jid, el) {
                    Some(PreBind::Reply(reply)) => {
                        self.xml.send(&reply).await.ok()?;
                        continue;
                    }
                    Some(PreBind::Ignore) => continue,
                    Some(PreBind::Attach {
                        session,
                        greet,
                        too_late,
                    }) => {
                        tracing::info!(jid = %session.jid, "connection takes over a session");
                        let attach = Box::new(Attach {
                            xml: self.xml,
                            greet,
                        });
                        match session.attach(attach) {
                            Ok(()) => return None,
                            Err(back) => {
                                // The session ended meanwhile: the client may bind anew.
                                self.xml = back.xml;
                                self.xml.send(&too_late).await.ok()?;
                                continue;
                            }
                        }
                    }
                    None => {
                        let e =
                            stream_error(DefinedCondition::NotAuthorized, "Bind a resource first");
                        return close(self.xml, Some(e)).await;
                    }
                },
                _ => {
                    let e = stream_error(DefinedCondition::NotAuthorized, "Bind a resource first");
                    return close(self.xml, Some(e)).await;
                }
            };
            let requested = BindQuery::try_from(payload.clone())
                .ok()
                .and_then(|q| q.resource)
                .filter(|r| !r.trim().is_empty());
            let resource = requested.unwrap_or_else(generated_resource);
            let Some(full) = full_jid(&self.jid, &resource) else {
                let original = Element::from(Iq::Set {
                    from: None,
                    to: None,
                    id,
                    payload,
                });
                let reply = error_reply(
                    &original,
                    &StanzaFault::bad_request("Invalid resource"),
                    None,
                );
                self.xml.send(&reply).await.ok()?;
                continue;
            };
            let (session, rx) = bind_session(server, &full);
            let result = Iq::Result {
                from: None,
                to: None,
                id,
                payload: Some(BindResponse { jid: full.clone() }.into()),
            };
            if self.xml.send(&Element::from(result)).await.is_err() {
                server.sessions.unbind(&session);
                return None;
            }
            tracing::info!(jid = %full, "bound");
            return Some(Bound {
                xml: self.xml,
                session,
                rx,
            });
        }
    }
}

/// Registers a new session for `full`; one bound there before is told it was replaced.
pub(super) fn bind_session(
    server: &Server,
    full: &FullJid,
) -> (Arc<Session>, mpsc::Receiver<Outbound>) {
    let (session, rx) = server
        .sessions
        .create(full.clone(), server.config.limits.session_queue);
    if let Some(old) = server.sessions.bind(session.clone()) {
        tracing::info!(jid = %full, "resource taken over; closing the old session");
        old.push(Outbound::Replaced);
    }
    (session, rx)
}

pub(super) fn full_jid(bare: &BareJid, resource: &str) -> Option<FullJid> {
    format!("{bare}/{resource}").parse().ok()
}

fn generated_resource() -> String {
    format!("postern-{}", random_hex())
}

/// 64 random bits in hex: what makes a generated resource unique.
pub(super) fn random_hex() -> String {
    use rand::RngExt;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}
