//! The bound session's loop: client input goes to the router, the session's queue goes to
//! the client. Only this task touches the socket.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::SinkExt;
use minidom::Element;
use tokio::sync::watch;
use xmpp_parsers::ns;
use xmpp_parsers::stream_error::DefinedCondition;

use super::bind::Bound;
use super::{Read, close, read, stream_error};
use crate::router::{Ctx, SessionEvent};
use crate::server::Server;
use crate::sessions::Outbound;
use crate::stanza::{Inbound, StanzaFault, error_reply};

static PING_ID: AtomicU64 = AtomicU64::new(0);

pub(super) async fn run(server: Server, bound: Bound, mut shutdown: watch::Receiver<bool>) {
    let Bound {
        mut xml,
        session,
        mut rx,
    } = bound;
    let ctx = Ctx {
        server: server.clone(),
        from: session.jid.clone(),
    };
    let error = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Stanza(el)) => {
                    if xml.send(&el).await.is_err() {
                        break None;
                    }
                }
                Some(Outbound::Replaced) => {
                    break Some(stream_error(DefinedCondition::Conflict, "Replaced by a new connection with the same resource"));
                }
                None => break None,
            },
            _ = session.overflow.notified() => {
                break Some(stream_error(DefinedCondition::ResourceConstraint, "Too much undelivered traffic"));
            }
            _ = shutdown.changed() => {
                break Some(stream_error(DefinedCondition::SystemShutdown, "Server shutting down"));
            }
            r = read(&mut xml, None) => match r {
                Read::Element(el) => match Inbound::decode(el) {
                    Inbound::Stanza(mut stanza) => {
                        stanza.set_from(session.jid.clone().into());
                        server.router.route(ctx.clone(), stanza).await;
                    }
                    Inbound::BadStanza { element, reason } => {
                        tracing::debug!(%reason, "bad stanza");
                        let reply = error_reply(&element, &StanzaFault::bad_request(reason), None);
                        if xml.send(&reply).await.is_err() {
                            break None;
                        }
                    }
                    Inbound::StartTls | Inbound::Sasl(_) => {
                        break Some(stream_error(DefinedCondition::PolicyViolation, "Stream already negotiated"));
                    }
                    Inbound::Other(el) => {
                        tracing::debug!(name = el.name(), ns = el.ns(), "unsupported top-level element");
                        break Some(stream_error(DefinedCondition::UnsupportedStanzaType, "Unsupported element"));
                    }
                },
                Read::SoftTimeout => {
                    if xml.send(&ping(&session.jid)).await.is_err() {
                        break None;
                    }
                }
                Read::Closed => break None,
                Read::Fault(e) => break Some(e),
            },
        }
    };
    server.sessions.unbind(&session);
    close::<()>(xml, error).await;
    tracing::info!(jid = %session.jid, "session closed");
    server
        .router
        .fire(&server, SessionEvent::Closed(session))
        .await;
}

/// XEP-0199 server-to-client ping, sent when the client has been silent for the idle time.
fn ping(to: &xmpp_parsers::jid::FullJid) -> Element {
    let id = PING_ID.fetch_add(1, Ordering::Relaxed);
    Element::builder("iq", ns::JABBER_CLIENT)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), "get")
        .attr(
            minidom::rxml::xml_ncname!("id").to_owned(),
            format!("srv-ping-{id}"),
        )
        .attr(minidom::rxml::xml_ncname!("to").to_owned(), to.to_string())
        .append(Element::bare("ping", ns::PING))
        .build()
}
