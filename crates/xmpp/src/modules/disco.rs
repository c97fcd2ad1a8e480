//! XEP-0030: Service Discovery. Features come only from what modules registered.

use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{
    DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity, Item,
};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;

use crate::router::{Ctx, IqKind, IqRequest, IqResult, RouterBuilder, Scope};
use crate::stanza::StanzaFault;

pub fn register(r: &mut RouterBuilder) {
    for scope in [Scope::Server, Scope::Account] {
        r.disco_feature(scope, ns::DISCO_INFO);
        r.disco_feature(scope, ns::DISCO_ITEMS);
    }
    r.iq(
        Scope::Server,
        IqKind::Get,
        ns::DISCO_INFO,
        "query",
        server_info,
    );
    r.iq(
        Scope::Account,
        IqKind::Get,
        ns::DISCO_INFO,
        "query",
        account_info,
    );
    r.iq(Scope::Server, IqKind::Get, ns::DISCO_ITEMS, "query", items);
    r.iq(
        Scope::Account,
        IqKind::Get,
        ns::DISCO_ITEMS,
        "query",
        account_items,
    );
}

/// disco#info and disco#items of the sub-service `label` (`upload.`, `proxy.`): its
/// `identity`, the features registered for its scope, the XEP-0128 `extensions`; no items.
/// A node, or an address with a local part at the service, is `item-not-found`.
pub fn service(
    r: &mut RouterBuilder,
    label: &'static str,
    identity: Identity,
    extensions: Vec<DataForm>,
) {
    let scope = Scope::Service(label);
    r.disco_feature(scope, ns::DISCO_INFO);
    r.disco_feature(scope, ns::DISCO_ITEMS);
    r.iq(scope, IqKind::Get, ns::DISCO_INFO, "query", {
        move |ctx: Ctx, req: IqRequest<DiscoInfoQuery>| {
            let (identity, extensions) = (identity.clone(), extensions.clone());
            async move {
                if req.payload.node.is_some() || req.to.node().is_some() {
                    return Err(StanzaFault::item_not_found());
                }
                let mut result = info(&ctx, scope, identity);
                result.extensions = extensions;
                Ok(Some(result.into()))
            }
        }
    });
    r.iq(
        scope,
        IqKind::Get,
        ns::DISCO_ITEMS,
        "query",
        |_, req: IqRequest<DiscoItemsQuery>| async move {
            if req.payload.node.is_some() || req.to.node().is_some() {
                return Err(StanzaFault::item_not_found());
            }
            Ok(Some(
                DiscoItemsResult {
                    node: None,
                    items: vec![],
                    rsm: None,
                }
                .into(),
            ))
        },
    );
}

async fn server_info(ctx: Ctx, req: IqRequest<DiscoInfoQuery>) -> IqResult {
    if req.payload.node.is_some() {
        return Err(StanzaFault::item_not_found());
    }
    let identity = Identity::new("server", "im", "en", "Postern");
    Ok(Some(info(&ctx, Scope::Server, identity).into()))
}

async fn account_info(ctx: Ctx, req: IqRequest<DiscoInfoQuery>) -> IqResult {
    if req.payload.node.is_some() {
        return Err(StanzaFault::item_not_found());
    }
    exists(&ctx, &req.to.to_bare()).await?;
    let identity = Identity::new_anonymous::<_, _, String, String>("account", "registered");
    Ok(Some(info(&ctx, Scope::Account, identity).into()))
}

/// A served domain's items: its sub-services ([`crate::hosts`]).
async fn items(ctx: Ctx, req: IqRequest<DiscoItemsQuery>) -> IqResult {
    if req.payload.node.is_some() {
        return Err(StanzaFault::item_not_found());
    }
    let items = ctx
        .server
        .hosts
        .services_of(req.to.domain().as_str())
        .filter_map(|(host, s)| {
            Some(Item {
                jid: host.parse().ok()?,
                node: None,
                name: Some(s.name.to_owned()),
            })
        })
        .collect();
    Ok(Some(
        DiscoItemsResult {
            node: None,
            items,
            rsm: None,
        }
        .into(),
    ))
}

/// An account has no items here (yet: PEP nodes will be).
async fn account_items(ctx: Ctx, req: IqRequest<DiscoItemsQuery>) -> IqResult {
    exists(&ctx, &req.to.to_bare()).await?;
    if req.payload.node.is_some() {
        return Err(StanzaFault::item_not_found());
    }
    Ok(Some(
        DiscoItemsResult {
            node: None,
            items: vec![],
            rsm: None,
        }
        .into(),
    ))
}

async fn exists(ctx: &Ctx, bare: &BareJid) -> Result<(), StanzaFault> {
    if ctx.server.account_exists(bare).await {
        Ok(())
    } else {
        Err(StanzaFault::service_unavailable())
    }
}

fn info(ctx: &Ctx, scope: Scope, identity: Identity) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![identity],
        features: ctx
            .server
            .router
            .offers()
            .disco(scope)
            .map(str::to_owned)
            .collect(),
        extensions: vec![],
    }
}
