//! The minimal cert Autocrypt Level 1 (§2.1.1) puts into a header: the primary key, one
//! encryption subkey and the one user ID for the sender's address, with their binding
//! signatures: enough to encrypt to the sender and small enough for every mail.
//!
//! Level 1 assumes the primary key signs. Ours certifies only and signs with a subkey
//! (`keygen.rs`), so the newest signing subkey is kept too: without it the receiver could
//! encrypt to the sender but not check the signature on the very mail that brought the key.

use sequoia_openpgp::Cert;
use sequoia_openpgp::serialize::SerializeInto;

use crate::cert::POLICY;
use crate::error::{PgpError, Result};

/// The binary minimal cert for `addr` (lowercase compared), secrets stripped. Fails when
/// the cert has no valid user ID for `addr` or no usable encryption subkey.
pub fn autocrypt_keydata(cert: &Cert, addr: &str) -> Result<Vec<u8>> {
    let addr = addr.to_lowercase();
    let valid = cert.with_policy(POLICY, None)?;
    let uid = valid
        .userids()
        .find(|u| {
            u.userid()
                .email_normalized()
                .ok()
                .flatten()
                .is_some_and(|e| e == addr)
        })
        .map(|u| u.userid().clone())
        .ok_or_else(|| PgpError::NoUserIdFor(cert.fingerprint(), addr.clone()))?;
    let subkey = valid
        .keys()
        .subkeys()
        .for_transport_encryption()
        .supported()
        .alive()
        .revoked(false)
        .map(|k| k.key().fingerprint())
        .last()
        .ok_or_else(|| PgpError::NoEncryptionKey(cert.fingerprint()))?;
    let signer = match valid.primary_key().for_signing() {
        true => None,
        false => valid
            .keys()
            .subkeys()
            .for_signing()
            .supported()
            .alive()
            .revoked(false)
            .map(|k| k.key().fingerprint())
            .last(),
    };
    let minimal = cert
        .clone()
        .strip_secret_key_material()
        .retain_userids(|u| *u.userid() == uid)
        .retain_user_attributes(|_| false)
        .retain_subkeys(|k| {
            let fp = k.key().fingerprint();
            fp == subkey || signer.as_ref() == Some(&fp)
        });
    Ok(minimal.to_vec()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySpec, generate};
    use sequoia_openpgp::parse::Parse;

    #[test]
    fn minimal_cert_keeps_one_uid_one_encryption_and_one_signing_subkey() {
        let mut spec = KeySpec::new("Alice <alice@example.org>");
        spec.validity = None;
        let cert = generate(&spec).expect("keygen");
        let data = autocrypt_keydata(&cert, "Alice@Example.org").expect("keydata");
        let back = Cert::from_bytes(&data).expect("parses");
        assert_eq!(back.fingerprint(), cert.fingerprint());
        assert!(!back.is_tsk());
        assert_eq!(back.userids().count(), 1);
        // Our keys sign with a subkey: it stays, so signatures can be checked.
        assert_eq!(back.keys().subkeys().count(), 2);
        assert!(crate::can_encrypt(&back, std::time::SystemTime::now()));
        assert!(autocrypt_keydata(&cert, "bob@example.org").is_err());
    }
}
