//! Postern's OpenPGP layer: pure operations on certs and messages, and PGP/MIME
//! (RFC 3156) on whole mails. No SMTP, no database: `crates/gateway` decides
//! *what* to do with a mail (policy, rules), stores certs, and calls this crate to
//! *do* it.
//!
//! # Layout (one concern per file)
//!
//! - [`keygen`]: generating a user's cert (Curve25519 or RSA, v4 or v6, expiry).
//! - [`cert`]: parsing keyrings, armoring, addresses, choosing the key to encrypt
//!   to, revocation.
//! - [`atrest`]: sealing secret certs with the server key for storage.
//! - [`autocrypt`]: the minimal cert an `Autocrypt:` header carries.
//! - [`encrypt`](mod@encrypt), [`decrypt`](mod@decrypt), [`sign`], [`verify`]: the OpenPGP operations, streaming
//!   where the gateway streams.
//! - [`pgpmime`]: whole mails: build `multipart/encrypted` and `multipart/signed`,
//!   open them again, recognise inline PGP, RFC 9788 protected headers.
//! - `mime` (private): byte-exact header/multipart splitting under `pgpmime`.
//! - [`mail`]: mail-parser behind a bound on nested messages; every decode of a mail
//!   (here and in the gateway) goes through [`mail::parse`].
//!
//! # The path of an outbound mail
//!
//! The gateway picks each recipient's cert with [`select_encryption_cert`],
//! unseals the sender's secret cert with [`unseal`], and calls
//! [`encrypt_message`] (or [`sign_message`]); the Content-* headers and body become
//! the encrypted inner part, the routing headers stay outside.
//!
//! # The path of an inbound mail
//!
//! [`detect`] says whether a mail carries OpenPGP; [`decrypt_message`] returns an
//! [`OpenedMessage`]: the mail as the sender wrote it, the cert that decrypted it
//! and one [`Verification`] per signature ([`summarize`] folds them into one
//! verdict for a header). [`verify_message`] does the same for signed-only mail.
//!
//! All validity decisions use Sequoia's `StandardPolicy` at the current time.

pub mod atrest;
pub mod autocrypt;
pub mod cert;
pub mod decrypt;
pub mod encrypt;
pub mod error;
pub mod keygen;
pub mod mail;
mod mime;
pub mod pgpmime;
pub mod sign;
pub mod verify;

pub use atrest::{ServerKey, seal, unlock, unseal};
pub use autocrypt::autocrypt_keydata;
pub use cert::{
    RevocationReason, addresses, armored_public, armored_secret, can_encrypt, is_revoked,
    parse_certs, revoke, select_encryption_cert,
};
pub use decrypt::{DecryptReport, decrypt, decrypt_to};
pub use encrypt::{EncryptWriter, encrypt, encrypt_writer};
pub use error::{PgpError, Result};
pub use keygen::{KeyAlgorithm, KeyProfile, KeySpec, generate};
pub use pgpmime::{
    OpenedMessage, PgpFormat, decrypt_message, detect, encrypt_message, sign_message,
    signed_content_type, verify_message,
};
pub use sign::{DetachedSignature, sign_detached};
pub use verify::{Verification, summarize, verify_detached, verify_inline};

/// Sequoia's cert, fingerprint and key handle types, re-exported so callers need
/// no direct dependency on `sequoia-openpgp` for the common cases.
pub use sequoia_openpgp::{Cert, Fingerprint, KeyHandle};
