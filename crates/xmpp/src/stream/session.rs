//! The bound session's loop. Only this task touches the socket: it writes what the session's
//! queue holds and reads the client's input, which a second task per session routes in order.
//! Routing may wait (on the database, on a module), and must never hold up the writer: the
//! loop hands each stanza over and goes back to draining the queue. A full hand-over queue
//! stops the reading, not the writing.

use futures::SinkExt;
use tokio::sync::{mpsc, watch};
use xmpp_parsers::stream_error::DefinedCondition;

use super::bind::Bound;
use super::{Read, close, read, stream_error};
use crate::router::{Ctx, NonzaOutcome, SessionEvent};
use crate::server::Server;
use crate::sessions::Outbound;
use crate::stanza::{Inbound, Stanza, error_reply};

/// Stanzas read but not yet routed, per session. Reading pauses while it is full.
const INBOUND_QUEUE: usize = 32;

pub(super) async fn run(server: Server, bound: Bound, mut shutdown: watch::Receiver<bool>) {
    let Bound {
        mut xml,
        session,
        mut rx,
    } = bound;
    let ctx = Ctx {
        server: server.clone(),
        from: session.jid.clone(),
        session: session.clone(),
    };
    server
        .router
        .fire(&server, SessionEvent::Bound(session.clone()))
        .await;
    // Boxed: a channel allocates its slots up front, and 32 unboxed stanzas are ~10 KiB more
    // per idle session (bench/xmpp idle: 49.4 vs 41.3 KiB per connection before boxing).
    let (inbound, routing) = mpsc::channel::<Box<Stanza>>(INBOUND_QUEUE);
    let router = tokio::spawn(route_in_order(ctx, routing));
    let error = {
        // A slot in the hand-over queue, taken before reading so that a read stanza is never
        // held while the writer waits.
        let mut slot = None;
        // What the outbound filters let through, written in order.
        let mut ready = Vec::new();
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Outbound::Stanza(el)) => {
                        server.router.filter_outbound(&server, &session, el, None, &mut ready);
                        if write_all(&mut xml, &mut ready).await.is_err() {
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
                permit = inbound.reserve(), if slot.is_none() => match permit {
                    Ok(p) => slot = Some(p),
                    Err(_) => break None,
                },
                r = read(&mut xml, None), if slot.is_some() => match r {
                    Read::Element(el) => match Inbound::decode(el) {
                        Inbound::Stanza(mut stanza) => {
                            stanza.set_from(session.jid.clone().into());
                            if let Some(permit) = slot.take() {
                                permit.send(Box::new(stanza));
                            }
                        }
                        Inbound::BadStanza { element, fault } => {
                            tracing::debug!(condition = ?fault.condition, "bad stanza");
                            // Like everything the client receives: through the queue.
                            session.send(error_reply(&element, &fault, None));
                        }
                        Inbound::StartTls | Inbound::Sasl(_) => {
                            break Some(stream_error(DefinedCondition::PolicyViolation, "Stream already negotiated"));
                        }
                        Inbound::Other(el) => {
                            let (name, ns) = (el.name().to_owned(), el.ns());
                            match server.router.nonza(&server, &session, el) {
                                Some(NonzaOutcome::Done) => {}
                                Some(NonzaOutcome::Release { after, elements }) => {
                                    for el in elements {
                                        server.router.filter_outbound(&server, &session, el, Some(after), &mut ready);
                                    }
                                    if write_all(&mut xml, &mut ready).await.is_err() {
                                        break None;
                                    }
                                }
                                Some(NonzaOutcome::Close(e)) => break Some(e),
                                None => {
                                    tracing::debug!(%name, %ns, "unsupported top-level element");
                                    break Some(stream_error(DefinedCondition::UnsupportedStanzaType, "Unsupported element"));
                                }
                            }
                        }
                    },
                    Read::SoftTimeout => server.router.idle(&server, &session),
                    Read::Closed => break None,
                    Read::Fault(e) => break Some(e),
                },
            }
        }
    };
    server.sessions.unbind(&session);
    close::<()>(xml, error).await;
    // What the client sent before it left is routed before the session's end is.
    drop(inbound);
    if let Err(e) = router.await {
        tracing::error!(error = %e, "routing task failed");
    }
    tracing::info!(jid = %session.jid, "session closed");
    server
        .router
        .fire(&server, SessionEvent::Closed(session))
        .await;
}

/// Writes and empties `ready`.
async fn write_all(xml: &mut super::Xml, ready: &mut Vec<minidom::Element>) -> Result<(), ()> {
    for el in ready.drain(..) {
        xml.send(&el).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Routes one session's stanzas one after the other, in the order the client sent them.
async fn route_in_order(ctx: Ctx, mut stanzas: mpsc::Receiver<Box<Stanza>>) {
    while let Some(stanza) = stanzas.recv().await {
        // Boxed so that this long-lived task stays small while idle; the routing future
        // lives only while a stanza is routed.
        Box::pin(ctx.server.router.route(ctx.clone(), *stanza)).await;
    }
}
