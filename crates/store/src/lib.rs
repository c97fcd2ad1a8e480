//! Database access for Postern.
//!
//! One set of queries serves both backends through the sqlx `Any` driver: SQLite (the embedded
//! default, one file, WAL) and PostgreSQL (several nodes sharing one database). Every query
//! uses `$1, $2, ...` placeholders in order of first appearance, which both dialects accept,
//! and only the column types the `Any` driver decodes identically on both: `BIGINT`/`INTEGER`
//! (booleans are 0/1), `TEXT` (binary values are base64). The schema lives in two migration
//! directories, `migrations/sqlite` and `migrations/postgres`, that differ only where the
//! dialects must; the URL scheme picks one.
//!
//! Layout: this file opens the pool and runs migrations; each table family has a module that
//! adds methods to [`Store`]:
//!
//! - [`accounts`]: account rows with their credentials (hashes only, never passwords),
//! - [`archive`]: the message archive (XEP-0313 MAM and the admin chat log), full-text
//!   searchable,
//! - [`blocking`]: XEP-0191 blocklists,
//! - [`groups`]: named groups of addresses (for the mail gateway's rules),
//! - [`roster`]: rosters with XEP-0237 versions, and pending inbound subscription requests,
//! - [`offline`]: messages held for users who are offline,
//! - [`pgp_certs`]: OpenPGP certificates of the mail gateway (secrets sealed by the caller),
//! - [`uploads`]: XEP-0363 upload slots and stored files (the files are on disk), with quotas.
//!
//! Transactions that write start with [`Store::begin_write`]: on SQLite `BEGIN IMMEDIATE`, so
//! they take the write lock at once and wait for it under the busy timeout. A deferred
//! transaction, even one whose first statement writes, can fail with `SQLITE_BUSY_SNAPSHOT`
//! when another connection commits while it waits (seen under the archive's write load).

pub mod accounts;
pub mod archive;
mod archive_sqlite;
pub mod blocking;
pub mod fast;
pub mod groups;
pub mod offline;
pub mod pgp_certs;
pub mod roster;
#[doc(hidden)]
pub mod testing;
pub mod uploads;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use accounts::{AccountRow, AccountSummary, Confirmation, Credentials, ScramCredential};
pub use archive::{
    ArchiveFilter, ArchivePrefs, Archived, AuditEntry, Conversation, Hold, NewArchived, Page,
    Party, Selection, With,
};
pub use fast::FastToken;
pub use offline::OfflineMessage;
pub use pgp_certs::PgpCertRow;
pub use roster::{RosterItem, Subscription};
pub use uploads::{QuotaExceeded, Upload, UploadFilter, UploadQuota, UploadState};

/// How long (ms) a SQLite connection waits for another writer before giving up. Writers are
/// short (a few rows), so a long wait means something is stuck rather than busy.
pub(crate) const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

/// What every SQLite connection runs first (the pool's and the archive writer's own; the
/// busy timeout is set beside them). The archive's indexes outgrow SQLite's 2 MB default page
/// cache early (a million messages: some 100 MB of them): a page evicted is read again
/// through a system call at the next write into it. A 64 MiB cache per connection (allocated
/// as used) and reads through mmap keep them in memory; at 20,000 messages it is already
/// 95 -> 90 us per archived message (`archive_bench 20000 512`).
pub(crate) const SQLITE_PRAGMAS: [&str; 5] = [
    "PRAGMA foreign_keys = ON",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA cache_size = -65536",
    "PRAGMA mmap_size = 1073741824",
];

/// Errors from the store. Callers mostly map them to an internal-server-error; the variants
/// exist so that logs say which layer failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names a database we do not support (only `sqlite:` and `postgres:`).
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    /// The directory for a SQLite file could not be created.
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        /// The directory we tried to create.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or failed a query.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A row holds a value this version cannot read (edited by hand, or written by a newer
    /// version): we refuse it rather than guess.
    #[error("corrupt value in table {table}: {detail}")]
    Corrupt {
        /// The table holding the value.
        table: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The archive's native SQLite write path failed.
    #[error("database error: {0}")]
    Native(String),
    /// A group operation named a group that does not exist.
    #[error("no such group: {0}")]
    NoSuchGroup(String),
    /// A message to archive names a party that is neither its sender nor its recipient.
    #[error("archive party {0} is neither the sender nor the recipient")]
    StrayParty(String),
}

/// Which database engine a [`Store`] talks to. Exposed so that other crates can pick a
/// dialect-specific query in the rare place where no portable one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (embedded default).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Picks the backend from a database URL's scheme.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// Handle to the database. Cloning is cheap (the pool is reference counted), so every task
/// that needs the database holds its own clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The archive's own write path on a SQLite file ([`archive_sqlite`]).
    native: Option<archive_sqlite::NativeWriter>,
    /// The archive's numbers of bare JIDs, as far as the writer has seen them.
    jids: archive::JidNumbers,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Native(e.to_string())
    }
}

impl Store {
    /// Opens a pool for `url` (`sqlite://path/to.db` or `postgres://user:pw@host/db`) and brings
    /// the schema up to date.
    ///
    /// A SQLite file and its directory are created when missing (unless the URL sets its own
    /// `mode=`); every SQLite connection runs in WAL mode (readers do not block the writer),
    /// with foreign keys on and a busy timeout so concurrent writers queue instead of failing.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let pool = match backend {
            Backend::Sqlite => connect_sqlite(url).await?,
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect(url)
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => {
                // sqlx takes no migration lock on SQLite: two processes opening a fresh file
                // at once (two `postern account add`) race, and the loser's migration
                // transaction fails and rolls back. Once the winner committed, a retry finds
                // the schema applied.
                let migrator = sqlx::migrate!("./migrations/sqlite");
                let mut attempt = 0;
                while let Err(e) = migrator.run(&pool).await {
                    attempt += 1;
                    if attempt == 5 {
                        return Err(e.into());
                    }
                    tracing::debug!(error = %e, attempt, "migration raced; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
            }
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        tracing::debug!(?backend, "store ready");
        let native = match backend {
            Backend::Sqlite => sqlite_file(url).map(|p| archive_sqlite::NativeWriter::new(&p)),
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            backend,
            native,
            jids: archive::JidNumbers::default(),
        })
    }

    /// Which engine this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that will write: it holds SQLite's write lock from its first statement.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// The connection pool, for crates that add their own tables and queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Opens a SQLite pool with the pragmas every connection needs.
async fn connect_sqlite(url: &str) -> Result<AnyPool, StoreError> {
    let SqliteUrl {
        path,
        query,
        memory,
    } = SqliteUrl::parse(url);
    let has_mode = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("mode=")));
    let url = match (has_mode, query) {
        (true, _) => url.to_owned(),
        (false, Some(_)) => format!("{url}&mode=rwc"),
        (false, None) => format!("{url}?mode=rwc"),
    };
    if !memory && !path.contains('%') {
        create_parent_dir(path)?;
    }

    let options = AnyPoolOptions::new().after_connect(|conn, _meta| {
        Box::pin(async move {
            let timeout = format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}");
            sqlx::query(sqlx::AssertSqlSafe(timeout))
                .execute(&mut *conn)
                .await?;
            for pragma in SQLITE_PRAGMAS {
                sqlx::query(pragma).execute(&mut *conn).await?;
            }
            Ok(())
        })
    });
    let options = if memory {
        // Every connection to `:memory:` is its own database: keep exactly one, forever.
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        options.max_connections(8)
    };
    Ok(options.connect(&url).await?)
}

/// The parts of a `sqlite:` URL.
struct SqliteUrl<'a> {
    path: &'a str,
    query: Option<&'a str>,
    memory: bool,
}

impl<'a> SqliteUrl<'a> {
    fn parse(url: &'a str) -> Self {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let path = base
            .strip_prefix("sqlite://")
            .or_else(|| base.strip_prefix("sqlite:"))
            .unwrap_or_default();
        let memory = path.is_empty()
            || path == ":memory:"
            || query.is_some_and(|q| q.contains("mode=memory"));
        SqliteUrl {
            path,
            query,
            memory,
        }
    }
}

/// The file of a SQLite URL, `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let u = SqliteUrl::parse(url);
    (!u.memory && !u.path.contains('%')).then(|| std::path::PathBuf::from(u.path))
}

/// Creates the directory that will hold a SQLite file, so a fresh data dir just works.
fn create_parent_dir(path: &str) -> Result<(), StoreError> {
    let Some(parent) = std::path::Path::new(path).parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() || parent.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
        path: parent.display().to_string(),
        source,
    })
}

/// Removes a password from a URL before it goes into an error message or a log (also
/// used for the account backends' database URLs).
pub fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    // A password in the query (`?password=…`, which sqlx also reads).
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

/// Converts a 0/1 column to a bool. Anything else nonzero counts as true, like SQL does.
fn int_bool(v: i64) -> bool {
    v != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("sqlite://x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("sqlite::memory:").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/d").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/d").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::from_url("mysql://u:secret@h/d").is_err());
    }

    #[test]
    fn redacts_password() {
        assert_eq!(redact_url("mysql://u:secret@h/d"), "mysql://u:***@h/d");
        assert_eq!(redact_url("mysql://h/d"), "mysql://h/d");
        assert_eq!(
            redact_url("postgres://h/d?sslmode=require&password=s3cret"),
            "postgres://h/d?sslmode=require&password=***"
        );
    }
}
