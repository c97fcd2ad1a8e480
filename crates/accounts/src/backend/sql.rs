//! The `sql` account backend: the mail server's own table (Postfixadmin's `mailbox`,
//! iRedMail's, a Dovecot-SQL layout) on PostgreSQL, read with the admin's queries.
//!
//! - `password_query` takes the user name as its one parameter (`$1`, bound, never pasted
//!   into the text: nothing in a user name is SQL) and returns the password hash in its
//!   first column; no row is an unknown (or inactive) account. The hash is checked here,
//!   natively, in any scheme `legacy` reads (`{SHA512-CRYPT}`, a bare `$6$…`, `{BLF-CRYPT}`,
//!   `{ARGON2ID}`, `{SSHA512}`, …), on the hashing threads.
//! - `list_query` (optional) takes the domain as its one parameter and returns user names.
//!
//! This backend exposes the hash, so what it confirmed is remembered as a tag (SHA-256 of
//! the hash): a SCRAM or FAST login reads the hash again and is honoured only while it is
//! the same, so a password changed in the database stops every mechanism at once.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::Unavailable;
use crate::config::SqlConfig;

/// Accounts read from one listing at most.
const LIST_MAX: usize = 1_000_000;

/// The database and the admin's queries.
pub struct SqlBackend {
    pool: PgPool,
    /// The URL without its password, for logs.
    shown: String,
    password_query: String,
    list_query: Option<String>,
    sync_interval: Duration,
}

impl std::fmt::Debug for SqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBackend")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for SqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SQL {}", self.shown)
    }
}

/// The URL as shown in logs: no password.
pub(crate) fn shown(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) => {
            let host = &url[at + 1..];
            let user = rest[..rest.len() - host.len() - 1]
                .split(':')
                .next()
                .unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Whether `url` names a database this backend reads (PostgreSQL).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(format!(
            "`{}`: only PostgreSQL (postgres://…) is supported yet",
            shown(url)
        ))
    }
}

/// What the backend's hashes are remembered by.
pub(crate) fn tag(hash: &str) -> String {
    Sha256::digest(hash.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SqlBackend {
    pub fn new(cfg: &SqlConfig) -> Result<SqlBackend, String> {
        check_url(&cfg.url)?;
        let pool = PgPoolOptions::new()
            .max_connections(cfg.pool_size)
            .acquire_timeout(cfg.timeout)
            .connect_lazy(&cfg.url)
            .map_err(|e| format!("[accounts.sql] url: {e}"))?;
        Ok(SqlBackend {
            pool,
            shown: shown(&cfg.url),
            password_query: cfg.password_query.clone(),
            list_query: cfg.list_query.clone(),
            sync_interval: cfg.sync_interval,
        })
    }

    fn unavailable(&self, reason: impl Into<String>) -> Unavailable {
        Unavailable::new(self, reason)
    }

    pub(crate) fn sync_interval(&self) -> Option<Duration> {
        self.list_query.as_ref().map(|_| self.sync_interval)
    }

    /// The stored hash of `user`; `None` when the query returns no row (or NULL).
    pub(crate) async fn hash_of(&self, user: &str) -> Result<Option<String>, Unavailable> {
        // The admin's query from the config, never text from a peer: the user name is bound.
        let row = sqlx::query(sqlx::AssertSqlSafe(self.password_query.as_str()))
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.unavailable(format!("password_query: {e}")))?;
        let Some(row) = row else {
            return Ok(None);
        };
        row.try_get::<Option<String>, _>(0)
            .map_err(|e| self.unavailable(format!("password_query's first column: {e}")))
    }

    /// Every user name `list_query` returns for `domain`, when there is one.
    pub(crate) fn list<'a>(
        &'a self,
        domain: &'a str,
    ) -> Option<impl std::future::Future<Output = Result<Vec<String>, Unavailable>> + Send + 'a>
    {
        let query = self.list_query.as_ref()?;
        Some(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(query.as_str()))
                .bind(domain)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.unavailable(format!("list_query: {e}")))?;
            if rows.len() > LIST_MAX {
                return Err(self.unavailable(format!("more than {LIST_MAX} accounts")));
            }
            rows.iter()
                .map(|r| {
                    r.try_get::<String, _>(0)
                        .map_err(|e| self.unavailable(format!("list_query's first column: {e}")))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            shown("postgres://mail:s3cret@db.example:5432/mail"),
            "postgres://mail@db.example:5432/mail"
        );
        assert_eq!(shown("postgres://db/mail"), "postgres://db/mail");
        assert!(check_url("postgresql://db/mail").is_ok());
        assert!(check_url("mysql://db/mail").is_err());
    }

    #[test]
    fn tags_are_sha256_hex() {
        assert_eq!(tag("x").len(), 64);
        assert_ne!(tag("x"), tag("y"));
    }
}
