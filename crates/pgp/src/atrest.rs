//! Secret keys at rest: sealing a secret cert with the server key.
//!
//! **What**: every secret key packet is encrypted with OpenPGP's own secret-key
//! protection (RFC 9580 §5.5.3, S2K usage 253: AES-256 in OCB mode, the key packet
//! bound as associated data), using the server key as the passphrase.
//!
//! **Why this and not a home-made AEAD wrapper**: the sealed blob is still a
//! standard transferable secret key. The public half (fingerprint, user IDs,
//! expiry) stays readable without the server key, so listing and selecting keys
//! never decrypts anything; the admin can recover a key from a database dump with
//! an OpenPGP tool and the server key as passphrase (one that reads usage 253:
//! Sequoia 2 / `sq` 1.x; not GnuPG 2.2); and no crypto of ours is involved.
//! AEAD rather than CFB (usage 254) even for v4 keys, because CFB with a SHA-1
//! checksum is malleable and a stored key is exactly what an attacker with
//! database write access would tamper with.
//!
//! **Why a cheap S2K**: the server key is required to be ≥ 32 bytes of secret
//! (e.g. `head -c 32 /dev/urandom | base64` in a file), so password stretching
//! would add no strength, only ~350 ms per key per unseal with Sequoia's default.
//! We use iterated+salted SHA-256 with the smallest count (1024 bytes).

use std::fmt;

use sequoia_openpgp::Cert;
use sequoia_openpgp::cert::amalgamation::key::PrimaryKey;
use sequoia_openpgp::crypto::{Password, S2K};
use sequoia_openpgp::packet::Packet;
use sequoia_openpgp::packet::key::SecretKeyMaterial;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::types::{AEADAlgorithm, HashAlgorithm, SymmetricAlgorithm};

use crate::error::{PgpError, Result};

/// The server-wide secret that seals users' secret keys. Its `Debug` never
/// shows the secret.
#[derive(Clone)]
pub struct ServerKey(Password);

impl ServerKey {
    /// Minimum length in bytes: below this, a cheap S2K is not safe.
    pub const MIN_LEN: usize = 32;

    /// Wraps the secret exactly as given (the caller trims a trailing newline from
    /// a key file if it wants to).
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < Self::MIN_LEN {
            return Err(PgpError::WeakServerKey {
                min: Self::MIN_LEN,
                got: secret.len(),
            });
        }
        Ok(ServerKey(Password::from(secret)))
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

/// Seals a secret cert for storage: returns the binary transferable secret key with
/// every secret key packet encrypted under `server_key`.
///
/// Fails with [`PgpError::SecretKeyLocked`] if some secret is already
/// password-protected ([`unlock`] it first) and [`PgpError::NotSecret`] for a
/// public cert.
pub fn seal(cert: &Cert, server_key: &ServerKey) -> Result<Vec<u8>> {
    if !cert.is_tsk() {
        return Err(PgpError::NotSecret(cert.fingerprint()));
    }
    let mut packets: Vec<Packet> = Vec::new();
    for ka in cert.keys().secret() {
        let (public, secret) = ka.key().clone().take_secret();
        let SecretKeyMaterial::Unencrypted(plain) = secret else {
            return Err(PgpError::SecretKeyLocked(cert.fingerprint()));
        };
        let sealed = plain.encrypt_with(
            &public,
            S2K::new_iterated(HashAlgorithm::SHA256, 1024)?,
            SymmetricAlgorithm::AES256,
            Some(AEADAlgorithm::OCB),
            &server_key.0,
        )?;
        let (key, _) = public.add_secret(sealed.into());
        packets.push(if ka.primary() {
            key.role_into_primary().into()
        } else {
            key.role_into_subordinate().into()
        });
    }
    let sealed = cert.clone().insert_packets(packets)?.0;
    Ok(sealed.as_tsk().to_vec()?)
}

/// Opens what [`seal`] produced: a cert whose secret keys are usable in memory.
/// A wrong server key or a tampered blob fails (OCB authenticates each key).
pub fn unseal(sealed: &[u8], server_key: &ServerKey) -> Result<Cert> {
    let cert = Cert::from_bytes(sealed)?;
    unlock_with(cert, &server_key.0)
}

/// Removes a user's passphrase from an imported secret cert so it can be sealed
/// with the server key. Keys that are not protected are left as they are.
pub fn unlock(cert: Cert, passphrase: &str) -> Result<Cert> {
    unlock_with(cert, &Password::from(passphrase))
}

fn unlock_with(cert: Cert, password: &Password) -> Result<Cert> {
    if !cert.is_tsk() {
        return Err(PgpError::NotSecret(cert.fingerprint()));
    }
    let mut packets: Vec<Packet> = Vec::new();
    for ka in cert.keys().secret() {
        if ka.key().has_unencrypted_secret() {
            continue;
        }
        let key = ka.key().clone().decrypt_secret(password)?;
        packets.push(if ka.primary() {
            key.role_into_primary().into()
        } else {
            key.role_into_subordinate().into()
        });
    }
    Ok(cert.insert_packets(packets)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::{KeyProfile, KeySpec, generate};

    fn server_key() -> ServerKey {
        ServerKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn seal_then_unseal_restores_the_secret_keys() {
        for profile in [KeyProfile::Rfc4880, KeyProfile::Rfc9580] {
            let mut spec = KeySpec::new("alice@example.org");
            spec.profile = profile;
            let cert = generate(&spec).unwrap();
            let sealed = seal(&cert, &server_key()).unwrap();

            let stored = Cert::from_bytes(&sealed).unwrap();
            assert_eq!(stored.fingerprint(), cert.fingerprint());
            assert!(
                stored
                    .keys()
                    .secret()
                    .all(|ka| !ka.key().has_unencrypted_secret())
            );

            let opened = unseal(&sealed, &server_key()).unwrap();
            assert!(
                opened
                    .keys()
                    .secret()
                    .all(|ka| ka.key().has_unencrypted_secret())
            );
            assert_eq!(
                opened.as_tsk().to_vec().unwrap(),
                cert.as_tsk().to_vec().unwrap()
            );
        }
    }

    #[test]
    fn wrong_server_key_and_short_key_fail() {
        let cert = generate(&KeySpec::new("alice@example.org")).unwrap();
        let sealed = seal(&cert, &server_key()).unwrap();
        let other = ServerKey::new(&[7u8; 32]).unwrap();
        assert!(unseal(&sealed, &other).is_err());
        assert!(matches!(
            ServerKey::new(b"short"),
            Err(PgpError::WeakServerKey { .. })
        ));
        assert_eq!(format!("{:?}", server_key()), "ServerKey(<redacted>)");
    }

    #[test]
    fn sealing_a_locked_key_is_refused_until_unlocked() {
        let cert = generate(&KeySpec::new("alice@example.org")).unwrap();
        let locked_packets: Vec<Packet> = cert
            .keys()
            .secret()
            .map(|ka| {
                let k = ka
                    .key()
                    .clone()
                    .encrypt_secret(&"user pass".into())
                    .unwrap();
                if ka.primary() {
                    k.role_into_primary().into()
                } else {
                    k.role_into_subordinate().into()
                }
            })
            .collect();
        let locked = cert.insert_packets(locked_packets).unwrap().0;
        assert!(matches!(
            seal(&locked, &server_key()),
            Err(PgpError::SecretKeyLocked(_))
        ));
        let unlocked = unlock(locked, "user pass").unwrap();
        assert!(seal(&unlocked, &server_key()).is_ok());
    }
}
