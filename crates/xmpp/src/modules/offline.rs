//! XEP-0160 offline messages: `chat`/`normal` messages for an account with no available
//! resource are stored and delivered, with XEP-0203 delay stamps, at its next initial
//! presence (non-negative priority).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use minidom::Element;
use tokio::sync::Mutex;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::message::Message;
use xmpp_parsers::ns;

use crate::router::{RouterBuilder, Scope, SessionEvent};
use crate::server::Server;

/// The `[xmpp.offline]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// Messages kept for an account with no available resource; beyond it senders get
    /// `service-unavailable`.
    pub max_messages: i64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        Self { max_messages: 1000 }
    }
}

pub fn register(r: &mut RouterBuilder) {
    // One flush at a time per account: two resources coming online together would otherwise
    // both read the stored messages before either deleted them, and get them twice.
    let flushing: Arc<DashMap<BareJid, Arc<Mutex<()>>>> = Arc::default();
    r.on_event(move |server, event| {
        let flushing = flushing.clone();
        async move {
            if let SessionEvent::InitialPresence(session) = event
                && super::presence::priority(&session) >= 0
            {
                let owner = session.jid.to_bare();
                let lock = flushing.entry(owner.clone()).or_default().clone();
                {
                    let _one_at_a_time = lock.lock().await;
                    flush(&server, &session).await;
                }
                // Forget the lock once nobody else holds or waits for it.
                flushing.remove_if(&owner, |_, l| Arc::strong_count(l) == 2);
            }
        }
    });
    r.disco_feature(Scope::Server, "msgoffline");
}

/// Chat-state-only messages carry nothing worth keeping (XEP-0160 §3); they count as handled.
fn worth_keeping(m: &Message) -> bool {
    !m.bodies.is_empty()
        || !m.subjects.is_empty()
        || m.payloads
            .iter()
            .any(|p| p.ns() != "http://jabber.org/protocol/chatstates")
}

/// Stores a message no resource of `to` could take; true once it is stored (or not worth
/// keeping), false when the sender must get an error.
pub async fn store(server: &Server, to: &BareJid, m: Message) -> bool {
    if !worth_keeping(&m) {
        return true;
    }
    let xml = String::from(&Element::from(m));
    let now = Utc::now().timestamp_millis();
    let max = server.config.offline.max_messages;
    match server.store.offline_push(to.as_str(), now, &xml, max).await {
        Ok(stored) => {
            if !stored {
                tracing::info!(%to, "offline store full; message refused");
            }
            stored
        }
        Err(e) => {
            tracing::error!(error = %e, "offline store failed");
            false
        }
    }
}

async fn flush(server: &Server, session: &crate::sessions::Session) {
    let owner = session.jid.to_bare();
    let messages = match server.store.offline_fetch(owner.as_str()).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "offline fetch failed");
            return;
        }
    };
    let mut sent = Vec::new();
    for m in messages {
        let Ok(mut el) = m.xml.parse::<Element>() else {
            sent.push(m.id); // unreadable rows would block the queue forever
            continue;
        };
        let stamp = DateTime::<Utc>::from_timestamp_millis(m.stamp_ms).unwrap_or_else(Utc::now);
        let delay = Element::builder("delay", ns::DELAY)
            .attr(
                minidom::rxml::xml_ncname!("from").to_owned(),
                owner.domain().as_str(),
            )
            .attr(
                minidom::rxml::xml_ncname!("stamp").to_owned(),
                stamp.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            )
            .append("Offline Storage")
            .build();
        el.append_child(delay);
        if !session.send(el) {
            break; // the rest stays stored for the next login
        }
        sent.push(m.id);
    }
    if let Err(e) = server.store.offline_delete(owner.as_str(), &sent).await {
        tracing::error!(error = %e, "offline delete failed");
    }
}
