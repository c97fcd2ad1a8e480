//! Decryption with the server-held secret keys, verifying any signature inside.
//!
//! Expired and revoked keys still decrypt: they must never encrypt new mail, but
//! old mail encrypted to them has to stay readable.

use std::io::{self, Read, Write};

use sequoia_openpgp::crypto::SessionKey;
use sequoia_openpgp::packet::{PKESK, SKESK};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use sequoia_openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp::{Cert, Fingerprint, KeyHandle};

use crate::cert::POLICY;
use crate::error::{PgpError, Result};
use crate::verify::{Collector, Verification};

/// What decryption found besides the plaintext.
#[derive(Debug, Clone, PartialEq)]
pub struct DecryptReport {
    /// The cert whose secret key opened the message.
    pub decrypted_with: Fingerprint,
    /// One entry per signature inside the message (empty if unsigned).
    pub signatures: Vec<Verification>,
}

/// Decrypts `ciphertext` (armored or binary) into `out`, streaming.
///
/// `secret_certs` are tried for decryption (unlocked secret keys), `verify_certs`
/// for signatures. Sequoia withholds up to 25 MiB of plaintext until the integrity
/// and signature checks are done; beyond that, what reached `out` before an error
/// must be discarded by the caller.
pub fn decrypt_to<R, W>(
    ciphertext: R,
    mut out: W,
    secret_certs: &[Cert],
    verify_certs: &[Cert],
) -> Result<DecryptReport>
where
    R: Read + Send + Sync,
    W: Write,
{
    let helper = Helper {
        secret_certs,
        verifier: Collector::new(verify_certs),
        decrypted_with: None,
    };
    let mut d = match DecryptorBuilder::from_reader(ciphertext)?.with_policy(POLICY, None, helper) {
        Ok(d) => d,
        // The builder runs `decrypt` eagerly; tell "no key" apart from garbage.
        Err(e) if e.chain().any(|c| c.is::<NoKey>()) => return Err(PgpError::NoDecryptionKey),
        Err(e) => return Err(e.into()),
    };
    io::copy(&mut d, &mut out)?;
    let helper = d.into_helper();
    Ok(DecryptReport {
        decrypted_with: helper.decrypted_with.ok_or(PgpError::NoDecryptionKey)?,
        signatures: helper.verifier.results,
    })
}

/// Decrypts in memory; see [`decrypt_to`].
pub fn decrypt(
    ciphertext: &[u8],
    secret_certs: &[Cert],
    verify_certs: &[Cert],
) -> Result<(Vec<u8>, DecryptReport)> {
    let mut out = Vec::new();
    let report = decrypt_to(ciphertext, &mut out, secret_certs, verify_certs)?;
    Ok((out, report))
}

/// Raised inside Sequoia's callback, recognised again in [`decrypt_to`].
#[derive(Debug, thiserror::Error)]
#[error("no secret key for any recipient")]
struct NoKey;

struct Helper<'a> {
    secret_certs: &'a [Cert],
    verifier: Collector<'a>,
    decrypted_with: Option<Fingerprint>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> sequoia_openpgp::Result<Vec<Cert>> {
        self.verifier.get_certs(ids)
    }

    fn check(&mut self, structure: MessageStructure) -> sequoia_openpgp::Result<()> {
        self.verifier.check(structure)
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> sequoia_openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            let wanted = pkesk.recipient();
            for cert in self.secret_certs {
                // Any encryption-capable secret key, alive or not (see module doc).
                for ka in cert.keys().secret() {
                    let matches = match &wanted {
                        Some(h) => h.aliases(ka.key().key_handle()),
                        None => true, // anonymous recipient: try every key
                    };
                    if !matches || !ka.key().has_unencrypted_secret() {
                        continue;
                    }
                    let Ok(mut keypair) = ka.key().clone().into_keypair() else {
                        continue;
                    };
                    if pkesk
                        .decrypt(&mut keypair, sym_algo)
                        .is_some_and(|(algo, sk)| decrypt(algo, &sk))
                    {
                        self.decrypted_with = Some(cert.fingerprint());
                        return Ok(Some(cert.clone()));
                    }
                }
            }
        }
        Err(NoKey.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encrypt::{encrypt, encrypt_writer};
    use crate::keygen::{KeyAlgorithm, KeyProfile, KeySpec, generate};
    use crate::verify::Verification;

    fn key(uid: &str) -> Cert {
        generate(&KeySpec::new(uid)).unwrap()
    }

    #[test]
    fn alice_encrypts_and_signs_bob_decrypts_and_verifies() {
        let alice = key("Alice <alice@example.org>");
        let bob = key("bob@example.org");
        let carol = key("carol@example.org");
        let text = "Grüße, 日本 \r\n\0 binary".as_bytes();
        let armored = encrypt(text, [&bob, &carol], Some(&alice)).unwrap();
        assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"));

        let (plain, report) = decrypt(
            armored.as_bytes(),
            std::slice::from_ref(&bob),
            std::slice::from_ref(&alice),
        )
        .unwrap();
        assert_eq!(plain, text);
        assert_eq!(report.decrypted_with, bob.fingerprint());
        assert_eq!(
            report.signatures,
            vec![Verification::Good {
                signer: alice.fingerprint(),
                addresses: vec!["alice@example.org".into()],
            }]
        );
        // Carol can read it too; without Alice's cert the signer is unknown.
        let (_, report) = decrypt(armored.as_bytes(), &[carol], &[]).unwrap();
        assert!(matches!(
            report.signatures[..],
            [Verification::UnknownKey { issuer: Some(_) }]
        ));
    }

    #[test]
    fn wrong_key_is_no_decryption_key_and_garbage_is_an_error() {
        let bob = key("bob@example.org");
        let eve = key("eve@example.org");
        let armored = encrypt(b"secret", [&bob], None).unwrap();
        assert!(matches!(
            decrypt(armored.as_bytes(), &[eve], &[]),
            Err(PgpError::NoDecryptionKey)
        ));
        assert!(matches!(
            decrypt(b"garbage", &[bob], &[]),
            Err(PgpError::OpenPgp(_))
        ));
    }

    #[test]
    fn streaming_round_trip_for_v6_and_rsa() {
        for (algorithm, profile) in [
            (KeyAlgorithm::Cv25519, KeyProfile::Rfc9580),
            (KeyAlgorithm::Rsa2048, KeyProfile::Rfc4880),
        ] {
            let mut spec = KeySpec::new("dave@example.org");
            spec.algorithm = algorithm;
            spec.profile = profile;
            let dave = generate(&spec).unwrap();
            let data = vec![0xA5u8; 3 * 1024 * 1024 + 17];
            let mut ct = Vec::new();
            let mut w = encrypt_writer(&mut ct, [&dave], Some(&dave)).unwrap();
            for chunk in data.chunks(64 * 1024) {
                std::io::Write::write_all(&mut w, chunk).unwrap();
            }
            w.finish().unwrap();
            let mut out = Vec::new();
            let report = decrypt_to(
                &ct[..],
                &mut out,
                std::slice::from_ref(&dave),
                std::slice::from_ref(&dave),
            )
            .unwrap();
            assert_eq!(out, data);
            assert!(matches!(report.signatures[..], [Verification::Good { .. }]));
        }
    }

    #[test]
    fn refuses_recipients_without_usable_key() {
        let now = std::time::SystemTime::now();
        let mut spec = KeySpec::new("old@example.org");
        spec.creation_time = Some(now - std::time::Duration::from_secs(10 * 86_400));
        spec.validity = Some(std::time::Duration::from_secs(86_400));
        let expired = generate(&spec).unwrap();
        let ok = key("ok@example.org");
        assert!(matches!(
            encrypt(b"x", [&ok, &expired], None),
            Err(PgpError::NoEncryptionKey(f)) if f == expired.fingerprint()
        ));
        assert!(matches!(
            encrypt(b"x", [], None),
            Err(PgpError::NoRecipients)
        ));
    }
}
