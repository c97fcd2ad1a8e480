//! XEP-0280 Message Carbons: each carbons-enabled resource of an account sees both sides of
//! the account's one-to-one conversations, whichever resource took part.
//!
//! A message hook just before delivery copies an eligible message (§6: `chat`, or `normal`
//! with a body, or an IM payload such as a chat state, receipt or marker; never with
//! `<private/>` or the XEP-0334 `<no-copy/>` hint) as `<sent/>` to the sender's other enabled
//! resources and as `<received/>` to the recipient's enabled resources that delivery does not
//! reach. `<private/>` is removed from what is delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minidom::Element;
use xmpp_parsers::carbons::{Disable, Enable, Received, Sent};
use xmpp_parsers::forwarding::Forwarded;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;

use crate::router::{Ctx, Dest, IqKind, IqRequest, IqResult, RouterBuilder, Scope, SessionEvent};
use crate::server::Server;
use crate::sessions::Session;

/// Right before delivery ([`super::message::PRIORITY`]), after anything that may drop it.
pub const PRIORITY: i32 = 900;

/// XEP-0334 message processing hints.
const HINTS: &str = "urn:xmpp:hints";

/// Payloads that make a message of any type part of the conversation (§6).
const IM_PAYLOADS: [&str; 3] = [
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
];

/// Whether this session asked for carbons (a session extension).
#[derive(Debug, Default)]
struct Enabled(bool);

pub fn register(r: &mut RouterBuilder) {
    // Sessions with carbons on, server-wide: while there are none, a message costs this
    // module one atomic load.
    let on: Arc<AtomicUsize> = Arc::default();
    r.iq(Scope::Account, IqKind::Set, ns::CARBONS, "enable", {
        let on = on.clone();
        move |ctx, req: IqRequest<Enable>| {
            let on = on.clone();
            async move { set(&ctx, &req.to, true, &on) }
        }
    });
    r.iq(Scope::Account, IqKind::Set, ns::CARBONS, "disable", {
        let on = on.clone();
        move |ctx, req: IqRequest<Disable>| {
            let on = on.clone();
            async move { set(&ctx, &req.to, false, &on) }
        }
    });
    r.on_event({
        let on = on.clone();
        move |_, event| {
            if let SessionEvent::Closed(s) = &event
                && s.ext.with(|e: &mut Enabled| std::mem::take(&mut e.0))
            {
                on.fetch_sub(1, Ordering::Relaxed);
            }
            async {}
        }
    });
    // XEP-0386: carbons on from the first stanza, without an IQ.
    r.bind2_feature(ns::CARBONS, ns::CARBONS, "enable", {
        let on = on.clone();
        move |_, session, _| {
            switch(session, true, &on);
            None
        }
    });
    r.disco_feature(Scope::Server, ns::CARBONS);
    r.message_hook(PRIORITY, move |ctx, dest, m| {
        let active = on.load(Ordering::Relaxed) > 0;
        copy(ctx, dest, m, active)
    });
}

/// §4: only for the session itself, addressed to its own account (or to no one).
fn set(ctx: &Ctx, to: &Jid, wanted: bool, on: &AtomicUsize) -> IqResult {
    ctx.own_account(to)?;
    switch(&ctx.session, wanted, on);
    Ok(None)
}

fn switch(session: &Session, wanted: bool, on: &AtomicUsize) {
    let was = session
        .ext
        .with(|e: &mut Enabled| std::mem::replace(&mut e.0, wanted));
    match (was, wanted) {
        (false, true) => {
            on.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            on.fetch_sub(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

fn is_enabled(session: &Session) -> bool {
    session.ext.with(|e: &mut Enabled| e.0)
}

async fn copy(ctx: Ctx, dest: Dest, mut m: Message, active: bool) -> Option<Message> {
    if !active {
        m.payloads.retain(|p| !p.is("private", ns::CARBONS));
        return Some(m);
    }
    let private = m
        .payloads
        .iter()
        .any(|p| p.is("private", ns::CARBONS) || p.is("no-copy", HINTS));
    m.payloads.retain(|p| !p.is("private", ns::CARBONS));
    if private || !eligible(&m) {
        return Some(m);
    }
    let server = &ctx.server;
    let sender = ctx.from.to_bare();
    let recipient = match &dest {
        Dest::Account(bare) => Some(bare.clone()),
        Dest::Full(full) => Some(full.to_bare()),
        Dest::Unaddressed | Dest::Server(_) | Dest::Service { .. } | Dest::Remote(_) => None,
    };
    // Between two resources of one account there is no other side to copy to.
    if recipient.as_ref() == Some(&sender) || matches!(dest, Dest::Unaddressed) {
        return Some(m);
    }
    for own in enabled(server, &sender) {
        if own.jid != ctx.from {
            let sent = Sent {
                forwarded: forwarded(&m),
            };
            own.send(wrapper(&m, &sender, &own, sent.into()));
        }
    }
    if let Some(recipient) = recipient {
        let theirs_enabled = enabled(server, &recipient);
        if theirs_enabled.is_empty() {
            return Some(m);
        }
        let reached = super::message::targets(server, &sender, &dest, &m);
        for theirs in theirs_enabled {
            if !reached.iter().any(|s| s.id == theirs.id) {
                let received = Received {
                    forwarded: forwarded(&m),
                };
                theirs.send(wrapper(&m, &recipient, &theirs, received.into()));
            }
        }
    }
    Some(m)
}

/// §6, for the part a single server decides.
fn eligible(m: &Message) -> bool {
    match m.type_ {
        MessageType::Chat => true,
        MessageType::Groupchat | MessageType::Error => false,
        MessageType::Normal | MessageType::Headline => {
            (m.type_ == MessageType::Normal && !m.bodies.is_empty())
                || m.payloads
                    .iter()
                    .any(|p| IM_PAYLOADS.contains(&p.ns().as_str()))
        }
    }
}

/// Bound resources of `bare` that enabled carbons (enabling is the request; no presence is
/// needed, as in Prosody and ejabberd).
fn enabled(server: &Server, bare: &BareJid) -> Vec<Arc<Session>> {
    let mut all = server.sessions.resources(bare);
    all.retain(|s| is_enabled(s));
    all
}

fn forwarded(m: &Message) -> Forwarded {
    Forwarded {
        delay: None,
        message: m.clone(),
    }
}

/// The copy for `to`, from the account's bare JID (§6: that is how clients tell a real
/// carbon from a forged one), of the original's type.
fn wrapper(original: &Message, account: &BareJid, to: &Session, payload: Element) -> Element {
    let mut copy = Message::new(Some(Jid::from(to.jid.clone())));
    copy.from = Some(Jid::from(account.clone()));
    copy.type_ = original.type_.clone();
    copy.payloads.push(payload);
    copy.into()
}
