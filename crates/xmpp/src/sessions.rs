//! The registry of bound resources. Each session owns a bounded outbound queue that only its
//! connection task drains, so delivering never blocks the sender.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// The account may no longer log in (its backend stopped listing it): close with
    /// `not-authorized`, and end the session (not kept for resumption).
    Revoked,
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
    /// Stanzas read from the client so far (wrapping), counted by the connection task.
    received: AtomicU32,
    /// A new connection waiting to take this session over (see [`Session::attach`]).
    attach: Mutex<Slot>,
    attach_ready: Notify,
}

/// The client's own name for its device (XEP-0388 `<user-agent id/>`), when it gave one: a
/// session extension set at binding.
#[derive(Debug, Default)]
pub struct DeviceId(pub Option<String>);

/// A new connection that takes over a session (stream resumption): the session's task drops
/// its current connection, if any, writes what `greet` returns, then serves `xml`.
pub struct Attach {
    pub(crate) xml: crate::stream::Xml,
    /// Runs in the session's task at take-over; what it returns is written first, as is
    /// (these elements passed the outbound filters once already, or are not stanzas).
    pub greet: Greet,
}

/// A session's take-over slot.
#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    Waiting(Box<Attach>),
    /// The session is over; nothing can take it over any more.
    Ended,
}

/// See [`Attach::greet`].
pub type Greet = Box<dyn FnOnce(&Arc<Session>) -> Vec<Element> + Send>;

impl std::fmt::Debug for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attach")
    }
}

impl Session {
    /// Queues a stanza for this session; false when it could not be queued.
    pub fn send(&self, el: Element) -> bool {
        self.offer(el).is_ok()
    }

    /// Like [`Session::send`], handing the element back when it could not be queued.
    pub fn offer(&self, el: Element) -> Result<(), Element> {
        match self.try_push(Outbound::Stanza(el)) {
            Err(Outbound::Stanza(el)) => Err(el),
            Ok(()) | Err(Outbound::Replaced | Outbound::Revoked) => Ok(()),
        }
    }

    pub fn push(&self, out: Outbound) -> bool {
        self.try_push(out).is_ok()
    }

    /// Queues `out`, or hands it back; a full queue also marks the session stuck.
    fn try_push(&self, out: Outbound) -> Result<(), Outbound> {
        self.tx.try_send(out).map_err(|e| {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
                self.overflow.notify_one();
            }
            e.into_inner()
        })
    }

    /// Stanzas of this session's client handled so far, wrapping at 2^32 (XEP-0198's `h`): a
    /// stanza counts once its routing is over, including every durable write it needs (the
    /// archive, offline storage), so that nothing acknowledged is lost in a crash.
    pub fn received(&self) -> u32 {
        self.received.load(Ordering::Relaxed)
    }

    pub(crate) fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands this session to a new connection; gives it back when the session has ended
    /// meanwhile, or another connection is already waiting to take it over (that one keeps
    /// its place, the new one is answered by the caller).
    pub fn attach(&self, attach: Box<Attach>) -> Result<(), Box<Attach>> {
        let mut slot = self.slot();
        if matches!(*slot, Slot::Ended | Slot::Waiting(_)) {
            return Err(attach);
        }
        *slot = Slot::Waiting(attach);
        drop(slot);
        self.attach_ready.notify_one();
        Ok(())
    }

    /// Waits for a connection handed over by [`Session::attach`]; cancel-safe.
    pub(crate) async fn attached(&self) -> Box<Attach> {
        loop {
            {
                let mut slot = self.slot();
                if matches!(*slot, Slot::Waiting(_))
                    && let Slot::Waiting(a) = std::mem::take(&mut *slot)
                {
                    return a;
                }
            }
            self.attach_ready.notified().await;
        }
    }

    /// Marks the session over for [`Session::attach`]; returns a connection that was still
    /// waiting to take it over.
    pub(crate) fn end_attachments(&self) -> Option<Box<Attach>> {
        match std::mem::replace(&mut *self.slot(), Slot::Ended) {
            Slot::Waiting(a) => Some(a),
            Slot::Empty | Slot::Ended => None,
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.attach.lock().unwrap_or_else(|p| p.into_inner())
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
            received: AtomicU32::new(0),
            attach: Mutex::new(Slot::Empty),
            attach_ready: Notify::new(),
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
