//! The message archive: XEP-0313 Message Archive Management for users and the source of the
//! admin chat log, one store for both (`postern_store::archive`).
//!
//! - [`mod@self`]: which messages are archived, and the message hook that does it: after
//!   blocking, before carbons (so that carbon copies carry the stanza-id) and delivery.
//! - [`writer`]: one batched writer; what the session acknowledges (XEP-0198) waits for it.
//! - [`stanza_id`]: XEP-0359 ids (the archive id), forged ones removed.
//! - [`prefs`]: XEP-0313 preferences, which decide what a user's own archive shows.
//! - [`mam`]: the queries (form, RSM paging, metadata, XEP-0431 full text); an admin account
//!   may read another account's archive, and every such read goes into the audit trail.
//! - [`retention`]: how long messages are kept, and the expiry task.
//! - [`notice`]: the optional notice that messages are logged, once per new device.
//!
//! Path of a message: the hook decides whether it is worth keeping (a `chat`/`normal` body, an
//! end-to-end encrypted payload, a reaction or retraction, or XEP-0334 `<store/>`; never with
//! `<no-store/>`/`<no-permanent-store/>`) and whose archives show it (both parties' prefs),
//! adds a `<stanza-id/>` per archive, queues it for the writer (one row, one party row per
//! side) and passes it on at once. The session keeps the write's receipt: before it tells
//! its client what was handled (XEP-0198 `<a/>`, `<resumed/>`, the last `<a/>` at close) it
//! waits for the commit, and if a write failed it ends the stream with
//! `internal-server-error` instead of acknowledging it (the client sends it again).
//! Group chat messages (XEP-0045) will be written by the MUC module through the same
//! [`writer::Writer`], with the room as a party.

pub mod mam;
pub mod notice;
pub mod prefs;
pub mod retention;
pub mod stanza_id;
pub mod writer;

use std::sync::{Arc, OnceLock};

use chrono::Utc;
use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::mam::{MetadataQuery, Query};
use xmpp_parsers::mam_prefs::{DefaultPrefs, Prefs};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;

use postern_store::{NewArchived, Party};

use tokio::sync::oneshot;

use crate::router::{BoxFuture, Ctx, Dest, IqKind, RouterBuilder, Scope};
use crate::sessions::Session;

/// After blocking ([`super::blocking::PRIORITY`]), before carbons ([`super::carbons::PRIORITY`]).
pub const PRIORITY: i32 = 800;

/// The outbound filter that shows each session only its own archive's stanza-id: before
/// blocking's ([`super::blocking::FILTER_PRIORITY`]), it does not depend on the others.
pub const STANZA_ID_FILTER: i32 = -10;

/// The `[xmpp.archive]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Archive messages at all (and offer MAM).
    pub enabled: bool,
    /// Keep every archived message for the admin log, also where the users' preferences keep
    /// it out of their own archives. Off: a message neither side keeps is not stored.
    pub admin_log: bool,
    /// The preference of users who set none: `always`, `never` or `roster`.
    pub default: Mode,
    /// Messages per MAM page when the client sets no `max`.
    pub default_page: usize,
    /// The most messages per MAM page, whatever the client asks for.
    pub max_page: usize,
    /// The most messages written in one transaction.
    pub max_batch: usize,
    /// How long messages are kept: "forever" or a duration ("365d").
    pub retention: retention::Retention,
    /// Per-domain overrides of `retention`.
    pub retention_by_domain: std::collections::BTreeMap<String, retention::Retention>,
    /// How often the expiry task looks for messages past their retention.
    #[serde(deserialize_with = "crate::config::duration")]
    pub expire_every: std::time::Duration,
    /// Sent once to every new device of an account (a resource, or the SASL2 device id, not
    /// seen before) as a headline from the server: e.g. that messages are logged, where a law
    /// requires users to be told. None: no notice.
    pub notice: Option<String>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            admin_log: true,
            default: Mode::Always,
            default_page: 50,
            max_page: 250,
            max_batch: 256,
            retention: retention::Retention::Forever,
            retention_by_domain: Default::default(),
            expire_every: std::time::Duration::from_secs(3600),
            notice: None,
        }
    }
}

impl ArchiveConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_page == 0 || self.default_page == 0 {
            out.push("[xmpp.archive] default_page and max_page must be at least 1".to_owned());
        }
        if self.max_batch == 0 {
            out.push("[xmpp.archive] max_batch must be at least 1".to_owned());
        }
        if self.expire_every.is_zero() {
            out.push("[xmpp.archive] expire_every must be longer than 0s".to_owned());
        }
        if self.notice.as_deref().is_some_and(|n| n.trim().is_empty()) {
            out.push("[xmpp.archive] notice is empty: leave it out for no notice".to_owned());
        }
        out
    }
}

/// A default archiving preference (XEP-0313 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Always,
    Never,
    Roster,
}

impl Mode {
    pub fn prefs(self) -> DefaultPrefs {
        match self {
            Mode::Always => DefaultPrefs::Always,
            Mode::Never => DefaultPrefs::Never,
            Mode::Roster => DefaultPrefs::Roster,
        }
    }
}

/// XEP-0334 hints.
const HINTS: &str = "urn:xmpp:hints";

/// Payloads that make a message worth archiving without a body: end-to-end encryption
/// (OMEMO 2 and legacy, OpenPGP for XMPP), XEP-0444 reactions, XEP-0424 retractions.
const KEPT_PAYLOADS: [&str; 5] = [
    "urn:xmpp:omemo:2",
    "eu.siacs.conversations.axolotl",
    "urn:xmpp:openpgp:0",
    "urn:xmpp:reactions:0",
    "urn:xmpp:message-retract:1",
];

/// The module's state, shared by its hook and handlers.
#[derive(Default)]
struct Archive {
    /// Started with the first message (the store comes with the server).
    writer: OnceLock<writer::Writer>,
    prefs: prefs::PrefsCache,
}

impl Archive {
    /// A query sees every message routed before it (queued writes committed first).
    async fn sync(&self) {
        if let Some(w) = self.writer.get() {
            w.sync().await;
        }
    }
}

pub fn register(r: &mut RouterBuilder, config: &ArchiveConfig) {
    if !config.enabled {
        return;
    }
    let archive: Arc<Archive> = Arc::default();
    r.task(|server, shutdown| Box::pin(retention::run(server, shutdown)));
    r.barrier(|_, session| committed(session));
    // Delivered messages still queued for the writer are written before the process ends.
    r.on_shutdown({
        let archive = archive.clone();
        move |server| {
            let archive = archive.clone();
            Box::pin(async move {
                archive.sync().await;
                // What is left in the log is moved at the next start.
                if let Err(e) = server.store.archive_flush_all().await {
                    tracing::warn!(error = %e, "archive flush at shutdown failed");
                }
            })
        }
    });
    r.outbound_filter(STANZA_ID_FILTER, |server, session, el| {
        crate::router::Filtered::Pass(stanza_id::only_own(server, session, el))
    });
    if config.notice.is_some() {
        notice::register(r);
    }
    r.message_hook(PRIORITY, {
        let archive = archive.clone();
        move |ctx, dest, m| {
            let archive = archive.clone();
            async move { keep(&archive, ctx, dest, m).await }
        }
    });
    r.iq(Scope::Account, IqKind::Set, ns::MAM, "query", {
        let archive = archive.clone();
        move |ctx, req: crate::router::IqRequest<Query>| {
            let archive = archive.clone();
            async move {
                archive.sync().await;
                mam::query(ctx, req).await
            }
        }
    });
    r.iq(
        Scope::Account,
        IqKind::Get,
        ns::MAM,
        "query",
        |ctx, req: crate::router::IqRequest<Query>| mam::form(ctx, req),
    );
    r.iq(Scope::Account, IqKind::Get, ns::MAM, "metadata", {
        let archive = archive.clone();
        move |ctx, req: crate::router::IqRequest<MetadataQuery>| {
            let archive = archive.clone();
            async move {
                archive.sync().await;
                mam::metadata(ctx, req).await
            }
        }
    });
    r.iq(Scope::Account, IqKind::Get, ns::MAM, "prefs", {
        let archive = archive.clone();
        move |ctx, req: crate::router::IqRequest<Element>| {
            let archive = archive.clone();
            async move { archive.prefs.query(&ctx, req).await }
        }
    });
    r.iq(Scope::Account, IqKind::Set, ns::MAM, "prefs", {
        let archive = archive.clone();
        move |ctx, req: crate::router::IqRequest<Prefs>| {
            let archive = archive.clone();
            async move { archive.prefs.set(&ctx, req).await }
        }
    });
    for feature in [
        ns::MAM,
        "urn:xmpp:mam:2#extended",
        ns::SID,
        "urn:xmpp:fulltext:0",
    ] {
        r.disco_feature(Scope::Account, feature);
    }
}

/// Whether `m` belongs in the archive (XEP-0313 §7, XEP-0334).
fn worth_archiving(m: &Message) -> bool {
    if !matches!(m.type_, MessageType::Chat | MessageType::Normal) {
        return false;
    }
    let hint = |name| m.payloads.iter().any(|p| p.is(name, HINTS));
    if hint("no-store") || hint("no-permanent-store") {
        return false;
    }
    !m.bodies.is_empty()
        || hint("store")
        || m.payloads
            .iter()
            .any(|p| KEPT_PAYLOADS.contains(&p.ns().as_str()))
}

/// The message hook: queues `m` for the archive if it is worth it, and passes it on.
async fn keep(archive: &Archive, ctx: Ctx, dest: Dest, mut m: Message) -> Option<Message> {
    let server = &ctx.server;
    stanza_id::strip_forged(server, &mut m);
    if !worth_archiving(&m) {
        return Some(m);
    }
    let sender = ctx.from.to_bare();
    let (recipient, recipient_resource) = match &dest {
        Dest::Unaddressed => (sender.clone(), String::new()),
        Dest::Account(bare) => (bare.clone(), String::new()),
        Dest::Full(full) => (full.to_bare(), full.resource().to_string()),
        // Nothing here takes them: delivery bounces them.
        Dest::Server(_) | Dest::Service { .. } | Dest::Remote(_) => return Some(m),
    };
    let to_self = recipient == sender;
    if !to_self && !server.account_exists(&recipient).await {
        return Some(m); // delivery bounces it
    }
    let peer = m.to.clone().unwrap_or_else(|| Jid::from(recipient.clone()));
    let sender_keeps = archive.prefs.keeps(server, &sender, &peer).await;
    let recipient_keeps = if to_self {
        sender_keeps
    } else {
        let from = Jid::from(ctx.from.clone());
        archive.prefs.keeps(server, &recipient, &from).await
    };
    let config = &server.config.archive;
    if !sender_keeps && !recipient_keeps && !config.admin_log {
        return Some(m);
    }
    let stamp_us = Utc::now().timestamp_micros();
    let uid = stanza_id::new_id(stamp_us);
    // Stored without the ids: a MAM result carries its id itself. Written straight from
    // the message (no clone into an `Element` first).
    let xml = match xso::to_vec(&m).map(String::from_utf8) {
        Ok(Ok(xml)) => xml,
        _ => String::from(&Element::from(m.clone())),
    };
    if recipient_keeps {
        stanza_id::add(&mut m, &uid, &recipient);
    }
    if sender_keeps && !to_self {
        // For the sender's own resources (carbon copies); the outbound filter keeps each
        // session's own.
        stanza_id::add(&mut m, &uid, &sender);
    }
    let mut parties = vec![Party {
        owner: sender.to_string(),
        peer: recipient.to_string(),
        visible: sender_keeps,
    }];
    if !to_self {
        parties.push(Party {
            owner: recipient.to_string(),
            peer: sender.to_string(),
            visible: recipient_keeps,
        });
    }
    let row = NewArchived {
        uid,
        stamp_us,
        sender: sender.to_string(),
        sender_resource: ctx.from.resource().to_string(),
        recipient: recipient.to_string(),
        recipient_resource,
        kind: kind(&m.type_).to_owned(),
        body: m
            .bodies
            .values()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        xml,
        parties,
    };
    let writer = archive
        .writer
        .get_or_init(|| writer::Writer::spawn(server.store.clone(), config.max_batch));
    let receipt = writer.submit(row).await;
    ctx.session.ext.with(|p: &mut Pending| p.add(receipt));
    Some(m)
}

/// A session's archive writes not known to be committed yet (a session extension), oldest
/// first. Receipts already in are dropped as new ones come, so it holds about what is in
/// flight.
#[derive(Debug, Default)]
pub struct Pending {
    receipts: std::collections::VecDeque<oneshot::Receiver<bool>>,
    /// A write of this session failed (seen while dropping receipts).
    failed: bool,
}

impl Pending {
    fn add(&mut self, receipt: oneshot::Receiver<bool>) {
        while let Some(front) = self.receipts.front_mut() {
            match front.try_recv() {
                Ok(ok) => {
                    self.failed |= !ok;
                    self.receipts.pop_front();
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.failed = true;
                    self.receipts.pop_front();
                }
                Err(oneshot::error::TryRecvError::Empty) => break,
            }
        }
        self.receipts.push_back(receipt);
    }
}

/// The barrier: every write the session's messages started is committed (false if one
/// failed: the session must not acknowledge it).
fn committed(session: &Arc<Session>) -> Option<BoxFuture<bool>> {
    let (receipts, failed) = session.ext.with(|p: &mut Pending| {
        (
            std::mem::take(&mut p.receipts),
            std::mem::take(&mut p.failed),
        )
    });
    if receipts.is_empty() && !failed {
        return None;
    }
    Some(Box::pin(async move {
        let mut ok = !failed;
        for r in receipts {
            ok &= r.await.unwrap_or(false);
        }
        if !ok {
            tracing::error!("archive writes of a session failed; it will not acknowledge them");
        }
        ok
    }))
}

fn kind(t: &MessageType) -> &'static str {
    match t {
        MessageType::Chat => "chat",
        MessageType::Normal => "normal",
        MessageType::Groupchat => "groupchat",
        MessageType::Headline => "headline",
        MessageType::Error => "error",
    }
}
