//! RFC 6121 §8.5: message delivery, the last message hook. Messages to an account go to its
//! available resources of highest non-negative priority, else to offline storage.

use std::sync::Arc;

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::message::{Message, MessageType};

use crate::router::{Ctx, Dest, RouterBuilder, bounce};
use crate::server::Server;
use crate::sessions::Session;
use crate::stanza::{Stanza, StanzaFault};

/// Delivery runs after every other message hook.
pub const PRIORITY: i32 = 1000;

pub fn register(r: &mut RouterBuilder) {
    r.message_hook(PRIORITY, deliver);
}

async fn deliver(ctx: Ctx, dest: Dest, m: Message) -> Option<Message> {
    match dest {
        Dest::Unaddressed => to_bare(&ctx, ctx.from.to_bare(), m).await,
        Dest::Account(bare) => to_bare(&ctx, bare, m).await,
        Dest::Full(full) => {
            if let Some(s) = ctx.server.sessions.get(&full) {
                // A stuck session (its queue full) does not take it: as if it were gone.
                if let Err(el) = s.offer(m.into())
                    && let Ok(m) = Message::try_from(el)
                    && m.type_ != MessageType::Error
                {
                    to_bare(&ctx, full.to_bare(), m).await;
                }
                return None;
            }
            match m.type_ {
                // §8.5.3.2.1: as if sent to the bare JID.
                MessageType::Chat | MessageType::Normal | MessageType::Headline => {
                    to_bare(&ctx, full.to_bare(), m).await
                }
                MessageType::Groupchat => bounce(
                    &ctx,
                    &Stanza::Message(m),
                    &StanzaFault::service_unavailable(),
                ),
                MessageType::Error => {}
            }
        }
        Dest::Remote(_) => bounce(
            &ctx,
            &Stanza::Message(m),
            &StanzaFault::remote_server_not_found(),
        ),
        // Nothing at the server itself takes messages; a service module that takes them
        // (group chat) has a hook of its own before this one.
        Dest::Server(_) | Dest::Service { .. } => bounce(
            &ctx,
            &Stanza::Message(m),
            &StanzaFault::service_unavailable(),
        ),
    }
    None
}

/// The sessions a message of `type_` to the bare JID `to` is delivered to (§8.5.2.1): every
/// available resource with non-negative priority for headlines, those of the highest such
/// priority otherwise.
pub fn recipients(server: &Server, to: &BareJid, type_: &MessageType) -> Vec<Arc<Session>> {
    let mut candidates: Vec<_> = server
        .sessions
        .resources(to)
        .into_iter()
        .filter_map(|s| super::presence::available_priority(&s).map(|p| (p, s)))
        .filter(|(p, _)| *p >= 0)
        .collect();
    if *type_ != MessageType::Headline {
        let top = candidates.iter().map(|(p, _)| *p).max();
        candidates.retain(|(p, _)| Some(*p) == top);
    }
    candidates.into_iter().map(|(_, s)| s).collect()
}

/// The sessions a message from `sender` addressed to `dest` reaches, as [`deliver`] picks them.
pub fn targets(server: &Server, sender: &BareJid, dest: &Dest, m: &Message) -> Vec<Arc<Session>> {
    match dest {
        Dest::Unaddressed => recipients(server, sender, &m.type_),
        Dest::Account(bare) => recipients(server, bare, &m.type_),
        Dest::Full(full) => match server.sessions.get(full) {
            Some(s) => vec![s],
            None if m.type_ != MessageType::Groupchat => {
                recipients(server, &full.to_bare(), &m.type_)
            }
            None => vec![],
        },
        Dest::Server(_) | Dest::Service { .. } | Dest::Remote(_) => vec![],
    }
}

async fn to_bare(ctx: &Ctx, to: BareJid, m: Message) {
    let server = &ctx.server;
    if m.type_ == MessageType::Error {
        return; // §8.5.2.1.1: errors to a bare JID are dropped
    }
    if !server.account_exists(&to).await {
        bounce(
            ctx,
            &Stanza::Message(m),
            &StanzaFault::service_unavailable(),
        );
        return;
    }
    let candidates = recipients(server, &to, &m.type_);
    match m.type_ {
        MessageType::Groupchat => bounce(
            ctx,
            &Stanza::Message(m),
            &StanzaFault::service_unavailable(),
        ),
        MessageType::Headline => {
            for s in candidates {
                s.send(m.clone().into());
            }
        }
        _ => {
            let mut delivered = false;
            for s in candidates {
                delivered |= s.send(m.clone().into());
            }
            if !delivered && !super::offline::store(server, &to, m.clone()).await {
                bounce(
                    ctx,
                    &Stanza::Message(m),
                    &StanzaFault::service_unavailable(),
                );
            }
        }
    }
}
