//! The `sql` account backend: the mail server's own table (Postfixadmin's `mailbox`,
//! iRedMail's, a Dovecot-SQL layout) on PostgreSQL or MySQL/MariaDB, read with the admin's
//! queries.
//!
//! - `password_query` takes the user name as its one parameter (`$1` on PostgreSQL, `?` on
//!   MySQL/MariaDB; bound, never pasted
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
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};

use postern_store::redact_url;

use super::Unavailable;
use crate::config::SqlConfig;

/// Accounts read from one listing at most.
const LIST_MAX: usize = 1_000_000;

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    MySql,
}

impl Dialect {
    /// How the queries write their one parameter.
    pub(crate) fn placeholder(self) -> &'static str {
        match self {
            Dialect::Postgres => "$1",
            Dialect::MySql => "?",
        }
    }
}

enum Pool {
    Pg(PgPool),
    My(MySqlPool),
}

/// The database and the admin's queries.
pub struct SqlBackend {
    pool: Pool,
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

/// The database `url` names, when this backend reads it.
pub(crate) fn check_url(url: &str) -> Result<Dialect, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Dialect::Postgres)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok(Dialect::MySql)
    } else {
        Err(format!(
            "`{}`: postgres://… (PostgreSQL) or mysql://… (MySQL, MariaDB) expected",
            redact_url(url)
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
        let bad = |e: sqlx::Error| format!("[accounts.sql] url: {e}");
        let pool = match check_url(&cfg.url)? {
            Dialect::Postgres => Pool::Pg(
                PgPoolOptions::new()
                    .max_connections(cfg.pool_size)
                    .acquire_timeout(cfg.timeout)
                    .connect_lazy(&cfg.url)
                    .map_err(bad)?,
            ),
            Dialect::MySql => Pool::My(
                MySqlPoolOptions::new()
                    .max_connections(cfg.pool_size)
                    .acquire_timeout(cfg.timeout)
                    .connect_lazy(&cfg.url.replacen("mariadb://", "mysql://", 1))
                    .map_err(bad)?,
            ),
        };
        Ok(SqlBackend {
            pool,
            shown: redact_url(&cfg.url),
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
        let query = sqlx::AssertSqlSafe(self.password_query.as_str());
        macro_rules! first_column {
            ($pool:expr) => {{
                let row = sqlx::query(query)
                    .bind(user)
                    .fetch_optional($pool)
                    .await
                    .map_err(|e| self.unavailable(format!("password_query: {e}")))?;
                match row {
                    None => Ok(None),
                    Some(row) => row.try_get::<Option<String>, _>(0).map_err(|e| {
                        self.unavailable(format!("password_query's first column: {e}"))
                    }),
                }
            }};
        }
        match &self.pool {
            Pool::Pg(pool) => first_column!(pool),
            Pool::My(pool) => first_column!(pool),
        }
    }

    /// Every user name `list_query` returns for `domain`, when there is one.
    pub(crate) fn list<'a>(
        &'a self,
        domain: &'a str,
    ) -> Option<impl std::future::Future<Output = Result<Vec<String>, Unavailable>> + Send + 'a>
    {
        let query = sqlx::AssertSqlSafe(self.list_query.as_deref()?);
        Some(async move {
            macro_rules! column {
                ($pool:expr) => {{
                    let rows = sqlx::query(query)
                        .bind(domain)
                        .fetch_all($pool)
                        .await
                        .map_err(|e| self.unavailable(format!("list_query: {e}")))?;
                    if rows.len() > LIST_MAX {
                        return Err(self.unavailable(format!("more than {LIST_MAX} accounts")));
                    }
                    rows.iter()
                        .map(|r| {
                            r.try_get::<String, _>(0).map_err(|e| {
                                self.unavailable(format!("list_query's first column: {e}"))
                            })
                        })
                        .collect()
                }};
            }
            match &self.pool {
                Pool::Pg(pool) => column!(pool),
                Pool::My(pool) => column!(pool),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(check_url("postgresql://db/mail"), Ok(Dialect::Postgres));
        assert_eq!(check_url("mysql://db/mail"), Ok(Dialect::MySql));
        assert_eq!(check_url("mariadb://db/mail"), Ok(Dialect::MySql));
        let e = check_url("sqlite://x:pw@db").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn tags_are_sha256_hex() {
        assert_eq!(tag("x").len(), 64);
        assert_ne!(tag("x"), tag("y"));
    }
}
