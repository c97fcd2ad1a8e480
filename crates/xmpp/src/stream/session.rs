//! The bound session's loop. Only this task touches the socket: it writes what the session's
//! queue holds and reads the client's input, and routes it in order. Routing may wait (on the
//! database, on a module) and must never hold up the writer: a stanza is routed right here
//! only as far as it goes without waiting (most do: delivery is a queue push); a routing that
//! must wait is handed, still in progress, to a second task of the session that finishes it
//! and those after it, in order ([`Routing`]). A full hand-over queue stops the reading, not
//! the writing.
//!
//! A session outlives its connection when a module asks for it
//! ([`crate::router::RouterBuilder::keep_detached`]): after a lost connection the task keeps
//! draining the queue through the outbound filters, with nothing to write to, until a new
//! connection takes the session over ([`crate::sessions::Session::attach`]) or the time is up.
//! Only then does the session end (unbound, `Closed` fired).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::SinkExt;
use minidom::Element;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use xmpp_parsers::stream_error::{DefinedCondition, StreamError};

use super::bind::Bound;
use super::{Read, Xml, close, read, stream_error};
use crate::router::{Ctx, NonzaOutcome, SessionEvent};
use crate::server::Server;
use crate::sessions::{Attach, Outbound, Session};
use crate::stanza::{Inbound, error_reply};

/// The longest a session waits for the work its routings left running (an archive write)
/// before it tells its client what was handled; past it the session ends with an error.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Routings waiting in a session's routing task. Reading pauses while it is full.
const INBOUND_QUEUE: usize = 32;

type RouteFuture = crate::router::BoxFuture<()>;

/// How one connection of a session ended.
enum End {
    /// The stream is over: close it (with this error) and end the session.
    Close(Option<StreamError>),
    /// The connection is gone (or silent past the idle time): the session may be kept.
    Lost(Option<StreamError>),
    /// Another connection takes the session over.
    Attach(Box<Attach>),
}

/// What a connection's loop shares with the next connection of the same session.
struct Link {
    server: Server,
    session: Arc<Session>,
    rx: mpsc::Receiver<Outbound>,
    routing: Routing,
    /// What the outbound filters let through, written in order.
    ready: Vec<Element>,
    shutdown: watch::Receiver<bool>,
    nonzas: NonzaBudget,
    write_timeout: Duration,
}

pub(super) async fn run(server: Server, bound: Bound, shutdown: watch::Receiver<bool>) {
    let Bound {
        mut xml,
        session,
        rx,
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
    let mut link = Link {
        routing: Routing::new(ctx),
        nonzas: NonzaBudget::new(server.config.limits.max_nonzas_per_second),
        write_timeout: server.config.limits.write_timeout,
        server: server.clone(),
        session: session.clone(),
        rx,
        ready: Vec::new(),
        shutdown,
    };
    loop {
        let attach = match link.serve(&mut xml).await {
            End::Close(error) => {
                if error.is_none() {
                    // The last words (SM's final `<a/>`) count what was sent before them,
                    // and only what is done.
                    if link.routing.settle().await {
                        link.ready.extend(server.router.closing(&server, &session));
                    }
                    let _ = write_all(&mut xml, &mut link.ready, link.write_timeout).await;
                }
                close::<()>(xml, error).await;
                break;
            }
            End::Attach(attach) => {
                tracing::info!(jid = %session.jid, "session taken over by a new connection");
                tokio::spawn(close::<()>(xml, None));
                attach
            }
            End::Lost(error) => {
                let Some(keep) = server.router.keep_detached(&server, &session) else {
                    close::<()>(xml, error).await;
                    break;
                };
                tokio::spawn(close::<()>(xml, error));
                tracing::info!(jid = %session.jid, ?keep, "connection lost; session kept");
                match link.detached(keep).await {
                    Some(attach) => attach,
                    None => break,
                }
            }
        };
        let Attach { xml: next, greet } = *attach;
        xml = next;
        // A resumption's count includes what the lost connection sent.
        if !link.routing.settle().await {
            close::<()>(
                xml,
                Some(stream_error(
                    DefinedCondition::InternalServerError,
                    "What the session sent could not all be stored; it cannot be resumed",
                )),
            )
            .await;
            break;
        }
        link.ready.extend(greet(&session));
    }
    if let Some(late) = session.end_attachments() {
        // Taken over just as it ended: that connection finds no session to resume.
        tokio::spawn(close::<()>(
            late.xml,
            Some(stream_error(
                DefinedCondition::UndefinedCondition,
                "The session to resume has just ended",
            )),
        ));
    }
    server.sessions.unbind(&session);
    link.drain();
    // What the client sent before it left is routed before the session's end is.
    link.routing.finish().await;
    tracing::info!(jid = %session.jid, "session closed");
    server
        .router
        .fire(&server, SessionEvent::Closed(session))
        .await;
}

impl Link {
    /// Serves one connection until it ends; first writes what `ready` holds.
    async fn serve(&mut self, xml: &mut Xml) -> End {
        let server = self.server.clone();
        let session = self.session.clone();
        if write_all(xml, &mut self.ready, self.write_timeout)
            .await
            .is_err()
        {
            return End::Lost(None);
        }
        loop {
            tokio::select! {
                out = self.rx.recv() => match out {
                    Some(Outbound::Stanza(el)) => {
                        server.router.filter_outbound(&server, &session, el, None, &mut self.ready);
                        if write_all(xml, &mut self.ready, self.write_timeout).await.is_err() {
                            return End::Lost(None);
                        }
                    }
                    Some(Outbound::Replaced) => {
                        return End::Close(Some(replaced()));
                    }
                    Some(Outbound::Revoked) => {
                        return End::Close(Some(revoked()));
                    }
                    None => return End::Close(None),
                },
                attach = session.attached() => return End::Attach(attach),
                _ = session.overflow.notified() => {
                    return End::Close(Some(stream_error(DefinedCondition::ResourceConstraint, "Too much undelivered traffic")));
                }
                _ = self.shutdown.changed() => {
                    return End::Close(Some(stream_error(DefinedCondition::SystemShutdown, "Server shutting down")));
                }
                ok = self.routing.make_room(), if !self.routing.has_room() => {
                    if !ok {
                        return End::Close(None);
                    }
                }
                r = read(xml, None), if self.routing.has_room() => match r {
                    Read::Element(el) => match Inbound::decode(el) {
                        Inbound::Stanza(mut stanza) => {
                            stanza.set_from(session.jid.clone().into());
                            let (ctx, session) = (self.routing.ctx.clone(), session.clone());
                            self.routing.route(Box::pin(async move {
                                let server = ctx.server.clone();
                                server.router.route(ctx, stanza).await;
                                session.count_received();
                            })).await;
                        }
                        Inbound::BadStanza { element, fault } => {
                            tracing::debug!(condition = ?fault.condition, ?fault, "bad stanza");
                            // Counted in order, after the stanzas before it.
                            let session = session.clone();
                            self.routing.route(Box::pin(async move {
                                // Like everything the client receives: through the queue.
                                session.send(error_reply(&element, &fault, None));
                                session.count_received();
                            })).await;
                        }
                        Inbound::StartTls | Inbound::Sasl(_) => {
                            return End::Close(Some(stream_error(DefinedCondition::PolicyViolation, "Stream already negotiated")));
                        }
                        Inbound::Other(el) => {
                            if !self.nonzas.take() {
                                return End::Close(Some(stream_error(
                                    DefinedCondition::PolicyViolation,
                                    &format!("More than {} stream-level elements per second", self.nonzas.per_sec),
                                )));
                            }
                            let (name, ns) = (el.name().to_owned(), el.ns());
                            // Nonzas act in stream order: an `<r/>` counts, an `<enable/>`
                            // starts counting, after the stanzas sent before it are handled.
                            if !self.routing.settle().await {
                                return End::Close(Some(stream_error(
                                    DefinedCondition::InternalServerError,
                                    "What you sent could not all be stored",
                                )));
                            }
                            // And what is queued for the client by now goes out first, under
                            // the state in force before the nonza: a CSI `<active/>` flushes
                            // what was held, and does not let through what was on its way.
                            while let Ok(out) = self.rx.try_recv() {
                                match out {
                                    Outbound::Stanza(el) => server.router.filter_outbound(&server, &session, el, None, &mut self.ready),
                                    Outbound::Replaced => return End::Close(Some(replaced())),
                                    Outbound::Revoked => return End::Close(Some(revoked())),
                                }
                            }
                            if !self.ready.is_empty() && write_all(xml, &mut self.ready, self.write_timeout).await.is_err() {
                                return End::Lost(None);
                            }
                            match server.router.nonza(&server, &session, el) {
                                Some(NonzaOutcome::Done) => {}
                                Some(NonzaOutcome::Release { after, elements }) => {
                                    for el in elements {
                                        server.router.filter_outbound(&server, &session, el, Some(after), &mut self.ready);
                                    }
                                    if write_all(xml, &mut self.ready, self.write_timeout).await.is_err() {
                                        return End::Lost(None);
                                    }
                                }
                                Some(NonzaOutcome::Close(e)) => return End::Close(Some(e)),
                                None => {
                                    tracing::debug!(%name, %ns, "unsupported top-level element");
                                    return End::Close(Some(stream_error(DefinedCondition::UnsupportedStanzaType, "Unsupported element")));
                                }
                            }
                        }
                    },
                    Read::SoftTimeout => server.router.idle(&server, &session),
                    Read::Closed => return End::Close(None),
                    Read::Lost => return End::Lost(None),
                    Read::Fault(e) if e.condition == DefinedCondition::ConnectionTimeout => {
                        return End::Lost(Some(e));
                    }
                    Read::Fault(e) => return End::Close(Some(e)),
                },
            }
        }
    }

    /// The session without a connection, for at most `keep`: what is sent to it passes the
    /// outbound filters (a module keeps what it must) and is not written anywhere. Returns the
    /// connection that takes the session over, or `None` when the session ends.
    async fn detached(&mut self, keep: Duration) -> Option<Box<Attach>> {
        let (server, session) = (&self.server, &self.session);
        // Boxed: a detached session's timer stays out of every attached session's task.
        let mut until = Box::pin(tokio::time::sleep(keep));
        loop {
            tokio::select! {
                attach = session.attached() => return Some(attach),
                out = self.rx.recv() => match out {
                    Some(Outbound::Stanza(el)) => {
                        server.router.filter_outbound(server, session, el, None, &mut self.ready);
                        self.ready.clear();
                    }
                    Some(Outbound::Replaced | Outbound::Revoked) | None => return None,
                },
                _ = session.overflow.notified() => return None,
                _ = self.shutdown.changed() => return None,
                _ = &mut until => {
                    tracing::info!(jid = %session.jid, "detached session timed out");
                    return None;
                }
            }
        }
    }

    /// Passes what is still queued for the ended session through the outbound filters, so
    /// that modules see everything that was meant for it.
    fn drain(&mut self) {
        self.rx.close();
        while let Ok(out) = self.rx.try_recv() {
            if let Outbound::Stanza(el) = out {
                let (server, session) = (&self.server, &self.session);
                server
                    .router
                    .filter_outbound(server, session, el, None, &mut self.ready);
            }
        }
        self.ready.clear();
    }
}

/// The stream error of a session another login with the same resource replaced.
fn replaced() -> StreamError {
    stream_error(
        DefinedCondition::Conflict,
        "Replaced by a new connection with the same resource",
    )
}

/// The stream error of a session whose account may no longer log in.
fn revoked() -> StreamError {
    stream_error(
        DefinedCondition::NotAuthorized,
        "This account may no longer log in",
    )
}

/// Stream-level elements a client may send per second (a token bucket holding one second's
/// worth), so that a flood of `<r/>` or `<active/>` cannot keep the session's task busy.
struct NonzaBudget {
    per_sec: u32,
    tokens: f64,
    at: Instant,
}

impl NonzaBudget {
    fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            tokens: f64::from(per_sec),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.per_sec);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Writes and empties `ready`; a client that takes none of it for `timeout` fails it. The
/// timer is only set up for a write that does not complete at once (most do: the socket
/// buffer has room), so the common path costs no timer per stanza.
async fn write_all(xml: &mut Xml, ready: &mut Vec<Element>, timeout: Duration) -> Result<(), ()> {
    for el in ready.drain(..) {
        let mut write = std::pin::pin!(xml.send(&el));
        let done = poll_once(write.as_mut()).await;
        let result = match done {
            Poll::Ready(r) => r,
            // Boxed: the timer lives only while a write waits, not in every idle session.
            Poll::Pending => match Box::pin(tokio::time::timeout(timeout, write)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::info!("client stopped reading; connection given up");
                    return Err(());
                }
            },
        };
        result.map_err(|_| ())?;
    }
    Ok(())
}

/// Routes one session's stanzas in the order the client sent them: right away as far as a
/// routing goes without waiting, the rest in a task of the session's own, spawned the first
/// time a routing has to wait.
///
/// Measured with `REPEAT=2 bench/xmpp --no-prosody --baseline f5dfb3f` (every stanza handed
/// to the task): server CPU per message 0.92x (window 32) and 0.94x (window 1), RSS per idle
/// connection 0.97x (no routing task until one is needed).
struct Routing {
    ctx: Ctx,
    task: Option<RoutingTask>,
}

struct RoutingTask {
    tx: mpsc::Sender<RouteFuture>,
    /// Routings handed to the task and not finished yet.
    in_flight: Arc<AtomicUsize>,
    /// A slot in the task's queue, taken before reading while the task is busy, so that a
    /// read stanza is never held while the writer waits.
    slot: Option<mpsc::OwnedPermit<RouteFuture>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Routing {
    fn new(ctx: Ctx) -> Self {
        Self { ctx, task: None }
    }

    /// Whether a stanza read now can be routed without waiting for room.
    fn has_room(&self) -> bool {
        self.task
            .as_ref()
            .is_none_or(|t| t.slot.is_some() || t.in_flight.load(Ordering::Acquire) == 0)
    }

    /// Waits for a slot in the busy task's queue; false when the task is gone.
    async fn make_room(&mut self) -> bool {
        let Some(task) = &mut self.task else {
            return true;
        };
        match task.tx.clone().reserve_owned().await {
            Ok(permit) => {
                task.slot = Some(permit);
                true
            }
            Err(_) => false,
        }
    }

    /// Runs `routing` (of a stanza) after everything read before it; call only when
    /// [`Routing::has_room`].
    ///
    /// While nothing waits in the task, the routing is polled here once: most complete on
    /// that poll (delivery to a local session is a queue push), and those cost no hand-over
    /// to another task. One that must wait is moved, in progress, to the task.
    async fn route(&mut self, mut routing: RouteFuture) {
        let idle = self
            .task
            .as_ref()
            .is_none_or(|t| t.in_flight.load(Ordering::Acquire) == 0);
        if idle && poll_once(routing.as_mut()).await.is_ready() {
            return;
        }
        let task = self.task.get_or_insert_with(RoutingTask::spawn);
        task.in_flight.fetch_add(1, Ordering::AcqRel);
        if let Some(permit) = task.slot.take() {
            permit.send(routing);
        } else if let Err(e) = task.tx.try_send(routing) {
            // Only reached while the task was idle, so its queue is empty: never full. If it
            // is gone, nothing routes for this session any more.
            tracing::error!(error = %e, "routing task unavailable");
            task.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits until everything read so far is routed, including what the routings left
    /// running ([`crate::router::RouterBuilder::barrier`]): then the handled count covers
    /// what is done. False when the routing task is gone or left work failed.
    async fn settle(&mut self) -> bool {
        if !self.routed().await {
            return false;
        }
        let (server, session) = (&self.ctx.server, &self.ctx.session);
        // Bounded: a store that hangs fails the session rather than freezing it.
        tokio::time::timeout(SETTLE_LIMIT, server.router.barriers(server, session))
            .await
            .unwrap_or_else(|_| {
                tracing::error!(jid = %session.jid, "work left by routing did not finish in time");
                false
            })
    }

    async fn routed(&mut self) -> bool {
        let Some(task) = &mut self.task else {
            return true;
        };
        if task.in_flight.load(Ordering::Acquire) == 0 {
            return true;
        }
        // A marker behind the routings in the task's queue: its turn comes after theirs.
        let (done, turn) = oneshot::channel::<()>();
        let marker: RouteFuture = Box::pin(async move {
            let _ = done.send(());
        });
        task.in_flight.fetch_add(1, Ordering::AcqRel);
        let queued = match task.slot.take() {
            Some(permit) => {
                permit.send(marker);
                true
            }
            None => task.tx.send(marker).await.is_ok(),
        };
        queued && turn.await.is_ok()
    }

    /// Waits until everything handed to the task is routed.
    async fn finish(self) {
        if let Some(task) = self.task {
            drop(task.tx);
            drop(task.slot);
            if let Err(e) = task.handle.await {
                tracing::error!(error = %e, "routing task failed");
            }
        }
    }
}

impl RoutingTask {
    fn spawn() -> Self {
        let (tx, mut rx) = mpsc::channel::<RouteFuture>(INBOUND_QUEUE);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let handle = tokio::spawn({
            let in_flight = in_flight.clone();
            async move {
                while let Some(routing) = rx.recv().await {
                    routing.await;
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                }
            }
        });
        Self {
            tx,
            in_flight,
            slot: None,
            handle,
        }
    }
}

/// Polls `fut` once with this task's waker.
async fn poll_once<F: Future + ?Sized>(mut fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}
