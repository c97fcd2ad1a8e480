//! RFC 6121 §3–4: presence broadcast, probes (answered locally from session state),
//! directed presence, and the subscription state machine with roster pushes.

use std::collections::HashSet;
use std::sync::Arc;

use minidom::Element;
use postern_store::roster::{RosterItem, Subscription};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::presence::{Presence, Type};

use crate::router::{Ctx, Dest, RouterBuilder, SessionEvent};
use crate::server::Server;
use crate::sessions::Session;

/// A session's presence, as RFC 6121 needs it for routing (a session extension).
#[derive(Debug, Default)]
pub struct State {
    /// Sent initial presence and not yet unavailable.
    pub available: bool,
    pub priority: i8,
    /// Last broadcast available presence, answered to probes.
    pub presence: Option<Presence>,
    /// Recipients of directed presence, told when this session goes unavailable.
    pub directed: HashSet<Jid>,
}

pub fn is_available(session: &Session) -> bool {
    session.ext.with(|s: &mut State| s.available)
}

pub fn priority(session: &Session) -> i8 {
    session.ext.with(|s: &mut State| s.priority)
}

/// The priority of an available session, `None` for one that is not (one lock, for the
/// per-message delivery choice).
pub fn available_priority(session: &Session) -> Option<i8> {
    session
        .ext
        .with(|s: &mut State| s.available.then_some(s.priority))
}

fn last_presence(session: &Session) -> Option<Presence> {
    session.ext.with(|s: &mut State| s.presence.clone())
}

/// Available resources of an account, for delivery and presence.
pub fn available(server: &Server, bare: &BareJid) -> Vec<Arc<Session>> {
    let mut all = server.sessions.resources(bare);
    all.retain(|s| is_available(s));
    all
}

pub fn register(r: &mut RouterBuilder) {
    r.presence_hook(0, handle);
    r.on_event(|server, event| async move {
        if let SessionEvent::Closed(session) = event
            && is_available(&session)
        {
            let p = Presence::unavailable().with_from(Jid::from(session.jid.clone()));
            broadcast(&server, &session, p).await;
        }
    });
}

async fn handle(ctx: Ctx, dest: Dest, p: Presence) -> Option<Presence> {
    let server = &ctx.server;
    let user = ctx.from.to_bare();
    match p.type_ {
        Type::None | Type::Unavailable => match dest {
            Dest::Unaddressed => broadcast(server, &ctx.session, p).await,
            Dest::Account(_) | Dest::Full(_) => directed(&ctx, &dest, p),
            Dest::Server(_) | Dest::Service { .. } | Dest::Remote(_) => {}
        },
        Type::Subscribe | Type::Subscribed | Type::Unsubscribe | Type::Unsubscribed => {
            let contact = match dest {
                Dest::Account(b) => b,
                Dest::Full(f) => f.to_bare(),
                _ => return None,
            };
            if contact == user {
                return None;
            }
            match p.type_ {
                Type::Subscribe => subscribe(server, &user, &contact, p).await,
                Type::Subscribed => subscribed(server, &user, &contact).await,
                Type::Unsubscribe => unsubscribe(server, &user, &contact).await,
                _ => unsubscribed(server, &user, &contact).await,
            }
        }
        Type::Error => {
            if let Dest::Full(to) = &dest {
                server.send_to_full(to, p.into());
            }
        }
        // Probes are the server's business (§4.3); clients' probes are ignored.
        Type::Probe => {}
    }
    None
}

/// §4.2/§4.4/§4.5: presence without `to`, to the subscribers and the user's own resources.
async fn broadcast(server: &Server, session: &Arc<Session>, p: Presence) {
    let user = session.jid.to_bare();
    let now_available = p.type_ == Type::None;
    let (initial, directed) = session.ext.with(|st: &mut State| {
        let initial = now_available && !st.available;
        st.available = now_available;
        st.priority = p.priority.0;
        st.presence = now_available.then(|| p.clone());
        let directed = if now_available {
            Default::default()
        } else {
            std::mem::take(&mut st.directed)
        };
        (initial, directed)
    });
    let roster = match server.store.roster_get(user.as_str()).await {
        Ok((_, items)) => items,
        Err(e) => {
            tracing::error!(error = %e, "roster read failed; presence goes to own resources only");
            vec![]
        }
    };
    let mut told: Vec<BareJid> = Vec::new();
    for item in &roster {
        if matches!(item.subscription, Subscription::From | Subscription::Both)
            && let Ok(contact) = item.contact.parse::<BareJid>()
        {
            deliver(
                server,
                &contact,
                p.clone().with_to(Jid::from(contact.clone())),
            );
            told.push(contact);
        }
    }
    // Including the sending resource itself (§4.2.2).
    for own in available(server, &user)
        .iter()
        .chain((!now_available).then_some(session))
    {
        own.send(p.clone().with_to(Jid::from(own.jid.clone())).into());
    }
    for to in directed {
        if !told.contains(&to.to_bare()) {
            send_to(server, &to, p.clone().with_to(to.clone()));
        }
    }
    if initial {
        probe(server, session, &roster);
        for (_, xml) in server
            .store
            .pending_in_list(user.as_str())
            .await
            .unwrap_or_default()
        {
            if let Ok(el) = xml.parse::<Element>() {
                session.send(el);
            }
        }
        server
            .router
            .fire(server, SessionEvent::InitialPresence(session.clone()))
            .await;
    }
}

/// §4.3: answer the user's probe of each contact it is subscribed to, from local state.
fn probe(server: &Server, session: &Session, roster: &[RosterItem]) {
    for item in roster {
        if !matches!(item.subscription, Subscription::To | Subscription::Both) {
            continue;
        }
        let Ok(contact) = item.contact.parse::<BareJid>() else {
            continue;
        };
        for res in available(server, &contact) {
            if let Some(p) = last_presence(&res) {
                let p = p
                    .with_from(Jid::from(res.jid.clone()))
                    .with_to(Jid::from(session.jid.clone()));
                session.send(p.into());
            }
        }
    }
}

/// §4.6 directed presence: delivered and remembered so unavailable follows it.
fn directed(ctx: &Ctx, dest: &Dest, p: Presence) {
    let to: Jid = match dest {
        Dest::Account(b) => b.clone().into(),
        Dest::Full(f) => f.clone().into(),
        _ => return,
    };
    ctx.session.ext.with(|st: &mut State| {
        if p.type_ == Type::None {
            st.directed.insert(to.clone());
        } else {
            st.directed.remove(&to);
        }
    });
    send_to(&ctx.server, &to, p);
}

fn send_to(server: &Server, to: &Jid, p: Presence) {
    match to.clone().try_into_full() {
        Ok(full) => {
            server.send_to_full(&full, p.into());
        }
        Err(bare) => deliver(server, &bare, p),
    }
}

/// Presence to a bare JID goes to all its available resources (§4.2.2, §3.1.3).
fn deliver(server: &Server, to: &BareJid, p: Presence) {
    for s in available(server, to) {
        s.send(p.clone().into());
    }
}

/// One step of the RFC 6121 subscription state machine, on one side's roster item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The owner asked for the contact's presence (pending out).
    Ask,
    GainFrom,
    GainTo,
    LoseFrom,
    LoseTo,
}

/// The state after `change` (Table 1 of RFC 6121 §3 reduced to what a single server needs).
fn apply(item: &mut RosterItem, change: Change) -> bool {
    use Subscription::{Both, From, None, To};
    let before = (item.subscription, item.ask);
    item.subscription = match (change, item.subscription) {
        (Change::GainFrom, None) => From,
        (Change::GainFrom, To) => Both,
        (Change::GainTo, None) => To,
        (Change::GainTo, From) => Both,
        (Change::LoseFrom, From) => None,
        (Change::LoseFrom, Both) => To,
        (Change::LoseTo, To) => None,
        (Change::LoseTo, Both) => From,
        (_, s) => s,
    };
    match change {
        Change::Ask => item.ask = !matches!(item.subscription, To | Both),
        Change::GainTo | Change::LoseTo => item.ask = false,
        Change::GainFrom | Change::LoseFrom => {}
    }
    (item.subscription, item.ask) != before
}

/// Applies `change` to `owner`'s item for `contact` (created blank first when `create`),
/// saving and pushing it when it changed. Returns the item and whether it changed.
async fn update(
    server: &Server,
    owner: &BareJid,
    contact: &BareJid,
    create: bool,
    change: Change,
) -> Option<(RosterItem, bool)> {
    let existing = server
        .store
        .roster_item(owner.as_str(), contact.as_str())
        .await
        .ok()?;
    let mut item = match existing {
        Some(i) => i,
        None if create => RosterItem {
            contact: contact.to_string(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            groups: vec![],
        },
        None => return None,
    };
    let changed = apply(&mut item, change);
    if changed && let Err(e) = super::roster::save(server, owner, &item).await {
        tracing::error!(error = %e, "roster update failed");
        return None;
    }
    Some((item, changed))
}

fn changed(result: Option<(RosterItem, bool)>) -> bool {
    result.is_some_and(|(_, c)| c)
}

fn has_from(item: Option<&RosterItem>) -> bool {
    item.is_some_and(|i| matches!(i.subscription, Subscription::From | Subscription::Both))
}

fn from_bare(p: Presence, from: &BareJid, to: &BareJid) -> Presence {
    p.with_from(Jid::from(from.clone()))
        .with_to(Jid::from(to.clone()))
}

/// §3.1: `user` asks for `contact`'s presence.
async fn subscribe(server: &Server, user: &BareJid, contact: &BareJid, request: Presence) {
    let local = server.account_exists(contact).await;
    let mine = update(server, user, contact, true, Change::Ask).await;
    if !local {
        if server.is_local_domain(contact.domain().as_str()) {
            // No such account: answer as it would, so the request does not hang.
            unsubscribed(server, contact, user).await;
        }
        return;
    }
    let theirs = server
        .store
        .roster_item(contact.as_str(), user.as_str())
        .await
        .ok()
        .flatten();
    let subscribed_already =
        mine.is_some_and(|(i, _)| matches!(i.subscription, Subscription::To | Subscription::Both));
    if has_from(theirs.as_ref()) || subscribed_already {
        // §3.1.3: the contact already approved; the contact's server answers for it.
        subscribed(server, contact, user).await;
        return;
    }
    let request = from_bare(request, user, contact);
    let xml = String::from(&Element::from(request.clone()));
    if let Err(e) = server
        .store
        .pending_in_put(contact.as_str(), user.as_str(), &xml)
        .await
    {
        tracing::error!(error = %e, "could not store the subscription request");
    }
    deliver(server, contact, request);
}

/// §3.1.5: `user` approves `contact`'s request (or the server does on its behalf).
pub async fn subscribed(server: &Server, user: &BareJid, contact: &BareJid) {
    let pending = server
        .store
        .pending_in_remove(user.as_str(), contact.as_str())
        .await
        .unwrap_or(false);
    let mine = update(server, user, contact, pending, Change::GainFrom).await;
    if !pending && !has_from(mine.as_ref().map(|(i, _)| i)) {
        return; // nothing was requested and nothing is granted (no pre-approval)
    }
    if !server.account_exists(contact).await {
        return;
    }
    if changed(update(server, contact, user, false, Change::GainTo).await) {
        deliver(
            server,
            contact,
            from_bare(Presence::subscribed(), user, contact),
        );
        // The new subscriber learns the user's current presence.
        for res in available(server, user) {
            if let Some(p) = last_presence(&res) {
                let p = p
                    .with_from(Jid::from(res.jid.clone()))
                    .with_to(Jid::from(contact.clone()));
                deliver(server, contact, p);
            }
        }
    }
}

/// §3.3: `user` no longer wants `contact`'s presence.
pub async fn unsubscribe(server: &Server, user: &BareJid, contact: &BareJid) {
    update(server, user, contact, false, Change::LoseTo).await;
    if !server.account_exists(contact).await {
        return;
    }
    let _ = server
        .store
        .pending_in_remove(contact.as_str(), user.as_str())
        .await;
    let lost = changed(update(server, contact, user, false, Change::LoseFrom).await);
    deliver(
        server,
        contact,
        from_bare(Presence::unsubscribe(), user, contact),
    );
    if lost {
        gone(server, contact, user);
    }
}

/// §3.2: `user` cancels (or denies) `contact`'s subscription to the user.
pub async fn unsubscribed(server: &Server, user: &BareJid, contact: &BareJid) {
    let _ = server
        .store
        .pending_in_remove(user.as_str(), contact.as_str())
        .await;
    update(server, user, contact, false, Change::LoseFrom).await;
    if !server.account_exists(contact).await {
        return;
    }
    if changed(update(server, contact, user, false, Change::LoseTo).await) {
        deliver(
            server,
            contact,
            from_bare(Presence::new(Type::Unsubscribed), user, contact),
        );
        gone(server, user, contact);
    }
}

/// `to` lost its subscription to `whose` presence: it sees `whose` go unavailable.
/// Presence flows again between `user` and the roster contacts `unblocked` names (XEP-0191
/// §3.4, after an unblock): the user's current presence to those subscribed to it, theirs to
/// the user where the user is subscribed to them.
pub async fn resend(server: &Server, user: &BareJid, unblocked: impl Fn(&BareJid) -> bool) {
    let roster = match server.store.roster_get(user.as_str()).await {
        Ok((_, items)) => items,
        Err(e) => {
            tracing::error!(error = %e, "roster read failed");
            return;
        }
    };
    let mine = available(server, user);
    for item in roster {
        let Ok(contact) = item.contact.parse::<BareJid>() else {
            continue;
        };
        if !unblocked(&contact) {
            continue;
        }
        if matches!(item.subscription, Subscription::From | Subscription::Both) {
            for res in &mine {
                if let Some(p) = last_presence(res) {
                    let p = p
                        .with_from(Jid::from(res.jid.clone()))
                        .with_to(Jid::from(contact.clone()));
                    deliver(server, &contact, p);
                }
            }
        }
        if matches!(item.subscription, Subscription::To | Subscription::Both) {
            for theirs in available(server, &contact) {
                let Some(p) = last_presence(&theirs) else {
                    continue;
                };
                for me in &mine {
                    let p = p
                        .clone()
                        .with_from(Jid::from(theirs.jid.clone()))
                        .with_to(Jid::from(me.jid.clone()));
                    me.send(p.into());
                }
            }
        }
    }
}

fn gone(server: &Server, whose: &BareJid, to: &BareJid) {
    for res in available(server, whose) {
        let p = Presence::unavailable()
            .with_from(Jid::from(res.jid.clone()))
            .with_to(Jid::from(to.clone()));
        deliver(server, to, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(subscription: Subscription, ask: bool) -> RosterItem {
        RosterItem {
            contact: "b@x".into(),
            name: None,
            subscription,
            ask,
            groups: vec![],
        }
    }

    #[test]
    fn the_subscription_state_machine_follows_rfc_6121() {
        use Subscription::*;
        let cases = [
            (None, false, Change::Ask, None, true),
            (To, false, Change::Ask, To, false),
            (None, true, Change::GainTo, To, false),
            (From, true, Change::GainTo, Both, false),
            (None, false, Change::GainFrom, From, false),
            (To, false, Change::GainFrom, Both, false),
            (Both, false, Change::LoseFrom, To, false),
            (Both, false, Change::LoseTo, From, false),
            (None, true, Change::LoseTo, None, false),
            (From, false, Change::LoseFrom, None, false),
        ];
        for (sub, ask, change, want_sub, want_ask) in cases {
            let mut i = item(sub, ask);
            let changed = apply(&mut i, change);
            assert_eq!(
                (i.subscription, i.ask),
                (want_sub, want_ask),
                "{sub:?}/{ask} + {change:?}"
            );
            assert_eq!(changed, (sub, ask) != (want_sub, want_ask));
        }
    }
}
