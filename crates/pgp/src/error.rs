//! The crate's one error type.
//!
//! Sequoia reports failures as `anyhow::Error`; we keep it as the source of
//! [`PgpError::OpenPgp`] so the gateway can log the whole chain, and add our own
//! variants for the conditions a caller must tell apart (no key, locked key,
//! malformed MIME) to answer a mail correctly.

use sequoia_openpgp::Fingerprint;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum PgpError {
    /// Sequoia refused the operation or the input (bad packet, wrong key, tampering...).
    #[error("OpenPGP: {0:#}")]
    OpenPgp(#[from] anyhow::Error),

    /// I/O on a caller's reader or writer failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    /// The input held no certificate at all.
    #[error("no OpenPGP certificate found in the input")]
    NoCertificate,

    /// The certificate has no secret key material where one is needed.
    #[error("certificate {0} has no secret key")]
    NotSecret(Fingerprint),

    /// Secret key material is password-protected; unlock (or unseal) it first.
    #[error("secret key of {0} is locked")]
    SecretKeyLocked(Fingerprint),

    /// No valid (alive, not revoked, policy-compliant) encryption-capable key.
    #[error("certificate {0} has no usable encryption key")]
    NoEncryptionKey(Fingerprint),

    /// No valid signing-capable secret key.
    #[error("certificate {0} has no usable signing key")]
    NoSigningKey(Fingerprint),

    /// Encryption was asked for with an empty recipient list.
    #[error("no recipients")]
    NoRecipients,

    /// None of the given secret keys can decrypt the message.
    #[error("no key to decrypt this message")]
    NoDecryptionKey,

    /// The server key used to seal secret keys at rest is too short to be safe.
    #[error("server key must be at least {min} bytes, got {got}")]
    WeakServerKey {
        /// Minimum accepted length in bytes.
        min: usize,
        /// Length supplied.
        got: usize,
    },

    /// The cert has no valid user ID for the address a caller needs (Autocrypt).
    #[error("certificate {0} has no valid user ID for {1}")]
    NoUserIdFor(Fingerprint, String),

    /// The user ID has no e-mail address in it.
    #[error("user ID {0:?} holds no e-mail address")]
    NoAddress(String),

    /// An unknown algorithm or profile name (from config or CLI).
    #[error("unknown {kind} {name:?}")]
    UnknownName {
        /// What was being named ("algorithm", "profile").
        kind: &'static str,
        /// The name given.
        name: String,
    },

    /// The mail is not MIME we can process (missing boundary, wrong structure...).
    #[error("malformed MIME: {0}")]
    Mime(&'static str),

    /// The mail carries no OpenPGP content of the kind asked for.
    #[error("no OpenPGP {0} content in this mail")]
    NotPgp(&'static str),
}

/// Result alias used throughout the crate.
pub type Result<T, E = PgpError> = std::result::Result<T, E>;
