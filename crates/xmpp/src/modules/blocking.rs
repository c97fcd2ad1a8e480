//! XEP-0191 Blocking Command: an account's blocklist, kept in the store, with pushes to
//! every resource that asked for it.
//!
//! A blocked entity learns nothing of the block: what it sends is answered as for an
//! account with no available resource (messages and IQ requests `service-unavailable`,
//! presence and responses dropped; §3.3 with RFC 6121 §8.5.2). What the user sends to a
//! blocked entity gets `not-acceptable` with `<blocked/>` (§3.4). Three places see to it:
//! hooks on every stanza before any other module (so no carbon, offline copy or presence
//! update leaves), and the first outbound filter of every session of the user, which drops
//! whatever else still carries a blocked `from` (presence broadcasts, stored messages).
//!
//! Matching follows XEP-0016 §2.1: `user@domain/resource` only that resource, `user@domain`
//! every resource of it, `domain/resource` only that, `domain` everything at that domain.
//! The server itself and the user's own account are never blocked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::{DashMap, DashSet};
use minidom::Element;
use xmpp_parsers::blocking::{Block, Blocked, BlocklistRequest, BlocklistResult, Unblock};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::router::{
    Ctx, Dest, IqKind, IqRequest, IqResult, RouterBuilder, Scope, SessionEvent, bounce,
};
use crate::server::Server;
use crate::sessions::Session;
use crate::stanza::{Stanza, StanzaFault};

/// Before every other hook (presence 0, carbons 900, delivery 1000).
pub const PRIORITY: i32 = -100;
/// The first outbound filter (blocking → CSI → stream management → write).
pub const FILTER_PRIORITY: i32 = 0;

/// Blocklists of accounts with bound sessions, loaded at bind; others are read per stanza.
type Lists = Arc<Cache>;

#[derive(Default)]
struct Cache {
    map: DashMap<BareJid, Arc<Vec<Jid>>>,
    /// Accounts whose blocklist is not empty, read from the store once: a login of any other
    /// account costs no query.
    owners: tokio::sync::OnceCell<DashSet<BareJid>>,
    /// How many cached lists are not empty: with none, the outbound filter has nothing to
    /// do and returns at once (every stanza to every session passes it).
    nonempty: AtomicUsize,
}

impl Cache {
    async fn owners(&self, server: &Server) -> &DashSet<BareJid> {
        self.owners
            .get_or_init(|| async {
                let set = DashSet::new();
                match server.store.blocklist_owners().await {
                    Ok(owners) => {
                        for o in owners {
                            if let Ok(b) = o.parse() {
                                set.insert(b);
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "reading who blocks anyone failed"),
                }
                set
            })
            .await
    }

    fn get(&self, bare: &BareJid) -> Option<Arc<Vec<Jid>>> {
        self.map.get(bare).map(|l| l.clone())
    }

    fn contains_key(&self, bare: &BareJid) -> bool {
        self.map.contains_key(bare)
    }

    fn insert(&self, bare: BareJid, list: Arc<Vec<Jid>>) {
        let added = !list.is_empty();
        let old = self.map.insert(bare, list);
        self.count(added, old);
    }

    fn remove(&self, bare: &BareJid) {
        let old = self.map.remove(bare).map(|(_, l)| l);
        self.count(false, old);
    }

    fn count(&self, added: bool, old: Option<Arc<Vec<Jid>>>) {
        let removed = old.is_some_and(|l| !l.is_empty());
        match (added, removed) {
            (true, false) => {
                self.nonempty.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.nonempty.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The session retrieved the blocklist, so it gets pushes (§3.2).
#[derive(Debug, Default)]
struct Requested(bool);

static PUSH_ID: AtomicU64 = AtomicU64::new(0);

pub fn register(r: &mut RouterBuilder) {
    let lists: Lists = Arc::default();
    {
        let lists = lists.clone();
        r.on_event(move |server, event| {
            let lists = lists.clone();
            async move {
                match event {
                    SessionEvent::Bound(s) => {
                        let bare = s.jid.to_bare();
                        if !lists.contains_key(&bare) {
                            let list = match lists.owners(&server).await.contains(&bare) {
                                true => read(&server, &bare).await,
                                false => Arc::default(),
                            };
                            lists.insert(bare, list);
                        }
                    }
                    SessionEvent::Closed(s) => {
                        let bare = s.jid.to_bare();
                        if !server.sessions.has_resources(&bare) {
                            lists.remove(&bare);
                        }
                    }
                    SessionEvent::InitialPresence(_) => {}
                }
            }
        });
    }
    r.iq(Scope::Account, IqKind::Get, ns::BLOCKING, "blocklist", {
        let lists = lists.clone();
        move |ctx, req| get(ctx, req, lists.clone())
    });
    r.iq(Scope::Account, IqKind::Set, ns::BLOCKING, "block", {
        let lists = lists.clone();
        move |ctx, req| block(ctx, req, lists.clone())
    });
    r.iq(Scope::Account, IqKind::Set, ns::BLOCKING, "unblock", {
        let lists = lists.clone();
        move |ctx, req| unblock(ctx, req, lists.clone())
    });
    r.message_hook(PRIORITY, {
        let lists = lists.clone();
        move |ctx, dest, m| on_message(ctx, dest, m, lists.clone())
    });
    r.presence_hook(PRIORITY, {
        let lists = lists.clone();
        move |ctx, dest, p| on_presence(ctx, dest, p, lists.clone())
    });
    r.iq_hook(PRIORITY, {
        let lists = lists.clone();
        move |ctx, dest, iq| on_iq(ctx, dest, iq, lists.clone())
    });
    r.outbound_filter(FILTER_PRIORITY, move |server, session, el| {
        filter(server, session, el, &lists).into()
    });
    r.disco_feature(Scope::Server, ns::BLOCKING);
}

async fn get(ctx: Ctx, req: IqRequest<BlocklistRequest>, lists: Lists) -> IqResult {
    let owner = ctx.own_account(&req.to)?;
    ctx.session.ext.with(|r: &mut Requested| r.0 = true);
    let items = list(&ctx.server, &lists, &owner).await.to_vec();
    Ok(Some(BlocklistResult { items }.into()))
}

async fn block(ctx: Ctx, req: IqRequest<Block>, lists: Lists) -> IqResult {
    let owner = ctx.own_account(&req.to)?;
    if req.payload.items.is_empty() {
        return Err(StanzaFault::bad_request("Block at least one JID"));
    }
    let items = deduplicated(&req.payload.items);
    ctx.server
        .store
        .block(owner.as_str(), &strings(&items))
        .await
        .map_err(internal)?;
    // §3.3.1: the blocked entities see the user go offline (sent before the list takes
    // effect, or the outbound filter would hold it back).
    for contact in &items {
        for res in super::presence::available(&ctx.server, &owner) {
            let gone = Presence::new(PresenceType::Unavailable)
                .with_from(Jid::from(res.jid.clone()))
                .with_to(contact.clone());
            send_to(&ctx.server, contact, gone.into());
        }
    }
    refresh(&ctx.server, &lists, &owner).await;
    push(&ctx.server, &owner, Block { items }.into());
    Ok(None)
}

async fn unblock(ctx: Ctx, req: IqRequest<Unblock>, lists: Lists) -> IqResult {
    let owner = ctx.own_account(&req.to)?;
    let items = deduplicated(&req.payload.items);
    // What stops being blocked: the items named, or with none, the whole list.
    let lifted = if items.is_empty() {
        list(&ctx.server, &lists, &owner).await.to_vec()
    } else {
        items.clone()
    };
    ctx.server
        .store
        .unblock(owner.as_str(), &strings(&items))
        .await
        .map_err(internal)?;
    refresh(&ctx.server, &lists, &owner).await;
    push(&ctx.server, &owner, Unblock { items }.into());
    // §3.4: presence flows again, both ways, where subscriptions allow it.
    let still = list(&ctx.server, &lists, &owner).await;
    super::presence::resend(&ctx.server, &owner, |contact| {
        let contact = Jid::from(contact.clone());
        lifted.iter().any(|i| matches(i, &contact)) && !still.iter().any(|i| matches(i, &contact))
    })
    .await;
    Ok(None)
}

async fn on_message(ctx: Ctx, dest: Dest, m: Message, lists: Lists) -> Option<Message> {
    match verdict(&ctx, &dest, &lists).await {
        Verdict::Pass => Some(m),
        Verdict::Outgoing if m.type_ != MessageType::Error => {
            bounce(&ctx, &Stanza::Message(m), &blocked_by_user());
            None
        }
        Verdict::Incoming if !matches!(m.type_, MessageType::Error | MessageType::Groupchat) => {
            bounce(
                &ctx,
                &Stanza::Message(m),
                &StanzaFault::service_unavailable(),
            );
            None
        }
        Verdict::Outgoing | Verdict::Incoming => None,
    }
}

async fn on_presence(ctx: Ctx, dest: Dest, p: Presence, lists: Lists) -> Option<Presence> {
    // Presence to or from a blocked entity goes nowhere (subscriptions included).
    match verdict(&ctx, &dest, &lists).await {
        Verdict::Pass => Some(p),
        Verdict::Outgoing | Verdict::Incoming => None,
    }
}

async fn on_iq(ctx: Ctx, dest: Dest, iq: Iq, lists: Lists) -> Option<Iq> {
    let request = matches!(iq, Iq::Get { .. } | Iq::Set { .. });
    match verdict(&ctx, &dest, &lists).await {
        Verdict::Pass => Some(iq),
        Verdict::Outgoing if request => {
            bounce(&ctx, &Stanza::Iq(iq), &blocked_by_user());
            None
        }
        Verdict::Incoming if request => {
            bounce(&ctx, &Stanza::Iq(iq), &StanzaFault::service_unavailable());
            None
        }
        Verdict::Outgoing | Verdict::Incoming => None,
    }
}

/// Whether a stanza from the context's sender to `dest` may pass.
enum Verdict {
    Pass,
    /// The sender blocks the destination.
    Outgoing,
    /// The destination's account blocks the sender.
    Incoming,
}

async fn verdict(ctx: &Ctx, dest: &Dest, lists: &Lists) -> Verdict {
    // Nobody blocks anyone: nothing to look up (this runs for every stanza).
    if lists.owners(&ctx.server).await.is_empty() {
        return Verdict::Pass;
    }
    let to: Jid = match dest {
        Dest::Account(b) => b.clone().into(),
        Dest::Full(f) => f.clone().into(),
        Dest::Remote(j) | Dest::Service { to: j, .. } => j.clone(),
        Dest::Server(_) | Dest::Unaddressed => return Verdict::Pass,
    };
    let sender = ctx.from.to_bare();
    if to.to_bare() == sender {
        return Verdict::Pass;
    }
    if list(&ctx.server, lists, &sender)
        .await
        .iter()
        .any(|item| matches(item, &to))
    {
        return Verdict::Outgoing;
    }
    let recipient = match dest {
        Dest::Account(b) => Some(b.clone()),
        Dest::Full(f) => Some(f.to_bare()),
        _ => None,
    };
    if let Some(recipient) = recipient {
        let from = Jid::from(ctx.from.clone());
        if list(&ctx.server, lists, &recipient)
            .await
            .iter()
            .any(|item| matches(item, &from))
        {
            return Verdict::Incoming;
        }
    }
    Verdict::Pass
}

/// The first outbound filter: nothing from an entity the user blocks reaches the user's
/// clients, and nothing from a local account that blocks the user (its presence broadcasts,
/// which no routing hook sees per recipient).
fn filter(server: &Server, session: &Arc<Session>, el: Element, lists: &Lists) -> Option<Element> {
    if lists.nonempty.load(Ordering::Relaxed) == 0 {
        return Some(el);
    }
    let Some(from) = el.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
        return Some(el);
    };
    let owner = session.jid.to_bare();
    let from_bare = from.to_bare();
    if from_bare == owner
        || (from.node().is_none() && server.is_local_domain(from.domain().as_str()))
    {
        return Some(el);
    }
    // The error this module answers the user's own stanzas with carries the blocked
    // contact's address (§3.4 example); nothing else carries <blocked/>.
    let our_error = el.attr("type") == Some("error")
        && el
            .children()
            .any(|e| e.name() == "error" && e.has_child("blocked", ns::BLOCKING_ERRORS));
    if our_error {
        return Some(el);
    }
    let mine = lists.get(&owner);
    if mine.is_some_and(|l| l.iter().any(|item| matches(item, &from))) {
        return None;
    }
    // Available presence of someone who blocks the user: broadcasts reach subscribers
    // without a routing hook per recipient. (Messages and IQs were judged by the hooks, and
    // the errors they answer with must get through; so must the unavailable presence sent
    // when the block starts.)
    let broadcast = el.name() == "presence" && el.attr("type").is_none();
    if broadcast {
        let theirs = lists.get(&from_bare);
        let me = Jid::from(session.jid.clone());
        if theirs.is_some_and(|l| l.iter().any(|item| matches(item, &me))) {
            return None;
        }
    }
    Some(el)
}

/// XEP-0016 §2.1 JID matching of a blocklist item against an address.
pub fn matches(item: &Jid, other: &Jid) -> bool {
    if item.domain() != other.domain() {
        return false;
    }
    match (item.node(), item.resource()) {
        (Some(_), Some(_)) => item == other,
        (Some(_), None) => item.node() == other.node(),
        (None, Some(r)) => other.node().is_none() && other.resource() == Some(r),
        (None, None) => true,
    }
}

/// A blocklist: the cached one of an account with sessions, else (if it blocks anything at
/// all) read from the store.
async fn list(server: &Server, lists: &Lists, bare: &BareJid) -> Arc<Vec<Jid>> {
    if let Some(l) = lists.get(bare) {
        return l;
    }
    if !lists.owners(server).await.contains(bare) {
        return Arc::default();
    }
    read(server, bare).await
}

async fn read(server: &Server, bare: &BareJid) -> Arc<Vec<Jid>> {
    match server.store.blocklist(bare.as_str()).await {
        Ok(items) => Arc::new(items.iter().filter_map(|j| j.parse().ok()).collect()),
        Err(e) => {
            // Nothing is known blocked: stanzas pass, as they did before the block.
            tracing::error!(error = %e, account = %bare, "blocklist read failed");
            Arc::new(Vec::new())
        }
    }
}

/// After a change: the cache holds what the store holds (only for accounts with sessions).
async fn refresh(server: &Server, lists: &Lists, owner: &BareJid) {
    let fresh = read(server, owner).await;
    let owners = lists.owners(server).await;
    if fresh.is_empty() {
        owners.remove(owner);
    } else {
        owners.insert(owner.clone());
    }
    if server.sessions.has_resources(owner) {
        lists.insert(owner.clone(), fresh);
    }
}

/// §3.2/§3.4: the change, to every resource that retrieved the blocklist.
fn push(server: &Server, owner: &BareJid, payload: Element) {
    for s in server.sessions.resources(owner) {
        if !s.ext.with(|r: &mut Requested| r.0) {
            continue;
        }
        let iq = Iq::Set {
            from: None,
            to: Some(s.jid.clone().into()),
            id: format!("block-push-{}", PUSH_ID.fetch_add(1, Ordering::Relaxed)),
            payload: payload.clone(),
        };
        s.send(iq.into());
    }
}

fn send_to(server: &Server, to: &Jid, el: Element) {
    match to.clone().try_into_full() {
        Ok(full) => {
            server.send_to_full(&full, el);
        }
        Err(bare) => {
            for s in super::presence::available(server, &bare) {
                s.send(el.clone());
            }
        }
    }
}

/// Each item once, in the order given (the JID type has normalised them).
fn deduplicated(items: &[Jid]) -> Vec<Jid> {
    let mut out: Vec<Jid> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

fn strings(items: &[Jid]) -> Vec<String> {
    items.iter().map(Jid::to_string).collect()
}

/// §3.4: `not-acceptable` with the application condition `<blocked/>`.
fn blocked_by_user() -> StanzaFault {
    StanzaFault::new(ErrorType::Cancel, DefinedCondition::NotAcceptable).with_app(Blocked.into())
}

fn internal(e: postern_store::StoreError) -> StanzaFault {
    tracing::error!(error = %e, "blocklist storage failed");
    StanzaFault::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().expect("jid")
    }

    #[test]
    fn items_match_as_xep_0016_says() {
        let cases = [
            ("bob@x/phone", "bob@x/phone", true),
            ("bob@x/phone", "bob@x/desk", false),
            ("bob@x/phone", "bob@x", false),
            ("bob@x", "bob@x/desk", true),
            ("bob@x", "bob@x", true),
            ("bob@x", "carol@x", false),
            ("x/res", "x/res", true),
            ("x/res", "bob@x/res", false),
            ("x", "bob@x/desk", true),
            ("x", "x", true),
            ("x", "bob@y", false),
        ];
        for (item, other, want) in cases {
            assert_eq!(matches(&jid(item), &jid(other)), want, "{item} vs {other}");
        }
    }
}
