//! The archive's write path on SQLite, on rusqlite instead of sqlx: one connection of its
//! own, prepared statements, one row a statement. Hand-written because the archive write is
//! per message, and measured (`archive_bench 50000 256` on a SQLite file, three runs each,
//! medians): through sqlx's `Any` driver (multi-row INSERTs of 32 rows) a message cost 86 us,
//! here 59 us. Reads, and PostgreSQL, stay on sqlx.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, TransactionBehavior, params};

use crate::StoreError;
use crate::archive::NewArchived;

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
    pub(crate) async fn insert(&self, batch: Vec<NewArchived>) -> Result<(), StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.insert_blocking(&batch))
            .await
            .map_err(|e| StoreError::Native(format!("archive writer thread: {e}")))?
    }

    fn insert_blocking(&self, batch: &[NewArchived]) -> Result<(), StoreError> {
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
        let result = write(conn, batch);
        if result.is_err() {
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

fn write(conn: &mut Connection, batch: &[NewArchived]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut message = tx.prepare_cached(
            "INSERT INTO archive (uid, stamp_us, sender, sender_resource, recipient, \
             recipient_resource, kind, body, xml) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut party = tx.prepare_cached(
            "INSERT INTO archive_party_log (owner, msg, peer, domain, visible) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
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
            for p in &m.parties {
                party.execute(params![
                    p.owner,
                    id,
                    p.peer,
                    p.domain(),
                    i64::from(p.visible)
                ])?;
            }
        }
    }
    tx.commit()
}
