//! SCRAM-SHA-1 for the `sasl` crate's client with the salted password cached.
//!
//! A SCRAM client derives its salted password with PBKDF2 (Prosody and Postern ask for
//! 10 000 iterations) on every login, while the server only compares stored keys. The load
//! generator shares the machine with the server, so deriving on every login would measure
//! the client: like a real client that remembers its derived keys, it derives once per
//! (password, salt, iterations) and reuses the result. `--no-scram-cache` turns this off.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The `sasl` crate's HMAC error type (hmac 0.12), which it does not re-export.
use crypto_common::InvalidLength;
use sasl::common::Password;
use sasl::common::scram::{DeriveError, ScramProvider, Sha1};
use sasl::secret;

/// Entries kept at most; beyond it derivations are simply not cached.
const MAX_ENTRIES: usize = 1_000_000;

type Key = (String, Vec<u8>, u32);

/// The cache has to be a static: `ScramProvider::derive` is an associated function without
/// a receiver, so a provider cannot carry state.
static CACHE: OnceLock<Mutex<HashMap<Key, Vec<u8>>>> = OnceLock::new();

/// SCRAM-SHA-1 that looks the salted password up before deriving it.
pub struct CachedSha1;

impl ScramProvider for CachedSha1 {
    type Secret = secret::Pbkdf2Sha1;

    fn name() -> &'static str {
        Sha1::name()
    }

    fn hash(data: &[u8]) -> Vec<u8> {
        Sha1::hash(data)
    }

    fn hmac(data: &[u8], key: &[u8]) -> Result<Vec<u8>, InvalidLength> {
        Sha1::hmac(data, key)
    }

    fn derive(password: &Password, salt: &[u8], iterations: u32) -> Result<Vec<u8>, DeriveError> {
        let Password::Plain(plain) = password else {
            return Sha1::derive(password, salt, iterations);
        };
        let cache = CACHE.get_or_init(Mutex::default);
        let key = (plain.clone(), salt.to_vec(), iterations);
        if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let salted = Sha1::derive(password, salt, iterations)?;
        if let Ok(mut c) = cache.lock()
            && c.len() < MAX_ENTRIES
        {
            c.insert(key, salted.clone());
        }
        Ok(salted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached provider derives what the plain one does, first from PBKDF2, then from the
    /// cache.
    #[test]
    fn cached_derivation_equals_plain() -> Result<(), DeriveError> {
        let password = Password::Plain("pencil".into());
        let salt = b"QSXCR+Q6sek8bf92";
        let expected = Sha1::derive(&password, salt, 4096)?;
        assert_eq!(CachedSha1::derive(&password, salt, 4096)?, expected);
        let key = ("pencil".to_owned(), salt.to_vec(), 4096);
        let cached = CACHE
            .get()
            .and_then(|c| c.lock().ok().and_then(|c| c.get(&key).cloned()));
        assert_eq!(cached.as_ref(), Some(&expected));
        assert_eq!(CachedSha1::derive(&password, salt, 4096)?, expected);
        assert_ne!(CachedSha1::derive(&password, salt, 4097)?, expected);
        Ok(())
    }
}
