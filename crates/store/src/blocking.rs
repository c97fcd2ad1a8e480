//! XEP-0191 blocklists: the addresses an account blocks, as JID strings the server has
//! normalised (the store does not interpret them).

use sqlx::Row as _;

use crate::{Store, StoreError};

impl Store {
    /// Every address `owner` blocks, sorted.
    pub async fn blocklist(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT jid FROM blocklist WHERE owner = $1 ORDER BY jid")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("jid").map_err(StoreError::from))
            .collect()
    }

    /// Every account that blocks anything (so a login of any other needs no query).
    pub async fn blocklist_owners(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT owner FROM blocklist")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("owner").map_err(StoreError::from))
            .collect()
    }

    /// Adds `jids` to `owner`'s blocklist (those already there stay), in one transaction.
    pub async fn block(&self, owner: &str, jids: &[String]) -> Result<(), StoreError> {
        self.each_jid(
            "INSERT INTO blocklist (owner, jid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            owner,
            jids,
        )
        .await
    }

    /// Removes `jids` from `owner`'s blocklist; with none given, empties it.
    pub async fn unblock(&self, owner: &str, jids: &[String]) -> Result<(), StoreError> {
        if jids.is_empty() {
            sqlx::query("DELETE FROM blocklist WHERE owner = $1")
                .bind(owner)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        self.each_jid(
            "DELETE FROM blocklist WHERE owner = $1 AND jid = $2",
            owner,
            jids,
        )
        .await
    }

    /// Runs `sql` (`$1` owner, `$2` jid) for each of `jids`, in one transaction.
    async fn each_jid(
        &self,
        sql: &'static str,
        owner: &str,
        jids: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for jid in jids {
            sqlx::query(sql)
                .bind(owner)
                .bind(jid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Part of deleting an account.
pub(crate) async fn delete_owner_data(
    conn: &mut sqlx::AnyConnection,
    owner: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM blocklist WHERE owner = $1")
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
