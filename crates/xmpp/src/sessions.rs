//! The registry of bound resources. Each session owns a bounded outbound queue that only its
//! connection task drains, so delivering never blocks the sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use minidom::Element;
use tokio::sync::{Notify, mpsc};
use xmpp_parsers::jid::{BareJid, FullJid};

use crate::extensions::Extensions;

/// What a connection task receives besides its own client's input.
#[derive(Debug)]
pub enum Outbound {
    Stanza(Element),
    /// Another connection bound the same resource (RFC 6120 §7.7.2.2): close with `conflict`.
    Replaced,
}

/// One bound resource.
#[derive(Debug)]
pub struct Session {
    /// Distinguishes a replaced session from its successor with the same JID.
    pub id: u64,
    pub jid: FullJid,
    tx: mpsc::Sender<Outbound>,
    /// Woken when the queue overflowed: the session is stuck and gets closed.
    pub overflow: Notify,
    /// Modules' own per-session state (presence, roster interest, …).
    pub ext: Extensions,
}

impl Session {
    /// Queues a stanza for this session; false when it could not be queued.
    pub fn send(&self, el: Element) -> bool {
        self.push(Outbound::Stanza(el))
    }

    pub fn push(&self, out: Outbound) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
                self.overflow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Bare JID → bound resources.
#[derive(Default)]
pub struct Sessions {
    map: DashMap<BareJid, Vec<Arc<Session>>>,
    next_id: AtomicU64,
}

impl Sessions {
    /// Creates a session handle and the receiving end of its queue.
    pub fn create(&self, jid: FullJid, queue: usize) -> (Arc<Session>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            id,
            jid,
            tx,
            overflow: Notify::new(),
            ext: Extensions::default(),
        };
        (Arc::new(session), rx)
    }

    /// Registers a bound session; returns the one it replaced, if any.
    pub fn bind(&self, session: Arc<Session>) -> Option<Arc<Session>> {
        let mut entry = self.map.entry(session.jid.to_bare()).or_default();
        let old = entry
            .iter()
            .position(|s| s.jid == session.jid)
            .map(|i| entry.swap_remove(i));
        entry.push(session);
        old
    }

    /// Removes the session if it is still the one registered under its JID.
    pub fn unbind(&self, session: &Session) {
        let bare = session.jid.to_bare();
        let empty = match self.map.get_mut(&bare) {
            Some(mut list) => {
                list.retain(|s| s.id != session.id);
                list.is_empty()
            }
            None => false,
        };
        if empty {
            self.map.remove_if(&bare, |_, list| list.is_empty());
        }
    }

    pub fn resources(&self, bare: &BareJid) -> Vec<Arc<Session>> {
        self.map.get(bare).map(|l| l.clone()).unwrap_or_default()
    }

    pub fn get(&self, full: &FullJid) -> Option<Arc<Session>> {
        self.map
            .get(&full.to_bare())
            .and_then(|l| l.iter().find(|s| &s.jid == full).cloned())
    }

    pub fn has_resources(&self, bare: &BareJid) -> bool {
        self.map.get(bare).is_some_and(|l| !l.is_empty())
    }

    /// Number of bound sessions (for metrics and tests).
    pub fn count(&self) -> usize {
        self.map.iter().map(|e| e.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_the_same_resource_replaces_and_unbinding_the_old_keeps_the_new() {
        let s = Sessions::default();
        let jid: FullJid = "a@x/r".parse().expect("jid");
        let (old, _rx1) = s.create(jid.clone(), 16);
        let (new, _rx2) = s.create(jid.clone(), 16);
        assert!(s.bind(old.clone()).is_none());
        let replaced = s.bind(new.clone()).expect("replaced");
        assert_eq!(replaced.id, old.id);
        s.unbind(&old);
        assert_eq!(s.get(&jid).map(|x| x.id), Some(new.id));
        s.unbind(&new);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_flags_overflow() {
        let s = Sessions::default();
        let (sess, _rx) = s.create("a@x/r".parse().expect("jid"), 1);
        let el: Element = "<message xmlns='jabber:client'/>".parse().expect("xml");
        assert!(sess.send(el.clone()));
        assert!(!sess.send(el));
    }
}
