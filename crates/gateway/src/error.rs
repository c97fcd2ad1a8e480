//! The crate's error type, for setup and admin operations. Mail processing does not
//! return errors: every outcome there is an SMTP reply ([`crate::Reply`]).

/// What can fail outside the SMTP conversation.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A file or directory operation.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing, with the path.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The server key is missing, unreadable or too weak.
    #[error("server key: {0}")]
    ServerKey(String),
    /// An OpenPGP operation failed.
    #[error(transparent)]
    Pgp(#[from] postern_pgp::PgpError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] postern_store::StoreError),
    /// The account store failed.
    #[error(transparent)]
    Accounts(#[from] postern_accounts::AccountError),
    /// The WKD listener's TLS setup failed (bad key, no domain).
    #[error("WKD TLS: {0}")]
    Tls(String),
    /// No key or quarantine item matches.
    #[error("not found: {0}")]
    NotFound(String),
    /// A blocking task (key generation, crypto) panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl GatewayError {
    /// An I/O error with context.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        GatewayError::Io {
            what: what.into(),
            source,
        }
    }
}
