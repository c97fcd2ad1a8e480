//! Messages held for users who are offline (XEP-0160), delivered and deleted at their next
//! login. Stored as serialized stanzas: the store does not need to understand them.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// A stored message. `id` is increasing, so it orders messages and names them for deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Row id, increasing with insertion order.
    pub id: i64,
    /// When the server received the message, milliseconds since the Unix epoch (for the
    /// XEP-0203 delay stamp).
    pub stamp_ms: i64,
    /// The message stanza as XML.
    pub xml: String,
}

/// How many ids go into one `DELETE ... IN (...)`: well under SQLite's and PostgreSQL's
/// bind-parameter limits.
const DELETE_CHUNK: usize = 500;

impl Store {
    /// Stores a message for `owner` unless they already hold `max_per_owner` messages, in
    /// which case nothing is stored and `false` is returned (the caller bounces the message).
    ///
    /// The count and the insert are one statement. Under PostgreSQL's read-committed
    /// isolation, concurrent pushes for the same owner may each see room and overshoot the
    /// limit by a few; the limit guards against floods, not exact quotas.
    pub async fn offline_push(
        &self,
        owner: &str,
        stamp_ms: i64,
        xml: &str,
        max_per_owner: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO offline (owner, stamp_ms, xml) SELECT $1, $2, $3 \
             WHERE (SELECT COUNT(*) FROM offline WHERE owner = $1) < $4",
        )
        .bind(owner)
        .bind(stamp_ms)
        .bind(xml)
        .bind(max_per_owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// All messages held for `owner`, oldest first. They stay stored until
    /// [`Store::offline_delete`], so a connection lost during delivery loses nothing.
    pub async fn offline_fetch(&self, owner: &str) -> Result<Vec<OfflineMessage>, StoreError> {
        let rows =
            sqlx::query("SELECT id, stamp_ms, xml FROM offline WHERE owner = $1 ORDER BY id")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(OfflineMessage {
                    id: r.try_get("id")?,
                    stamp_ms: r.try_get("stamp_ms")?,
                    xml: r.try_get("xml")?,
                })
            })
            .collect()
    }

    /// Deletes delivered messages. Ids of other owners are ignored, so a caller cannot delete
    /// someone else's messages by mistake.
    pub async fn offline_delete(&self, owner: &str, ids: &[i64]) -> Result<(), StoreError> {
        for chunk in ids.chunks(DELETE_CHUNK) {
            let placeholders = (2..chunk.len() + 2)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("DELETE FROM offline WHERE owner = $1 AND id IN ({placeholders})");
            // Built from numbered placeholders only; the ids themselves are bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }
}
