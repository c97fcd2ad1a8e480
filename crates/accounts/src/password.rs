//! Turning a password into what we store, and checking a password against it. CPU-heavy on
//! purpose (argon2id, PBKDF2): callers run these on the hashing pool (`hash_pool.rs`).
//!
//! Passwords are used as their UTF-8 bytes, without SASLprep (RFC 4013): the same bytes go
//! into argon2id (PLAIN) and PBKDF2 (SCRAM), so both mechanisms accept the same passwords.
//! A client that applies SASLprep changes only unusual Unicode (e.g. non-ASCII spaces), so
//! such a password may work over PLAIN and not over SCRAM; ASCII passwords are unaffected.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use postern_store::{Credentials, ScramCredential};
use rand::Rng as _;

use crate::scram::{ScramHash, ScramKeys};

/// An argon2id string with default parameters and random salt and output, so no password
/// matches it (short of a hash collision). Unknown and
/// disabled users are checked against it so that a failed login takes as long whether or
/// not the account exists. Its parameters must match [`Argon2::default`]; a test checks that.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$w0Q3kE3n8cKk0zW8i5Y2Xg$HbfPiE3sWmrtlZ0ftpw1HVd/k+0tKmRHPmMnCyZLAjE";

/// Hashing failed (the argon2 crate reports errors we do not expect with default
/// parameters, e.g. no OS randomness).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Derives everything we store for a password: argon2id PHC string and SCRAM keys for each
/// hash, each with its own random 16-byte salt.
pub(crate) fn credentials_for(password: &str) -> Result<Credentials, HashError> {
    let phc: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| HashError(e.to_string()))?;
    let scram = |hash: ScramHash| {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let k = ScramKeys::derive(hash, password.as_bytes(), &salt, hash.default_iterations());
        ScramCredential {
            salt: k.salt,
            iterations: k.iterations,
            stored_key: k.stored_key,
            server_key: k.server_key,
        }
    };
    Ok(Credentials {
        password_hash: phc.to_string(),
        scram_sha1: scram(ScramHash::Sha1),
        scram_sha256: scram(ScramHash::Sha256),
        scram_sha512: scram(ScramHash::Sha512),
    })
}

/// The credentials of an imported account (`stored`: a `legacy` hash): the hash, and SCRAM
/// keys nobody knows the password of (random), never handed out while the hash is imported.
pub(crate) fn imported(stored: &str) -> Credentials {
    let scram = |hash: ScramHash| {
        let random = |n| {
            let mut v = vec![0u8; n];
            rand::rng().fill_bytes(&mut v);
            v
        };
        let len = hash.output_len();
        ScramCredential {
            salt: random(16),
            iterations: hash.default_iterations(),
            stored_key: random(len),
            server_key: random(len),
        }
    };
    Credentials {
        password_hash: stored.to_owned(),
        scram_sha1: scram(ScramHash::Sha1),
        scram_sha256: scram(ScramHash::Sha256),
        scram_sha512: scram(ScramHash::Sha512),
    }
}

/// Whether `password` is the one `credentials` were derived from, by its SCRAM-SHA-256
/// StoredKey (4096 PBKDF2 rounds, ~1 ms) rather than argon2id (~20 ms): for an external
/// backend's login, which has just confirmed the password and only asks whether it changed.
/// The StoredKey is what SCRAM already keeps, so this reveals nothing argon2id would not.
pub(crate) fn same_as_scram(credentials: &Credentials, password: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let c = &credentials.scram_sha256;
    let derived = ScramKeys::derive(
        ScramHash::Sha256,
        password.as_bytes(),
        &c.salt,
        c.iterations,
    );
    bool::from(derived.stored_key.ct_eq(&c.stored_key))
}

/// Checks a password against a stored hash: ours (argon2id) or an imported one.
pub(crate) fn matches(stored: &str, password: &str) -> bool {
    if crate::legacy::is_legacy(stored) {
        // At least the time of our own check too: an imported SSHA512 or SHA-crypt hash
        // alone answers in microseconds, which would tell an existing account from an
        // unknown one (checked against DUMMY_HASH).
        let ok = crate::legacy::verify(stored, password);
        let _ = verify(DUMMY_HASH, password);
        ok
    } else {
        verify(stored, password)
    }
}

/// Checks a password against an argon2 PHC string. An unparsable hash never matches (and
/// is logged: it means the row was damaged).
pub(crate) fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "stored password hash does not parse");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_has_the_parameters_of_real_hashes() {
        let real = credentials_for("x").expect("hash").password_hash;
        let params = |s: &str| s.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(DUMMY_HASH), params(&real));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify(DUMMY_HASH, ""));
    }

    #[test]
    fn the_scram_key_tells_the_same_password() {
        let c = credentials_for("pencil").expect("hash");
        assert!(same_as_scram(&c, "pencil"));
        assert!(!same_as_scram(&c, "Pencil"));
        assert!(!same_as_scram(&imported("{SSHA512}x"), "pencil"));
    }

    #[test]
    fn credentials_verify_and_use_fresh_salts() {
        let a = credentials_for("pencil").expect("hash");
        let b = credentials_for("pencil").expect("hash");
        assert!(a.password_hash.starts_with("$argon2id$"));
        assert!(verify(&a.password_hash, "pencil"));
        assert!(!verify(&a.password_hash, "Pencil"));
        assert!(!verify("not a phc string", "pencil"));
        assert_ne!(a.password_hash, b.password_hash);
        assert_ne!(a.scram_sha256.salt, b.scram_sha256.salt);
        assert_ne!(a.scram_sha1.salt, a.scram_sha256.salt);
        assert_eq!(a.scram_sha1.salt.len(), 16);
        assert_eq!(a.scram_sha1.stored_key.len(), 20);
        assert_eq!(a.scram_sha256.server_key.len(), 32);
        assert_eq!(a.scram_sha512.stored_key.len(), 64);
        assert_eq!(a.scram_sha512.iterations, 10_000);
        let derived = ScramKeys::derive(ScramHash::Sha256, b"pencil", &a.scram_sha256.salt, 4096);
        assert_eq!(derived.stored_key, a.scram_sha256.stored_key);
    }
}
