//! XEP-0313 §6 archiving preferences: per account, a default (`always`, `never`, `roster`)
//! and lists of JIDs always or never archived. They decide what the account's own archive
//! shows; the admin log keeps every message while `[xmpp.archive] admin_log` is on.
//! Read once per account and kept in memory; a `set` replaces both.

use std::sync::Arc;

use dashmap::DashMap;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::mam_prefs::{DefaultPrefs, Prefs};

use crate::router::{Ctx, IqRequest, IqResult};
use crate::server::Server;
use crate::stanza::StanzaFault;

/// Every account's preferences that were needed so far.
#[derive(Default)]
pub struct PrefsCache {
    known: DashMap<BareJid, Arc<Prefs>>,
}

impl PrefsCache {
    /// Whether `owner`'s archive keeps messages exchanged with `peer`.
    pub async fn keeps(&self, server: &Server, owner: &BareJid, peer: &Jid) -> bool {
        let prefs = self.get(server, owner).await;
        let listed = |list: &[Jid]| {
            list.iter().any(|j| {
                if j.resource().is_none() {
                    j.to_bare() == peer.to_bare()
                } else {
                    j == peer
                }
            })
        };
        if listed(&prefs.never) {
            return false;
        }
        if listed(&prefs.always) {
            return true;
        }
        match prefs.default_ {
            DefaultPrefs::Always => true,
            DefaultPrefs::Never => false,
            DefaultPrefs::Roster => {
                match server
                    .store
                    .roster_item(owner.as_str(), peer.to_bare().as_str())
                    .await
                {
                    Ok(item) => item.is_some(),
                    Err(e) => {
                        tracing::error!(error = %e, "roster lookup for archive preferences failed");
                        true
                    }
                }
            }
        }
    }

    async fn get(&self, server: &Server, owner: &BareJid) -> Arc<Prefs> {
        if let Some(p) = self.known.get(owner) {
            return p.clone();
        }
        let prefs = match server.store.archive_prefs(owner.as_str()).await {
            Ok(Some(row)) => Arc::new(from_row(&row, server.config.archive.default.prefs())),
            Ok(None) => Arc::new(Prefs {
                default_: server.config.archive.default.prefs(),
                always: Vec::new(),
                never: Vec::new(),
            }),
            Err(e) => {
                // Not remembered: the next message tries the database again.
                tracing::error!(error = %e, "archive preferences lookup failed");
                return Arc::new(Prefs {
                    default_: server.config.archive.default.prefs(),
                    always: Vec::new(),
                    never: Vec::new(),
                });
            }
        };
        self.known.insert(owner.clone(), prefs.clone());
        prefs
    }

    /// IQ get `<prefs/>` (with no attributes, so not a [`Prefs`]).
    pub async fn query(&self, ctx: &Ctx, req: IqRequest<minidom::Element>) -> IqResult {
        let owner = ctx.own_account(&req.to)?;
        Ok(Some((*self.get(&ctx.server, &owner).await).clone().into()))
    }

    /// IQ set `<prefs/>`: stored, then answered with what is now in force.
    pub async fn set(&self, ctx: &Ctx, req: IqRequest<Prefs>) -> IqResult {
        let owner = ctx.own_account(&req.to)?;
        let mut prefs = req.payload;
        const MAX_LISTED: usize = 1000;
        if prefs.always.len() + prefs.never.len() > MAX_LISTED {
            return Err(StanzaFault::new(
                xmpp_parsers::stanza_error::ErrorType::Modify,
                xmpp_parsers::stanza_error::DefinedCondition::NotAcceptable,
            )
            .with_text(format!("At most {MAX_LISTED} JIDs in the lists")));
        }
        // A JID in both lists is never archived (the safer reading).
        prefs.always.retain(|j| !prefs.never.contains(j));
        let row = postern_store::ArchivePrefs {
            default_mode: mode_name(&prefs.default_).to_owned(),
            always: prefs.always.iter().map(Jid::to_string).collect(),
            never: prefs.never.iter().map(Jid::to_string).collect(),
        };
        ctx.server
            .store
            .set_archive_prefs(owner.as_str(), &row)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "storing archive preferences failed");
                StanzaFault::internal()
            })?;
        self.known.insert(owner, Arc::new(prefs.clone()));
        Ok(Some(prefs.into()))
    }
}

fn from_row(row: &postern_store::ArchivePrefs, fallback: DefaultPrefs) -> Prefs {
    let jids = |list: &[String]| list.iter().filter_map(|j| j.parse().ok()).collect();
    Prefs {
        default_: parse_mode(&row.default_mode).unwrap_or(fallback),
        always: jids(&row.always),
        never: jids(&row.never),
    }
}

fn parse_mode(s: &str) -> Option<DefaultPrefs> {
    match s {
        "always" => Some(DefaultPrefs::Always),
        "never" => Some(DefaultPrefs::Never),
        "roster" => Some(DefaultPrefs::Roster),
        _ => None,
    }
}

fn mode_name(m: &DefaultPrefs) -> &'static str {
    match m {
        DefaultPrefs::Always => "always",
        DefaultPrefs::Never => "never",
        DefaultPrefs::Roster => "roster",
    }
}
