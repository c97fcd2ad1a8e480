//! XEP-0198 Stream Management: acknowledgements and stream resumption.
//!
//! - Counting: the client's `h` is the session's stanzas read since `<enable/>`
//!   ([`Session::received`]); ours is what passed this module's outbound filter, the last one
//!   before the write. Each stanza it lets through is kept until the client acknowledges it.
//!   It asks for an acknowledgement (`<r/>`) after a stanza when no request is outstanding,
//!   and again after an `<a/>` that moved on but left stanzas unacknowledged (one request in
//!   flight at a time); before our stream footer goes our last `<a/>`.
//! - Resumption: a resumable session whose connection is lost is kept, detached, for
//!   `[xmpp.sm] resume_timeout` (or the client's shorter `max`). A new connection of the same
//!   account sends `<resume previd h/>` instead of binding; the session's task takes it over,
//!   answers `<resumed h/>` and sends again, in order, what the client had not acknowledged,
//!   then whatever was queued meanwhile. Presence does not change while detached.
//! - When a session with unacknowledged stanzas really ends (timeout, replaced, closed, too
//!   many unacknowledged): messages worth keeping go to offline storage, or when it is full
//!   back to their sender as errors; IQ requests are answered `service-unavailable`; nothing
//!   acknowledged to a sender is dropped silently.
//! - Bad input: an `h` above what was sent ends the stream with `<handled-count-too-high/>`
//!   (on `<resume/>`: `<failed/>`); a `previd` that is unknown or belongs to another account
//!   gets `<item-not-found/>` (the same answer, so nobody learns another account's ids).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use minidom::Element;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::sm::{
    A, Enable, Enabled, Failed, HandledCountTooHigh, R, Resume, Resumed, StreamId,
};
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::router::{Filtered, NonzaOutcome, PreBind, RouterBuilder, SessionEvent};
use crate::server::Server;
use crate::sessions::Session;
use crate::stanza::{StanzaFault, error_reply};

/// The last outbound filter: what it counts is what is written.
pub const FILTER_PRIORITY: i32 = 100;

/// The `[xmpp.sm]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmConfig {
    /// How long a session whose connection was lost waits to be resumed.
    #[serde(deserialize_with = "crate::config::duration")]
    pub resume_timeout: Duration,
    /// Unacknowledged stanzas kept per session; past it the session ends (what it holds goes
    /// to offline storage).
    pub max_unacked: usize,
}

impl Default for SmConfig {
    fn default() -> Self {
        Self {
            resume_timeout: Duration::from_secs(300),
            max_unacked: 1000,
        }
    }
}

/// A session's stream management state (a session extension).
#[derive(Debug, Default)]
struct State {
    enabled: bool,
    /// The resumption id, when the session may be resumed.
    id: Option<String>,
    /// How long to wait for a resumption.
    keep: Duration,
    /// [`Session::received`] at `<enable/>`: the client's stanzas since are `received - base`.
    base: u32,
    /// Stanzas sent since `<enable/>` (wrapping, as `h`).
    sent: u32,
    /// The client's last `h`.
    acked: u32,
    /// Sent and not yet acknowledged, oldest first: stanzas `acked + 1 ..= sent`.
    unacked: VecDeque<Element>,
    /// An `<r/>` was sent and not answered yet.
    awaiting: bool,
}

impl State {
    fn handled(&self, session: &Session) -> u32 {
        session.received().wrapping_sub(self.base)
    }

    /// Whether `h` acknowledges no more than was sent (counters wrap at 2^32).
    fn plausible(&self, h: u32) -> bool {
        h.wrapping_sub(self.acked) as usize <= self.unacked.len()
    }

    /// Forgets what `h` acknowledges; `h` must be [`State::plausible`].
    fn ack(&mut self, h: u32) {
        let n = (h.wrapping_sub(self.acked) as usize).min(self.unacked.len());
        self.unacked.drain(..n);
        self.acked = h;
    }
}

/// Resumable sessions by resumption id, and how many sessions have SM on.
#[derive(Default)]
struct Registry {
    resumable: DashMap<String, Arc<Session>>,
    /// Sessions with SM on, server-wide: while there are none the filter is one atomic load.
    enabled: AtomicUsize,
}

pub fn register(r: &mut RouterBuilder) {
    let reg: Arc<Registry> = Arc::default();
    r.stream_feature(
        crate::features::Stage::Authenticated,
        Element::bare("sm", ns::SM),
    );
    r.outbound_filter(FILTER_PRIORITY, {
        let reg = reg.clone();
        move |server, session, el| {
            if reg.enabled.load(Ordering::Relaxed) == 0 {
                return Filtered::Pass(el);
            }
            keep_sent(server, session, el)
        }
    });
    r.nonza(ns::SM, "enable", {
        let reg = reg.clone();
        move |server, session, el| release(enable(server, &reg, session, el))
    });
    // XEP-0386 / XEP-0388: enabled inside Bind2, resumed inside SASL2's <authenticate/>.
    r.bind2_feature(ns::SM, ns::SM, "enable", {
        let reg = reg.clone();
        move |server, session, el| Some(enable(server, &reg, session, el))
    });
    r.sasl2_inline_feature(Element::bare("sm", ns::SM));
    r.nonza(ns::SM, "r", |_, session, _| {
        let answer = session
            .ext
            .with(|s: &mut State| s.enabled.then(|| Element::from(A::new(s.handled(session)))));
        release(answer.unwrap_or_else(|| failed(DefinedCondition::UnexpectedRequest)))
    });
    r.nonza(ns::SM, "a", |_, session, el| {
        let Ok(a) = A::try_from(el) else {
            return release(failed(DefinedCondition::BadRequest));
        };
        let verdict = session.ext.with(|s: &mut State| {
            if !s.enabled {
                return Err(None);
            }
            if !s.plausible(a.h) {
                return Err(Some(HandledCountTooHigh {
                    h: a.h,
                    send_count: s.sent,
                }));
            }
            let advanced = a.h != s.acked;
            s.ack(a.h);
            // Stanzas sent while the request was out are not covered: ask again, but only
            // after an answer that moved on. A client whose count lags for good (xmpp.js 0.14
            // does not count IQ results) would otherwise answer every request with the same
            // `h`, for ever.
            s.awaiting = advanced && !s.unacked.is_empty();
            Ok(s.awaiting)
        });
        match verdict {
            Ok(false) => NonzaOutcome::Done,
            Ok(true) => release(R.into()),
            Err(None) => release(failed(DefinedCondition::UnexpectedRequest)),
            Err(Some(too_high)) => {
                tracing::warn!(jid = %session.jid, h = too_high.h, sent = too_high.send_count, "client acknowledged more than was sent");
                NonzaOutcome::Close(too_high.into())
            }
        }
    });
    // Resumption is an alternative to binding, never done on a bound stream.
    r.nonza(ns::SM, "resume", |_, _, _| {
        release(failed(DefinedCondition::UnexpectedRequest))
    });
    r.pre_bind_nonza(ns::SM, "enable", |_, _, _| {
        PreBind::Reply(failed(DefinedCondition::UnexpectedRequest))
    });
    r.pre_bind_nonza(ns::SM, "resume", {
        let reg = reg.clone();
        move |_, account, el| resume(&reg, account, el)
    });
    // XEP-0198 §4: our last count before we close, so the client knows what we handled.
    r.on_close(|_, session| {
        session
            .ext
            .with(|s: &mut State| s.enabled.then(|| A::new(s.handled(session)).into()))
    });
    r.keep_detached(|_, session| {
        session
            .ext
            .with(|s: &mut State| s.id.is_some().then_some(s.keep))
    });
    r.on_event(move |server, event| {
        let reg = reg.clone();
        async move {
            if let SessionEvent::Closed(session) = event {
                ended(&server, &reg, &session).await;
            }
        }
    });
}

/// Writes `el` now, past every outbound filter (it is a nonza).
fn release(el: Element) -> NonzaOutcome {
    NonzaOutcome::Release {
        after: FILTER_PRIORITY,
        elements: vec![el],
    }
}

fn failed(condition: DefinedCondition) -> Element {
    Failed {
        h: None,
        error: Some(condition),
    }
    .into()
}

/// The outbound filter of a session with SM on: counts and keeps each stanza.
fn keep_sent(server: &Server, session: &Arc<Session>, el: Element) -> Filtered {
    if !(el.is("message", ns::JABBER_CLIENT)
        || el.is("presence", ns::JABBER_CLIENT)
        || el.is("iq", ns::JABBER_CLIENT))
    {
        return Filtered::Pass(el);
    }
    let max = server.config.sm.max_unacked;
    let (request, over) = session.ext.with(|s: &mut State| {
        if !s.enabled {
            return (false, false);
        }
        s.unacked.push_back(el.clone());
        s.sent = s.sent.wrapping_add(1);
        let request = !std::mem::replace(&mut s.awaiting, true);
        (request, s.unacked.len() > max)
    });
    if over {
        tracing::warn!(jid = %session.jid, max, "too many unacknowledged stanzas; ending the session");
        session.overflow.notify_one();
    }
    if request {
        Filtered::Many(vec![el, R.into()])
    } else {
        Filtered::Pass(el)
    }
}

/// `<enabled/>`, or `<failed/>` for a second or malformed `<enable/>`.
fn enable(server: &Server, reg: &Registry, session: &Arc<Session>, el: Element) -> Element {
    let Ok(enable) = Enable::try_from(el) else {
        return failed(DefinedCondition::BadRequest);
    };
    let limit = server.config.sm.resume_timeout;
    let keep = match enable.max {
        Some(secs) if secs > 0 => limit.min(Duration::from_secs(u64::from(secs))),
        _ => limit,
    };
    let id = (enable.resume && !keep.is_zero()).then(resumption_id);
    let fresh = session.ext.with(|s: &mut State| {
        if s.enabled {
            return false;
        }
        *s = State {
            enabled: true,
            id: id.clone(),
            keep,
            base: session.received(),
            ..State::default()
        };
        true
    });
    if !fresh {
        return failed(DefinedCondition::UnexpectedRequest);
    }
    reg.enabled.fetch_add(1, Ordering::Relaxed);
    if let Some(id) = &id {
        reg.resumable.insert(id.clone(), session.clone());
    }
    // Resumable exactly when there is an id; `max` says for how long.
    let enabled = Enabled {
        resume: id.is_some(),
        max: id
            .as_ref()
            .map(|_| u32::try_from(keep.as_secs()).unwrap_or(u32::MAX)),
        id: id.map(StreamId),
        location: None,
    };
    enabled.into()
}

fn resumption_id() -> String {
    use rand::RngExt;
    let bytes: [u8; 18] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `<resume/>` instead of binding: hand the connection to the session it names.
fn resume(reg: &Registry, account: &BareJid, el: Element) -> PreBind {
    let Ok(req) = Resume::try_from(el) else {
        return PreBind::Reply(failed(DefinedCondition::BadRequest));
    };
    let previd = req.previd.0.clone();
    let session = match reg.resumable.get(&previd) {
        Some(s) if &s.jid.to_bare() == account => s.clone(),
        Some(s) => {
            tracing::warn!(%account, owner = %s.jid, "attempt to resume another account's session");
            return PreBind::Reply(failed(DefinedCondition::ItemNotFound));
        }
        None => return PreBind::Reply(failed(DefinedCondition::ItemNotFound)),
    };
    let check = session.ext.with(|s: &mut State| {
        if !s.plausible(req.h) {
            Err(s.sent)
        } else {
            Ok(())
        }
    });
    if let Err(sent) = check {
        tracing::warn!(jid = %session.jid, h = req.h, sent, "resume acknowledges more than was sent");
        let mut el = failed(DefinedCondition::UndefinedCondition);
        el.append_child(
            HandledCountTooHigh {
                h: req.h,
                send_count: sent,
            }
            .into(),
        );
        return PreBind::Reply(el);
    }
    let h = req.h;
    PreBind::Attach {
        session,
        too_late: failed(DefinedCondition::ItemNotFound),
        greet: Box::new(move |session| {
            session.ext.with(|s: &mut State| {
                if s.plausible(h) {
                    s.ack(h);
                }
                let mut out = Vec::with_capacity(s.unacked.len() + 2);
                out.push(
                    Resumed {
                        h: s.handled(session),
                        previd: StreamId(previd),
                    }
                    .into(),
                );
                out.extend(s.unacked.iter().cloned());
                s.awaiting = !s.unacked.is_empty();
                if s.awaiting {
                    out.push(R.into());
                }
                out
            })
        }),
    }
}

/// The session is over: what it never had acknowledged must not be lost.
async fn ended(server: &Server, reg: &Registry, session: &Arc<Session>) {
    let (was_enabled, id, unacked) = session.ext.with(|s: &mut State| {
        let s = std::mem::take(s);
        (s.enabled, s.id, s.unacked)
    });
    if !was_enabled {
        return;
    }
    reg.enabled.fetch_sub(1, Ordering::Relaxed);
    store_unacked(server, session, unacked).await;
    // Forgotten last: until here a resumption attempt gets <item-not-found/> from the ended
    // session itself (it can no longer be taken over).
    if let Some(id) = id {
        reg.resumable.remove_if(&id, |_, s| s.id == session.id);
    }
}

/// Messages worth keeping to offline storage (or back to their senders), IQ requests answered.
async fn store_unacked(server: &Server, session: &Arc<Session>, unacked: VecDeque<Element>) {
    if unacked.is_empty() {
        return;
    }
    tracing::info!(jid = %session.jid, count = unacked.len(), "session ended with unacknowledged stanzas");
    let owner = session.jid.to_bare();
    for el in unacked {
        if el.is("message", ns::JABBER_CLIENT) {
            let Ok(m) = Message::try_from(el.clone()) else {
                continue;
            };
            if !matches!(m.type_, MessageType::Chat | MessageType::Normal) || m.bodies.is_empty() {
                continue;
            }
            if !super::offline::store(server, &owner, m).await {
                bounce(server, &el, StanzaFault::service_unavailable());
            }
        } else if el.is("iq", ns::JABBER_CLIENT) && matches!(el.attr("type"), Some("get" | "set")) {
            bounce(server, &el, StanzaFault::service_unavailable());
        }
    }
}

/// Returns an error for `el` to its sender, if that is a bound resource here.
fn bounce(server: &Server, el: &Element, fault: StanzaFault) {
    let Some(sender) = el
        .attr("from")
        .and_then(|f| f.parse::<Jid>().ok())
        .and_then(|j| FullJid::try_from(j).ok())
    else {
        return;
    };
    server.send_to_full(&sender, error_reply(el, &fault, None));
}
