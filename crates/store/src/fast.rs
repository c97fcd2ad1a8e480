//! XEP-0484 FAST tokens of accounts' devices (see the migration for why `secret` is kept
//! as is). The store keeps rows; [`postern_accounts`]-level code decides what they mean.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// One stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastToken {
    pub secret: String,
    pub issued_ms: i64,
    pub expires_ms: i64,
}

impl Store {
    /// Stores a token for `owner`'s device `agent`.
    pub async fn fast_token_add(
        &self,
        owner: &str,
        agent: &str,
        mechanism: &str,
        token: &FastToken,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO fast_tokens (owner, agent, mechanism, secret, issued_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(owner)
        .bind(agent)
        .bind(mechanism)
        .bind(&token.secret)
        .bind(token.issued_ms)
        .bind(token.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The tokens of `owner`'s device `agent` for `mechanism` that expire after `now_ms`,
    /// newest first; expired ones of that device are deleted on the way.
    pub async fn fast_tokens(
        &self,
        owner: &str,
        agent: &str,
        mechanism: &str,
        now_ms: i64,
    ) -> Result<Vec<FastToken>, StoreError> {
        sqlx::query("DELETE FROM fast_tokens WHERE owner = $1 AND agent = $2 AND expires_ms <= $3")
            .bind(owner)
            .bind(agent)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT secret, issued_ms, expires_ms FROM fast_tokens \
             WHERE owner = $1 AND agent = $2 AND mechanism = $3 ORDER BY issued_ms DESC",
        )
        .bind(owner)
        .bind(agent)
        .bind(mechanism)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FastToken {
                    secret: r.try_get("secret")?,
                    issued_ms: r.try_get("issued_ms")?,
                    expires_ms: r.try_get("expires_ms")?,
                })
            })
            .collect()
    }

    /// Deletes `owner`'s device `agent` tokens issued before `before_ms` (a newer one was
    /// used), or with `secret` given, that one token.
    pub async fn fast_tokens_delete(
        &self,
        owner: &str,
        agent: &str,
        before_ms: i64,
        secret: Option<&str>,
    ) -> Result<(), StoreError> {
        let q = match secret {
            Some(s) => sqlx::query(
                "DELETE FROM fast_tokens WHERE owner = $1 AND agent = $2 AND secret = $3",
            )
            .bind(owner)
            .bind(agent)
            .bind(s.to_owned()),
            None => sqlx::query(
                "DELETE FROM fast_tokens WHERE owner = $1 AND agent = $2 AND issued_ms < $3",
            )
            .bind(owner)
            .bind(agent)
            .bind(before_ms),
        };
        q.execute(&self.pool).await?;
        Ok(())
    }
}

/// Part of deleting an account or changing its password: every token goes.
pub(crate) async fn delete_owner_data(
    conn: &mut sqlx::AnyConnection,
    owner: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM fast_tokens WHERE owner = $1")
        .bind(owner)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
