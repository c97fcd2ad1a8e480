//! The archive's write path on SQLite, on rusqlite instead of sqlx: one connection of its
//! own, prepared statements, one row a statement. Hand-written because the archive write is
//! per message, and measured (`archive_bench 50000 256` on a SQLite file, three runs each,
//! medians): through sqlx's `Any` driver (multi-row INSERTs of 32 rows) a message cost 86 us,
//! here 59 us. Reads, and PostgreSQL, stay on sqlx.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};

use crate::StoreError;
use crate::archive::{FTS_FILL, JidNumbers, NewArchived, Numbering, learn};

/// The writer's connection, opened at its first use.
#[derive(Debug, Clone)]
pub(crate) struct NativeWriter {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl NativeWriter {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            conn: Arc::default(),
        }
    }

    /// Writes `batch` in one transaction, on a blocking thread.
    pub(crate) async fn insert(
        &self,
        batch: Vec<NewArchived>,
        jids: JidNumbers,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.insert_blocking(&batch, &jids))
            .await
            .map_err(|e| StoreError::Native(format!("archive writer thread: {e}")))?
    }

    fn insert_blocking(&self, batch: &[NewArchived], jids: &JidNumbers) -> Result<(), StoreError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Native("archive writer poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(open(&self.path)?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(StoreError::Native("no archive connection".into()));
        };
        let mut cache = jids.lock();
        let mut numbering = Numbering {
            known: &cache,
            new: HashMap::new(),
        };
        let result = write(conn, batch, &mut numbering);
        if result.is_ok() {
            let new = numbering.new;
            learn(&mut cache, new);
        } else {
            // Numbers looked up again too (see `Store::archive_insert`).
            cache.clear();
            // A fresh connection next time (the old one may be in a bad state).
            *guard = None;
        }
        result.map_err(StoreError::from)
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_millis(
        crate::SQLITE_BUSY_TIMEOUT_MS,
    ))?;
    for pragma in crate::SQLITE_PRAGMAS {
        conn.execute_batch(pragma)?;
    }
    Ok(conn)
}

fn write(
    conn: &mut Connection,
    batch: &[NewArchived],
    numbering: &mut Numbering<'_>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut message = tx.prepare_cached(
            "INSERT INTO archive (uid, stamp_us, sender, sender_resource, recipient, \
             recipient_resource, kind, body, xml) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut party = tx.prepare_cached(
            "INSERT INTO archive_party_log (owner, msg, peer, visible) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut span = None;
        for m in batch {
            message.execute(params![
                m.uid,
                m.stamp_us,
                m.sender,
                m.sender_resource,
                m.recipient,
                m.recipient_resource,
                m.kind,
                m.body,
                m.xml
            ])?;
            let id = tx.last_insert_rowid();
            let (first, _) = span.get_or_insert((id, id));
            span = Some((*first, id));
            for p in &m.parties {
                let owner = number(&tx, numbering, &p.owner)?;
                let peer = number(&tx, numbering, &p.peer)?;
                party.execute(params![owner, id, peer, i64::from(p.visible)])?;
            }
        }
        if let Some((first, last)) = span {
            tx.prepare_cached(FTS_FILL)?.execute(params![first, last])?;
        }
    }
    tx.commit()
}

/// The number of `jid`, given one in this transaction when it has none.
fn number(tx: &Transaction<'_>, numbering: &mut Numbering<'_>, jid: &str) -> rusqlite::Result<i64> {
    if let Some(n) = numbering.get(jid) {
        return Ok(n);
    }
    let found = tx
        .prepare_cached("SELECT id FROM archive_jid WHERE jid = ?1")?
        .query_row([jid], |r| r.get(0))
        .optional()?;
    let n = match found {
        Some(n) => n,
        None => {
            tx.prepare_cached("INSERT INTO archive_jid (jid, domain) VALUES (?1, ?2)")?
                .execute(params![jid, crate::archive::domain_of(jid)])?;
            tx.last_insert_rowid()
        }
    };
    numbering.new.insert(jid.to_owned(), n);
    Ok(n)
}
