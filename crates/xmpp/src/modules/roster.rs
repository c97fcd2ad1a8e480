//! RFC 6121 §2: the roster, persisted, with pushes to interested resources and XEP-0237
//! versioning (an up-to-date client gets an empty result).

use std::sync::atomic::{AtomicU64, Ordering};

use minidom::Element;
use postern_store::roster::{RosterItem, Subscription};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;
use xmpp_parsers::roster::{Ask, Group, Item, Roster, Subscription as XSub};

use crate::router::{Ctx, IqKind, IqRequest, IqResult, RouterBuilder, Scope};
use crate::server::Server;
use crate::stanza::StanzaFault;

/// The session requested the roster, so it gets roster pushes (RFC 6121 §2.1.6).
#[derive(Debug, Default)]
struct Interested(bool);

pub fn register(r: &mut RouterBuilder) {
    r.iq(Scope::Account, IqKind::Get, ns::ROSTER, "query", get);
    r.iq(Scope::Account, IqKind::Set, ns::ROSTER, "query", set);
    r.stream_feature(
        crate::features::Stage::Authenticated,
        Element::bare("ver", "urn:xmpp:features:rosterver"),
    );
}

async fn get(ctx: Ctx, req: IqRequest<Roster>) -> IqResult {
    let owner = ctx.own_account(&req.to)?;
    ctx.session.ext.with(|i: &mut Interested| i.0 = true);
    let (ver, items) = ctx
        .server
        .store
        .roster_get(owner.as_str())
        .await
        .map_err(internal)?;
    let ver = ver.to_string();
    if req.payload.ver.as_deref() == Some(ver.as_str()) {
        return Ok(None);
    }
    let items = items.iter().filter_map(to_item).collect();
    Ok(Some(
        Roster {
            ver: Some(ver),
            items,
        }
        .into(),
    ))
}

async fn set(ctx: Ctx, req: IqRequest<Roster>) -> IqResult {
    let owner = ctx.own_account(&req.to)?;
    let [item] = req.payload.items.as_slice() else {
        return Err(StanzaFault::bad_request(
            "A roster set carries exactly one item",
        ));
    };
    let contact = item.jid.to_string().to_lowercase();
    let store = &ctx.server.store;
    if item.subscription == XSub::Remove {
        let Some(existing) = store
            .roster_item(owner.as_str(), &contact)
            .await
            .map_err(internal)?
        else {
            return Err(StanzaFault::item_not_found());
        };
        // §2.5.2: cancel both directions before the item goes.
        let contact_jid = item.jid.clone();
        if matches!(existing.subscription, Subscription::To | Subscription::Both) || existing.ask {
            super::presence::unsubscribe(&ctx.server, &owner, &contact_jid).await;
        }
        if matches!(
            existing.subscription,
            Subscription::From | Subscription::Both
        ) {
            super::presence::unsubscribed(&ctx.server, &owner, &contact_jid).await;
        }
        let _ = store.pending_in_remove(owner.as_str(), &contact).await;
        if let Some(ver) = store
            .roster_remove(owner.as_str(), &contact)
            .await
            .map_err(internal)?
        {
            push_removal(&ctx.server, &owner, &item.jid, ver);
        }
        return Ok(None);
    }
    let mut groups: Vec<String> = item.groups.iter().map(|g| g.0.clone()).collect();
    if groups.iter().any(|g| g.is_empty()) {
        return Err(StanzaFault::bad_request("Empty group name"));
    }
    groups.sort();
    groups.dedup();
    let existing = store
        .roster_item(owner.as_str(), &contact)
        .await
        .map_err(internal)?;
    let updated = RosterItem {
        contact,
        name: item.name.clone().filter(|n| !n.is_empty()),
        groups,
        ..existing.unwrap_or_else(|| RosterItem {
            contact: String::new(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            groups: vec![],
        })
    };
    save(&ctx.server, &owner, &updated)
        .await
        .map_err(internal)?;
    Ok(None)
}

/// Stores an item and pushes it to the owner's interested resources.
pub async fn save(
    server: &Server,
    owner: &BareJid,
    item: &RosterItem,
) -> Result<(), postern_store::StoreError> {
    let ver = server.store.roster_put(owner.as_str(), item).await?;
    if let Some(x) = to_item(item) {
        push(server, owner, x, ver);
    }
    Ok(())
}

fn push_removal(server: &Server, owner: &BareJid, contact: &BareJid, ver: i64) {
    let item = Item {
        jid: contact.clone(),
        name: None,
        subscription: XSub::Remove,
        ask: Ask::None,
        groups: vec![],
        approved: None,
    };
    push(server, owner, item, ver);
}

static PUSH_ID: AtomicU64 = AtomicU64::new(0);

/// §2.1.6 roster push to every resource that requested the roster.
fn push(server: &Server, owner: &BareJid, item: Item, ver: i64) {
    let roster = Roster {
        ver: Some(ver.to_string()),
        items: vec![item],
    };
    for s in server.sessions.resources(owner) {
        if !s.ext.with(|i: &mut Interested| i.0) {
            continue;
        }
        let id = format!("push-{}", PUSH_ID.fetch_add(1, Ordering::Relaxed));
        let iq = Iq::Set {
            from: None,
            to: Some(s.jid.clone().into()),
            id,
            payload: roster.clone().into(),
        };
        s.send(iq.into());
    }
}

fn to_item(i: &RosterItem) -> Option<Item> {
    Some(Item {
        jid: i.contact.parse().ok()?,
        name: i.name.clone(),
        subscription: match i.subscription {
            Subscription::None => XSub::None,
            Subscription::To => XSub::To,
            Subscription::From => XSub::From,
            Subscription::Both => XSub::Both,
        },
        ask: if i.ask { Ask::Subscribe } else { Ask::None },
        groups: i.groups.iter().map(|g| Group(g.clone())).collect(),
        approved: None,
    })
}

fn internal(e: postern_store::StoreError) -> StanzaFault {
    tracing::error!(error = %e, "roster storage failed");
    StanzaFault::internal()
}
