//! The message archive: XEP-0313 MAM for users and the chat log for admins, one store for
//! both (see `migrations/*/0005_archive.sql` for the tables).
//!
//! A message is written once ([`Store::archive_insert`], in batches) with one party row per
//! archive that shows it (party rows name bare JIDs by their number in `archive_jid`, see
//! [`JidNumbers`]; the full-text index is filled once per batch, [`FTS_FILL`]). Users page through their own archive ([`Store::archive_page`]);
//! admins search every archive ([`Store::archive_page`] with [`Selection::Everyone`]). Text
//! search is FTS5 on SQLite and a tsvector on PostgreSQL over the same words (see
//! [`search_words`]), so a search finds the same messages on both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::{Backend, Store, StoreError, int_bool};

/// A message to archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArchived {
    /// The XEP-0359 stanza-id, unique.
    pub uid: String,
    /// When the server took it, µs since the Unix epoch.
    pub stamp_us: i64,
    pub sender: String,
    pub sender_resource: String,
    pub recipient: String,
    pub recipient_resource: String,
    /// The message type (`chat`, `normal`, `groupchat`).
    pub kind: String,
    /// The searchable text ('' when none).
    pub body: String,
    pub xml: String,
    /// Whose archives hold it: each the sender's or the recipient's bare JID (a room's, for
    /// group chat, is the recipient), which expiry and the domain filter rely on;
    /// [`Store::archive_insert`] refuses others.
    pub parties: Vec<Party>,
}

/// One archive that holds a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// The archive's bare JID (an account, later a room).
    pub owner: String,
    /// The other side's bare JID.
    pub peer: String,
    /// Whether the owner's MAM archive shows it (their preferences); the admin log always
    /// does.
    pub visible: bool,
}

/// The domain of a bare JID.
pub(crate) fn domain_of(jid: &str) -> &str {
    jid.rsplit_once('@').map_or(jid, |(_, d)| d)
}

/// Fills the full-text index (SQLite's FTS5 table) for the messages with ids `$1` to `$2`,
/// written in the same transaction. Once per batch instead of a trigger per row: measured
/// with a bare rusqlite loop (100,000 messages in batches of 4096), the trigger cost 14.5 us a
/// message, this 3 us.
pub(crate) const FTS_FILL: &str = "INSERT INTO archive_fts (rowid, body) \
     SELECT id, body FROM archive WHERE id BETWEEN $1 AND $2 AND body <> ''";

/// The numbers the archive gives bare JIDs (`archive_jid`), as far as the writer has seen
/// them. Numbers are never changed or deleted, so a cached one stays true; a new one is
/// cached only once the transaction that created it has committed.
#[derive(Debug, Clone, Default)]
pub(crate) struct JidNumbers(Arc<Mutex<HashMap<String, i64>>>);

/// JIDs cached at most; past it the cache starts again.
const JID_CACHE: usize = 100_000;

impl JidNumbers {
    /// The cache (still right after a panic elsewhere: it only grows after a commit).
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached numbers of `jids`.
    fn known<'a>(&self, jids: impl Iterator<Item = &'a str>) -> HashMap<String, i64> {
        let cache = self.lock();
        jids.filter_map(|j| cache.get(j).map(|n| (j.to_owned(), *n)))
            .collect()
    }
}

/// Adds the numbers a committed transaction created to the cache.
pub(crate) fn learn(cache: &mut HashMap<String, i64>, new: HashMap<String, i64>) {
    if cache.len() + new.len() > JID_CACHE {
        cache.clear();
    }
    cache.extend(new);
}

/// Where a number comes from: the cache, or this transaction.
pub(crate) struct Numbering<'a> {
    pub(crate) known: &'a HashMap<String, i64>,
    pub(crate) new: HashMap<String, i64>,
}

impl Numbering<'_> {
    pub(crate) fn get(&self, jid: &str) -> Option<i64> {
        self.known.get(jid).or_else(|| self.new.get(jid)).copied()
    }
}

/// The number of `jid`, given one in this transaction when it has none.
async fn number(
    tx: &mut sqlx::AnyConnection,
    numbering: &mut Numbering<'_>,
    jid: &str,
) -> Result<i64, StoreError> {
    if let Some(n) = numbering.get(jid) {
        return Ok(n);
    }
    let select = || sqlx::query("SELECT id FROM archive_jid WHERE jid = $1").bind(jid);
    let row = match select().fetch_optional(&mut *tx).await? {
        Some(row) => row,
        None => {
            sqlx::query(
                "INSERT INTO archive_jid (jid, domain) VALUES ($1, $2) ON CONFLICT (jid) DO NOTHING",
            )
            .bind(jid)
            .bind(domain_of(jid))
            .execute(&mut *tx)
            .await?;
            select().fetch_one(&mut *tx).await?
        }
    };
    let n: i64 = row.try_get("id")?;
    numbering.new.insert(jid.to_owned(), n);
    Ok(n)
}

/// `(SELECT id FROM archive_jid WHERE jid = $n)`: a JID's number inside a query.
const JID_NUMBER: &str = "(SELECT j.id FROM archive_jid j WHERE j.jid = ";

/// `($1, …, $cols), (…)` for `rows` rows of `cols` bound values each.
fn values(cols: usize, rows: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An archived message as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// Archiving order: larger is later.
    pub id: i64,
    pub uid: String,
    pub stamp_us: i64,
    pub sender: String,
    pub sender_resource: String,
    pub recipient: String,
    pub recipient_resource: String,
    pub kind: String,
    pub body: String,
    pub xml: String,
}

/// Whose messages a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One archive as its owner sees it (MAM): only what their preferences keep.
    Own(String),
    /// Everything archived for this account (the admin log).
    Account(String),
    /// Everything archived for accounts of this domain (the admin log).
    Domain(String),
    /// Every message (the admin log).
    Everyone,
}

/// The other side of a conversation a query is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct With {
    pub bare: String,
    /// Only messages from or to this resource of `bare`.
    pub resource: Option<String>,
}

/// What to read: every field narrows the result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArchiveFilter {
    pub with: Option<With>,
    /// Stamps from this one on (µs, inclusive).
    pub start_us: Option<i64>,
    /// Stamps up to this one (µs, inclusive).
    pub end_us: Option<i64>,
    /// Only messages archived after this id.
    pub after: Option<i64>,
    /// Only messages archived before this id.
    pub before: Option<i64>,
    /// Only these ids.
    pub ids: Option<Vec<i64>>,
    /// Only messages whose text holds every one of these words ([`search_words`]).
    pub words: Option<String>,
}

/// One page of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most this many messages.
    pub limit: usize,
    /// From the newest backwards (the page is still returned oldest first).
    pub backwards: bool,
}

/// The words of a full-text search, as both databases index them: maximal runs of letters
/// and digits, lower-cased, joined by spaces. Empty when there are none.
pub fn search_words(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rows per multi-row INSERT (9 bound values each). sqlx looks every parameter up by name
/// in a linear scan, so a statement's binding costs grow with the square of its parameters:
/// 512 rows a statement spent 38% of the writer's time there, 32 rows 10% (`perf` on
/// `archive_bench 20000 256`); fewer rows cost a round trip to SQLite's thread each.
const INSERT_CHUNK: usize = 32;
/// How many ids go into one `IN (...)` list.
const ID_CHUNK: usize = 500;

impl Store {
    /// Archives `batch` in one transaction: all of it or nothing.
    pub async fn archive_insert(&self, batch: &[NewArchived]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(stray) = batch
            .iter()
            .flat_map(|m| m.parties.iter().map(move |p| (m, p)))
            .find(|(m, p)| p.owner != m.sender && p.owner != m.recipient)
        {
            return Err(StoreError::StrayParty(stray.1.owner.clone()));
        }
        if let Some(native) = &self.native {
            return native.insert(batch.to_vec(), self.jids.clone()).await;
        }
        let known = self.jids.known(
            batch
                .iter()
                .flat_map(|m| &m.parties)
                .flat_map(|p| [p.owner.as_str(), p.peer.as_str()]),
        );
        let mut numbering = Numbering {
            known: &known,
            new: HashMap::new(),
        };
        let result = self.archive_insert_sqlx(batch, &mut numbering).await;
        if result.is_ok() {
            learn(&mut self.jids.lock(), numbering.new);
        } else {
            // A failed write may mean a reconnection, even a fail-over that lost commits
            // the cache has numbers from: look them up again.
            self.jids.lock().clear();
        }
        result
    }

    async fn archive_insert_sqlx(
        &self,
        batch: &[NewArchived],
        numbering: &mut Numbering<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let mut span: Option<(i64, i64)> = None;
        for chunk in batch.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO archive (uid, stamp_us, sender, sender_resource, recipient, \
                 recipient_resource, kind, body, xml) VALUES ",
            );
            sql.push_str(&values(9, chunk.len()));
            sql.push_str(" RETURNING id, uid");
            // Built from numbered placeholders only; the values are bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for m in chunk {
                q = q
                    .bind(&m.uid)
                    .bind(m.stamp_us)
                    .bind(&m.sender)
                    .bind(&m.sender_resource)
                    .bind(&m.recipient)
                    .bind(&m.recipient_resource)
                    .bind(&m.kind)
                    .bind(&m.body)
                    .bind(&m.xml);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            // RETURNING's order is not promised: match rows by uid.
            let mut ids = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                let id = r.try_get::<i64, _>("id")?;
                ids.insert(r.try_get::<String, _>("uid")?, id);
                span = Some(span.map_or((id, id), |(lo, hi)| (lo.min(id), hi.max(id))));
            }
            let mut parties = Vec::new();
            for m in chunk {
                let Some(id) = ids.get(&m.uid).copied() else {
                    continue;
                };
                for p in &m.parties {
                    let owner = number(&mut tx, numbering, &p.owner).await?;
                    let peer = number(&mut tx, numbering, &p.peer).await?;
                    parties.push((owner, id, peer, i64::from(p.visible)));
                }
            }
            for part in parties.chunks(INSERT_CHUNK) {
                let mut sql = String::from(
                    "INSERT INTO archive_party_log (owner, msg, peer, visible) VALUES ",
                );
                sql.push_str(&values(4, part.len()));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (owner, id, peer, visible) in part {
                    q = q.bind(*owner).bind(*id).bind(*peer).bind(*visible);
                }
                q.execute(&mut *tx).await?;
            }
        }
        // PostgreSQL's words are a generated column; SQLite's FTS5 table is filled here.
        if let (Backend::Sqlite, Some((first, last))) = (self.backend, span) {
            sqlx::query(FTS_FILL)
                .bind(first)
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The ids of `uids` among what `selection` reads (others, and unknown ones, are left
    /// out), in no particular order.
    pub async fn archive_ids(
        &self,
        selection: &Selection,
        uids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut found = Vec::new();
        let mut jobs = Vec::new();
        for table in tables(selection) {
            for chunk in uids.chunks(ID_CHUNK) {
                jobs.push((*table, chunk));
            }
        }
        for (table, chunk) in jobs {
            let mut sql = Sql::select_in("a.uid, a.id", selection, table);
            sql.push(" AND a.uid IN (");
            for (i, uid) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(uid.clone());
            }
            sql.push(")");
            for r in sql.fetch_all(self).await? {
                found.push((r.try_get("uid")?, r.try_get("id")?));
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// One page of what `selection` reads through `filter`, oldest first, and whether it was
    /// the last page in its direction.
    pub async fn archive_page(
        &self,
        selection: &Selection,
        filter: &ArchiveFilter,
        page: Page,
    ) -> Result<(Vec<Archived>, bool), StoreError> {
        let order = if page.backwards { "DESC" } else { "ASC" };
        // One more than asked for tells whether this is the last page.
        let fetch = page.limit.saturating_add(1);
        let mut rows = Vec::new();
        for table in tables(selection) {
            let mut sql = Sql::select_in(
                "a.id, a.uid, a.stamp_us, a.sender, a.sender_resource, a.recipient, \
                 a.recipient_resource, a.kind, a.body, a.xml",
                selection,
                table,
            );
            sql.filter(self.backend, selection, filter);
            sql.push(&format!(" ORDER BY {} {order} LIMIT {fetch}", sql.key));
            for r in sql.fetch_all(self).await? {
                rows.push(archived(&r)?);
            }
        }
        // Both tables' pages merged: the first `fetch` in the page's direction.
        rows.sort_by_key(|m| m.id);
        rows.dedup_by_key(|m| m.id);
        if page.backwards {
            rows.reverse();
        }
        let complete = rows.len() <= page.limit;
        rows.truncate(page.limit);
        if page.backwards {
            rows.reverse();
        }
        Ok((rows, complete))
    }

    /// How many messages `selection` reads through `filter`.
    pub async fn archive_count(
        &self,
        selection: &Selection,
        filter: &ArchiveFilter,
    ) -> Result<i64, StoreError> {
        let mut total = 0;
        for table in tables(selection) {
            let mut sql = Sql::select_in("COUNT(*) AS n", selection, table);
            sql.filter(self.backend, selection, filter);
            if let Some(r) = sql.fetch_all(self).await?.first() {
                total += r.try_get::<i64, _>("n")?;
            }
        }
        Ok(total)
    }

    /// The first and the last message `selection` reads, if any.
    pub async fn archive_bounds(
        &self,
        selection: &Selection,
    ) -> Result<Option<(Archived, Archived)>, StoreError> {
        let one = |backwards| Page {
            limit: 1,
            backwards,
        };
        let none = ArchiveFilter::default();
        let (first, _) = self.archive_page(selection, &none, one(false)).await?;
        let (last, _) = self.archive_page(selection, &none, one(true)).await?;
        Ok(first.into_iter().next().zip(last.into_iter().next()))
    }
}

/// A deleted account's archive: its messages stay in the admin log (until retention or a
/// purge), but leave its own MAM view, so that an account created again with the same
/// address does not inherit them; its preferences and notice records go.
pub(crate) async fn forget_owner(
    conn: &mut sqlx::AnyConnection,
    owner: &str,
) -> Result<(), StoreError> {
    for sql in [
        "UPDATE archive_party SET visible = 0 \
         WHERE owner = (SELECT j.id FROM archive_jid j WHERE j.jid = $1)",
        "UPDATE archive_party_log SET visible = 0 \
         WHERE owner = (SELECT j.id FROM archive_jid j WHERE j.jid = $1)",
        "DELETE FROM archive_prefs WHERE owner = $1",
        "DELETE FROM archive_prefs_jid WHERE owner = $1",
        "DELETE FROM archive_notices WHERE owner = $1",
    ] {
        sqlx::query(sql).bind(owner).execute(&mut *conn).await?;
    }
    Ok(())
}

/// XEP-0313 preferences of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePrefs {
    /// `always`, `never` or `roster`.
    pub default_mode: String,
    /// Bare or full JIDs always archived.
    pub always: Vec<String>,
    /// Bare or full JIDs never archived.
    pub never: Vec<String>,
}

impl Store {
    /// `owner`'s preferences, `None` when never set.
    pub async fn archive_prefs(&self, owner: &str) -> Result<Option<ArchivePrefs>, StoreError> {
        let Some(row) = sqlx::query("SELECT default_mode FROM archive_prefs WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut prefs = ArchivePrefs {
            default_mode: row.try_get("default_mode")?,
            always: Vec::new(),
            never: Vec::new(),
        };
        let rows =
            sqlx::query("SELECT jid, always FROM archive_prefs_jid WHERE owner = $1 ORDER BY jid")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
        for r in rows {
            let jid: String = r.try_get("jid")?;
            if int_bool(r.try_get("always")?) {
                prefs.always.push(jid);
            } else {
                prefs.never.push(jid);
            }
        }
        Ok(Some(prefs))
    }

    /// Replaces `owner`'s preferences (a JID in both lists counts as `never`).
    pub async fn set_archive_prefs(
        &self,
        owner: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM archive_prefs_jid WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO archive_prefs (owner, default_mode) VALUES ($1, $2) \
             ON CONFLICT (owner) DO UPDATE SET default_mode = excluded.default_mode",
        )
        .bind(owner)
        .bind(&prefs.default_mode)
        .execute(&mut *tx)
        .await?;
        let lists = prefs
            .always
            .iter()
            .filter(|j| !prefs.never.contains(j))
            .map(|j| (j, 1_i64))
            .chain(prefs.never.iter().map(|j| (j, 0_i64)));
        for (jid, always) in lists {
            sqlx::query(
                "INSERT INTO archive_prefs_jid (owner, jid, always) VALUES ($1, $2, $3) \
                 ON CONFLICT (owner, jid) DO NOTHING",
            )
            .bind(owner)
            .bind(jid)
            .bind(always)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The party tables an archive's own query reads: the log of the newest rows and the
/// indexed one; "" for the admin log's queries over every message. Counts (and
/// conversation counts) read while a flush commits may count its rows twice.
fn tables(selection: &Selection) -> &'static [&'static str] {
    match selection {
        // The log first: a flush that commits between the two reads moves rows from the log
        // into the party table, so they are read twice (and kept once), never missed.
        Selection::Own(_) | Selection::Account(_) => &["archive_party_log", "archive_party"],
        Selection::Domain(_) | Selection::Everyone => &[""],
    }
}

/// Party rows moved per [`Store::archive_flush`] transaction.
pub const FLUSH_ROWS: usize = 8192;

impl Store {
    /// Moves the whole party log, [`FLUSH_ROWS`] a transaction; returns how many rows moved.
    pub async fn archive_flush_all(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            match self.archive_flush(FLUSH_ROWS).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Moves up to `max` of the oldest rows of the party log into the indexed party table,
    /// sorted by owner (one transaction). Returns how many moved; 0 when the log is empty.
    pub async fn archive_flush(&self, max: usize) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let upto: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT MAX(seq) AS upto FROM (SELECT seq FROM archive_party_log ORDER BY seq LIMIT {}) s",
            max.max(1)
        )))
        .fetch_one(&mut *tx)
        .await?
        .try_get("upto")?;
        let Some(upto) = upto else {
            return Ok(0);
        };
        // A message deleted meanwhile (a purge) leaves its log rows behind: not moved. Two
        // flushes at once (the server's and a purge's, on PostgreSQL where they do not wait
        // for each other) move the same rows: the second's are skipped.
        sqlx::query(
            "INSERT INTO archive_party (owner, msg, peer, visible) \
             SELECT l.owner, l.msg, l.peer, l.visible FROM archive_party_log l \
             WHERE l.seq <= $1 AND EXISTS (SELECT 1 FROM archive a WHERE a.id = l.msg) \
             ORDER BY l.owner, l.msg ON CONFLICT (owner, msg) DO NOTHING",
        )
        .bind(upto)
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query("DELETE FROM archive_party_log WHERE seq <= $1")
            .bind(upto)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(moved)
    }
}

fn archived(r: &AnyRow) -> Result<Archived, StoreError> {
    Ok(Archived {
        id: r.try_get("id")?,
        uid: r.try_get("uid")?,
        stamp_us: r.try_get("stamp_us")?,
        sender: r.try_get("sender")?,
        sender_resource: r.try_get("sender_resource")?,
        recipient: r.try_get("recipient")?,
        recipient_resource: r.try_get("recipient_resource")?,
        kind: r.try_get("kind")?,
        body: r.try_get("body")?,
        xml: r.try_get("xml")?,
    })
}

/// A query over `archive a` built piece by piece, with its values bound in order.
struct Sql {
    /// The column that orders the messages: the party row's when the query runs on them.
    key: &'static str,
    text: String,
    n: usize,
    args: Vec<Arg>,
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Sql {
    fn new(key: &'static str, head: &str) -> Sql {
        Sql {
            key,
            text: head.to_owned(),
            n: 0,
            args: Vec::new(),
        }
    }

    /// `SELECT columns` of the messages `selection` reads. An archive's own queries run on
    /// its party rows (their primary key is the archive's order), the admin log's over
    /// every message. For an archive's own queries, `table` names the party rows:
    /// `archive_party` or `archive_party_log` ([`tables`]).
    fn select_in(columns: &str, selection: &Selection, table: &str) -> Sql {
        let party = matches!(selection, Selection::Own(_) | Selection::Account(_));
        let key = if party { "p.msg" } else { "a.id" };
        let mut sql = Sql::new(key, &format!("SELECT {columns} FROM "));
        match selection {
            Selection::Own(owner) | Selection::Account(owner) => {
                sql.push(&format!(
                    "{table} p JOIN archive a ON a.id = p.msg WHERE p.owner = {JID_NUMBER}"
                ));
                sql.text(owner.clone());
                sql.push(")");
                if matches!(selection, Selection::Own(_)) {
                    sql.push(" AND p.visible = 1");
                }
            }
            Selection::Domain(domain) => {
                // A party is the sender's or the recipient's bare JID: its number, then its
                // row by the party table's key.
                sql.push(
                    "archive a WHERE (EXISTS (SELECT 1 FROM archive_jid j JOIN archive_party p \
                     ON p.owner = j.id AND p.msg = a.id \
                     WHERE j.jid IN (a.sender, a.recipient) AND j.domain = ",
                );
                sql.text(domain.clone());
                sql.push(
                    ") OR EXISTS (SELECT 1 FROM archive_party_log p JOIN archive_jid j \
                     ON j.id = p.owner WHERE p.msg = a.id AND j.domain = ",
                );
                sql.text(domain.clone());
                sql.push("))");
            }
            Selection::Everyone => sql.push("archive a WHERE 1 = 1"),
        }
        sql
    }

    fn filter(&mut self, backend: Backend, selection: &Selection, filter: &ArchiveFilter) {
        if let Some(with) = &filter.with {
            match selection {
                // The party row names the peer: its index finds the conversation.
                Selection::Own(_) | Selection::Account(_) => {
                    self.push(&format!(" AND p.peer = {JID_NUMBER}"));
                    self.text(with.bare.clone());
                    self.push(")");
                }
                Selection::Domain(_) | Selection::Everyone => {
                    self.push(" AND (a.sender = ");
                    self.text(with.bare.clone());
                    self.push(" OR a.recipient = ");
                    self.text(with.bare.clone());
                    self.push(")");
                }
            }
            if let Some(resource) = &with.resource {
                self.push(" AND ((a.sender = ");
                self.text(with.bare.clone());
                self.push(" AND a.sender_resource = ");
                self.text(resource.clone());
                self.push(") OR (a.recipient = ");
                self.text(with.bare.clone());
                self.push(" AND a.recipient_resource = ");
                self.text(resource.clone());
                self.push("))");
            }
        }
        // Each also as a bound on the order (found through the stamp index), so that a
        // query from `start` does not walk the archive from its oldest message.
        if let Some(start) = filter.start_us {
            self.stamp_bound(">=", "MIN", start);
        }
        if let Some(end) = filter.end_us {
            self.stamp_bound("<=", "MAX", end);
        }
        if let Some(after) = filter.after {
            self.push(&format!(" AND {} > ", self.key));
            self.int(after);
        }
        if let Some(before) = filter.before {
            self.push(&format!(" AND {} < ", self.key));
            self.int(before);
        }
        if let Some(ids) = &filter.ids {
            if ids.is_empty() {
                self.push(" AND 1 = 0");
            } else {
                self.push(" AND a.id IN (");
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.int(*id);
                }
                self.push(")");
            }
        }
        if let Some(words) = &filter.words {
            let words = search_words(words);
            if words.is_empty() {
                self.push(" AND 1 = 0");
            } else {
                match backend {
                    Backend::Sqlite => {
                        // Each word a quoted FTS5 string: no query syntax reaches FTS5.
                        let quoted = words
                            .split(' ')
                            .map(|w| format!("\"{w}\""))
                            .collect::<Vec<_>>()
                            .join(" ");
                        self.push(
                            " AND a.id IN (SELECT rowid FROM archive_fts WHERE archive_fts MATCH ",
                        );
                        self.text(quoted);
                        self.push(")");
                    }
                    Backend::Postgres => {
                        self.push(" AND a.body_words @@ plainto_tsquery('simple', ");
                        self.text(words);
                        self.push(")");
                    }
                }
            }
        }
    }

    /// `stamp_us OP us`, and the same as a bound on the order key: the `AGG` id of the
    /// messages so stamped.
    fn stamp_bound(&mut self, op: &str, agg: &str, us: i64) {
        self.push(&format!(" AND a.stamp_us {op} "));
        self.int(us);
        self.push(&format!(
            " AND {} {op} (SELECT {agg}(s.id) FROM archive s WHERE s.stamp_us {op} ",
            self.key
        ));
        self.int(us);
        self.push(")");
    }

    /// The party rows `p` (joined with `a`) that retention or a purge may delete: stamped
    /// before `before_us`, of `domain` / `owner` when given, not on hold.
    fn expirable(&mut self, domain: Option<&str>, owner: Option<&str>, before_us: i64) {
        self.push("a.stamp_us < ");
        self.int(before_us);
        if let Some(d) = domain {
            self.push(" AND p.owner IN (SELECT j.id FROM archive_jid j WHERE j.domain = ");
            self.text(d.to_owned());
            self.push(")");
        }
        if let Some(o) = owner {
            self.push(&format!(" AND p.owner = {JID_NUMBER}"));
            self.text(o.to_owned());
            self.push(")");
        }
        self.push(
            " AND NOT EXISTS (SELECT 1 FROM archive_holds h JOIN archive_jid j \
             ON j.jid = h.owner WHERE j.id = p.owner)",
        );
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn text(&mut self, v: String) {
        self.n += 1;
        self.text.push_str(&format!("${}", self.n));
        self.args.push(Arg::Text(v));
    }

    fn int(&mut self, v: i64) {
        self.n += 1;
        self.text.push_str(&format!("${}", self.n));
        self.args.push(Arg::Int(v));
    }

    fn query(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        // Built from fixed SQL and numbered placeholders only; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text));
        for arg in self.args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
            };
        }
        q
    }

    async fn fetch_all(self, store: &Store) -> Result<Vec<AnyRow>, StoreError> {
        Ok(self.query().fetch_all(&store.pool).await?)
    }

    async fn execute(self, store: &Store) -> Result<u64, StoreError> {
        Ok(self.query().execute(&store.pool).await?.rows_affected())
    }
}

/// One conversation of the admin log: two parties and what they exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The two bare JIDs, the smaller first.
    pub a: String,
    pub b: String,
    pub messages: i64,
    pub first_us: i64,
    pub last_us: i64,
}

/// A legal hold on one account's archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub owner: String,
    pub reason: String,
    pub actor: String,
    pub since_ms: i64,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

impl Store {
    /// The conversations `selection` reads through `filter` (its `words` and `ids` are not
    /// used), most recent first, at most `limit`.
    pub async fn archive_conversations(
        &self,
        selection: &Selection,
        filter: &ArchiveFilter,
        limit: usize,
    ) -> Result<Vec<Conversation>, StoreError> {
        // Byte order on both (PostgreSQL's default collation would order differently).
        let less = match self.backend {
            Backend::Sqlite => "a.sender < a.recipient",
            Backend::Postgres => "a.sender COLLATE \"C\" < a.recipient COLLATE \"C\"",
        };
        let columns = format!(
            "CASE WHEN {less} THEN a.sender ELSE a.recipient END AS pa, \
             CASE WHEN {less} THEN a.recipient ELSE a.sender END AS pb, \
             COUNT(*) AS n, MIN(a.stamp_us) AS first_us, MAX(a.stamp_us) AS last_us"
        );
        let columns = columns.as_str();
        let filter = ArchiveFilter {
            words: None,
            ids: None,
            ..filter.clone()
        };
        let mut all: Vec<Conversation> = Vec::new();
        for table in tables(selection) {
            let mut sql = Sql::select_in(columns, selection, table);
            sql.filter(self.backend, selection, &filter);
            sql.push(" GROUP BY pa, pb");
            for r in sql.fetch_all(self).await? {
                let c = Conversation {
                    a: r.try_get("pa")?,
                    b: r.try_get("pb")?,
                    messages: r.try_get("n")?,
                    first_us: r.try_get("first_us")?,
                    last_us: r.try_get("last_us")?,
                };
                match all.iter_mut().find(|o| o.a == c.a && o.b == c.b) {
                    Some(o) => {
                        o.messages += c.messages;
                        o.first_us = o.first_us.min(c.first_us);
                        o.last_us = o.last_us.max(c.last_us);
                    }
                    None => all.push(c),
                }
            }
        }
        all.sort_by_key(|c| std::cmp::Reverse(c.last_us));
        all.truncate(limit.max(1));
        Ok(all)
    }

    /// Deletes, for accounts of `domain` not on hold (all domains when `None`; only `owner`
    /// when given), up to `batch` of their archive entries stamped before `before_us`, then
    /// up to `batch` messages no archive holds any more. Returns (entries, messages) deleted:
    /// call again until both are 0.
    pub async fn archive_expire(
        &self,
        domain: Option<&str>,
        owner: Option<&str>,
        before_us: i64,
        batch: usize,
    ) -> Result<(u64, u64), StoreError> {
        // Party rows still in the log are the newest, but a purge up to now wants them too.
        self.archive_flush_all().await?;
        let mut sql = Sql::new(
            "p.msg",
            "DELETE FROM archive_party WHERE (owner, msg) IN (SELECT p.owner, p.msg \
             FROM archive_party p JOIN archive a ON a.id = p.msg WHERE ",
        );
        sql.expirable(domain, owner, before_us);
        sql.push(&format!(" LIMIT {})", batch.max(1)));
        let parties = sql.execute(self).await?;
        let orphans = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM archive WHERE id IN (SELECT a.id FROM archive a WHERE a.stamp_us < $1 \
             AND NOT EXISTS (SELECT 1 FROM archive_jid j JOIN archive_party p \
             ON p.owner = j.id AND p.msg = a.id WHERE j.jid IN (a.sender, a.recipient)) \
             AND NOT EXISTS (SELECT 1 FROM archive_party_log l WHERE l.msg = a.id) LIMIT {})",
            batch.max(1)
        )))
        .bind(before_us)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((parties, orphans))
    }

    /// How many archive entries [`Store::archive_expire`] would delete with these arguments.
    pub async fn archive_expirable(
        &self,
        domain: Option<&str>,
        owner: Option<&str>,
        before_us: i64,
    ) -> Result<i64, StoreError> {
        self.archive_flush_all().await?;
        let mut sql = Sql::new(
            "p.msg",
            "SELECT COUNT(*) AS n FROM archive_party p JOIN archive a ON a.id = p.msg WHERE ",
        );
        sql.expirable(domain, owner, before_us);
        let rows = sql.fetch_all(self).await?;
        Ok(rows
            .first()
            .map(|r| r.try_get("n"))
            .transpose()?
            .unwrap_or(0))
    }

    /// Places (or updates) a legal hold.
    pub async fn hold_place(&self, hold: &Hold) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO archive_holds (owner, reason, actor, since_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (owner) DO UPDATE SET reason = excluded.reason, actor = excluded.actor",
        )
        .bind(&hold.owner)
        .bind(&hold.reason)
        .bind(&hold.actor)
        .bind(hold.since_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lifts a hold; false when there was none.
    pub async fn hold_lift(&self, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM archive_holds WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        let rows =
            sqlx::query("SELECT owner, reason, actor, since_ms FROM archive_holds ORDER BY owner")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Hold {
                    owner: r.try_get("owner")?,
                    reason: r.try_get("reason")?,
                    actor: r.try_get("actor")?,
                    since_ms: r.try_get("since_ms")?,
                })
            })
            .collect()
    }

    /// Records one access to the chat log.
    pub async fn audit(
        &self,
        at_ms: i64,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, detail) VALUES ($1, $2, $3, $4)")
            .bind(at_ms)
            .bind(actor)
            .bind(action)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The audit trail from `since_ms` on, oldest first, at most `limit`; `actor` narrows it.
    pub async fn audit_entries(
        &self,
        since_ms: i64,
        actor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = Sql::new(
            "id",
            "SELECT id, at_ms, actor, action, detail FROM audit_log WHERE at_ms >= ",
        );
        sql.int(since_ms);
        if let Some(a) = actor {
            sql.push(" AND actor = ");
            sql.text(a.to_owned());
        }
        sql.push(&format!(" ORDER BY id LIMIT {}", limit.max(1)));
        sql.fetch_all(self)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// Records that `owner`'s `device` was told the archive notice; true the first time.
    pub async fn notice_first_seen(
        &self,
        owner: &str,
        device: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO archive_notices (owner, device, at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (owner, device) DO NOTHING",
        )
        .bind(owner)
        .bind(device)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
