//! XEP-0352 Client State Indication: while a client says it is inactive (a phone in a
//! pocket), presence updates and chat-state notifications wait, coalesced per sender (the
//! newest replaces the older); anything else — a message with a body, an IQ, a subscription
//! request — goes out at once, after what was held (order is kept). `<active/>` flushes.
//!
//! Held stanzas are bounded by `[xmpp.csi] max_held`: past it everything held goes out, so a
//! client that stays inactive for ever costs at most that much memory here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minidom::Element;
use xmpp_parsers::ns;

use crate::router::{Filtered, NonzaOutcome, PreBind, RouterBuilder, SessionEvent};
use crate::server::Server;
use crate::sessions::Session;

/// After blocking (0), before stream management.
pub const FILTER_PRIORITY: i32 = 10;

const CSI: &str = "urn:xmpp:csi:0";

/// The `[xmpp.csi]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsiConfig {
    /// Stanzas held for one inactive session at most; past it they are all delivered.
    pub max_held: usize,
}

impl Default for CsiConfig {
    fn default() -> Self {
        Self { max_held: 256 }
    }
}

/// A session's client state (a session extension).
#[derive(Debug, Default)]
struct State {
    inactive: bool,
    /// Held stanzas in arrival order, each with its coalescing key.
    held: Vec<(Key, Element)>,
}

/// What a held stanza replaces: the same kind from the same sender.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Presence(String),
    ChatState(String),
}

pub fn register(r: &mut RouterBuilder) {
    // Inactive sessions, server-wide: while there are none, the filter is one atomic load
    // (it sits on every stanza to every session).
    let inactive: Arc<AtomicUsize> = Arc::default();
    r.stream_feature(
        crate::features::Stage::Authenticated,
        Element::bare("csi", CSI),
    );
    r.nonza(CSI, "inactive", {
        let inactive = inactive.clone();
        move |_, session, _| {
            go_inactive(session, &inactive);
            NonzaOutcome::Done
        }
    });
    // Before binding there is no session to be active or inactive, and XEP-0352 defines no
    // error: such a state is ignored rather than ending the stream.
    for state in ["active", "inactive"] {
        r.pre_bind_nonza(CSI, state, |_, _, _| PreBind::Ignore);
    }
    // XEP-0386: a client may start inactive (a phone reconnecting in the background).
    r.bind2_feature(CSI, CSI, "inactive", {
        let inactive = inactive.clone();
        move |_, session, _| {
            go_inactive(session, &inactive);
            None
        }
    });
    r.nonza(CSI, "active", {
        let inactive = inactive.clone();
        move |_, session, _| {
            let (was, elements) = session.ext.with(|s: &mut State| {
                let was = std::mem::replace(&mut s.inactive, false);
                (was, s.take())
            });
            if was {
                inactive.fetch_sub(1, Ordering::Relaxed);
            }
            NonzaOutcome::Release {
                after: FILTER_PRIORITY,
                elements,
            }
        }
    });
    r.on_event({
        let inactive = inactive.clone();
        move |_, event| {
            if let SessionEvent::Closed(s) = &event
                && s.ext
                    .with(|st: &mut State| std::mem::take(&mut st.inactive))
            {
                inactive.fetch_sub(1, Ordering::Relaxed);
            }
            async {}
        }
    });
    r.outbound_filter(FILTER_PRIORITY, move |server, session, el| {
        if inactive.load(Ordering::Relaxed) == 0 {
            return Filtered::Pass(el);
        }
        filter(server, session, el)
    });
}

fn go_inactive(session: &Session, inactive: &AtomicUsize) {
    if !session
        .ext
        .with(|s: &mut State| std::mem::replace(&mut s.inactive, true))
    {
        inactive.fetch_add(1, Ordering::Relaxed);
    }
}

fn filter(server: &Server, session: &Arc<Session>, el: Element) -> Filtered {
    let max = server.config.csi.max_held;
    session.ext.with(|s: &mut State| s.offer(el, max))
}

impl State {
    fn offer(&mut self, el: Element, max: usize) -> Filtered {
        if !self.inactive {
            return Filtered::Pass(el);
        }
        match key(&el) {
            Some(k) => {
                self.held.retain(|(held, _)| *held != k);
                self.held.push((k, el));
                if self.held.len() > max {
                    Filtered::Many(self.take())
                } else {
                    Filtered::Drop
                }
            }
            None if self.held.is_empty() => Filtered::Pass(el),
            None => {
                let mut all = self.take();
                all.push(el);
                Filtered::Many(all)
            }
        }
    }

    fn take(&mut self) -> Vec<Element> {
        self.held.drain(..).map(|(_, el)| el).collect()
    }
}

/// The coalescing key of a stanza that may wait, `None` for one that may not.
fn key(el: &Element) -> Option<Key> {
    let from = el.attr("from").unwrap_or_default().to_owned();
    match el.name() {
        // Available and unavailable presence; subscriptions, probes and errors matter now.
        "presence" if matches!(el.attr("type"), None | Some("unavailable")) => {
            Some(Key::Presence(from))
        }
        "message" if is_chat_state_only(el) => Some(Key::ChatState(from)),
        _ => None,
    }
}

fn is_chat_state_only(el: &Element) -> bool {
    el.attr("type") != Some("error")
        && el.children().next().is_some()
        && el
            .children()
            .all(|c| c.ns() == ns::CHATSTATES || c.name() == "thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    fn presence(from: &str, status: &str) -> Element {
        el(&format!(
            "<presence xmlns='jabber:client' from='{from}'><status>{status}</status></presence>"
        ))
    }

    fn names(f: Filtered) -> Vec<String> {
        match f {
            Filtered::Pass(e) => vec![text(&e)],
            Filtered::Drop => vec![],
            Filtered::Many(v) => v.iter().map(text).collect(),
        }
    }

    fn text(e: &Element) -> String {
        e.children()
            .find(|c| c.name() == "status" || c.name() == "body")
            .map(|c| c.text())
            .unwrap_or_else(|| e.name().to_owned())
    }

    #[test]
    fn inactive_holds_presence_and_chat_states_coalesced_and_flushes_before_a_message() {
        let mut s = State::default();
        assert_eq!(
            names(s.offer(presence("b@x/1", "p1"), 10)),
            ["p1"],
            "active: at once"
        );
        s.inactive = true;
        assert!(names(s.offer(presence("b@x/1", "p2"), 10)).is_empty());
        assert!(names(s.offer(presence("c@x/1", "c1"), 10)).is_empty());
        let typing = el("<message xmlns='jabber:client' from='b@x/1' type='chat'>\
            <composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert!(names(s.offer(typing, 10)).is_empty());
        // Newer presence from b replaces the older one, at the end.
        assert!(names(s.offer(presence("b@x/1", "p3"), 10)).is_empty());
        let body =
            el("<message xmlns='jabber:client' from='b@x/1' type='chat'><body>hi</body></message>");
        assert_eq!(names(s.offer(body, 10)), ["c1", "message", "p3", "hi"]);
        assert!(s.held.is_empty());
        // A subscription request is not held either.
        let sub = el("<presence xmlns='jabber:client' from='d@x' type='subscribe'/>");
        assert_eq!(names(s.offer(sub, 10)), ["presence"]);
    }

    #[test]
    fn past_the_bound_everything_held_goes_out() {
        let mut s = State {
            inactive: true,
            ..State::default()
        };
        for i in 0..3 {
            assert!(names(s.offer(presence(&format!("u{i}@x"), &format!("p{i}")), 3)).is_empty());
        }
        assert_eq!(
            names(s.offer(presence("u3@x", "p3"), 3)),
            ["p0", "p1", "p2", "p3"]
        );
        assert!(s.held.is_empty());
    }
}
