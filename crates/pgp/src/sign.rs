//! Detached signatures (for `multipart/signed`) and the choice of signing key.

use std::io::Write;

use sequoia_openpgp::Cert;
use sequoia_openpgp::armor;
use sequoia_openpgp::crypto::KeyPair;
use sequoia_openpgp::packet::Packet;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::serialize::stream::{Armorer, Message, Signer};
use sequoia_openpgp::types::HashAlgorithm;

use crate::cert::POLICY;
use crate::error::{PgpError, Result};

/// An ASCII-armored detached signature and the hash it used (which decides the
/// `micalg` parameter of `multipart/signed`).
#[derive(Debug, Clone)]
pub struct DetachedSignature {
    /// `-----BEGIN PGP SIGNATURE-----` block.
    pub armored: String,
    /// Digest algorithm of the signature.
    pub hash: HashAlgorithm,
}

impl DetachedSignature {
    /// RFC 3156 `micalg` value: `pgp-` and the lowercased OpenPGP hash name
    /// (`pgp-sha256`, `pgp-sha512`...).
    pub fn micalg(&self) -> String {
        micalg_for(self.hash)
    }
}

/// Signs `data` exactly as given (a binary-mode signature: the caller canonicalizes
/// line endings first, as RFC 3156 requires for MIME parts).
pub fn sign_detached(data: &[u8], signer: &Cert) -> Result<DetachedSignature> {
    let keypair = signing_keypair(signer)?;
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let message = Armorer::new(message).kind(armor::Kind::Signature).build()?;
        let mut w = Signer::new(message, keypair)?.detached().build()?;
        w.write_all(data)?;
        w.finalize()?;
    }
    let hash = hash_of_armored_signature(&out)?;
    let armored = String::from_utf8(out).map_err(|e| anyhow::anyhow!(e))?;
    Ok(DetachedSignature { armored, hash })
}

/// `pgp-<hash>` per RFC 3156 §5 (names from the OpenPGP registry, lowercased).
pub(crate) fn micalg_for(hash: HashAlgorithm) -> String {
    let name = match hash {
        HashAlgorithm::MD5 => "md5",
        HashAlgorithm::SHA1 => "sha1",
        HashAlgorithm::RipeMD => "ripemd160",
        HashAlgorithm::SHA224 => "sha224",
        HashAlgorithm::SHA256 => "sha256",
        HashAlgorithm::SHA384 => "sha384",
        HashAlgorithm::SHA512 => "sha512",
        HashAlgorithm::SHA3_256 => "sha3-256",
        HashAlgorithm::SHA3_512 => "sha3-512",
        _ => "sha256",
    };
    format!("pgp-{name}")
}

/// The alive, unrevoked signing-capable secret key of `cert`, ready to sign.
pub(crate) fn signing_keypair(cert: &Cert) -> Result<KeyPair> {
    let valid = cert.with_policy(POLICY, None)?;
    let ka = valid
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .secret()
        .next()
        .ok_or_else(|| {
            if cert.is_tsk() {
                PgpError::NoSigningKey(cert.fingerprint())
            } else {
                PgpError::NotSecret(cert.fingerprint())
            }
        })?;
    if !ka.key().has_unencrypted_secret() {
        return Err(PgpError::SecretKeyLocked(cert.fingerprint()));
    }
    Ok(ka.key().clone().into_keypair()?)
}

/// Reads back the hash algorithm of the signature we just made.
fn hash_of_armored_signature(armored: &[u8]) -> Result<HashAlgorithm> {
    match Packet::from_bytes(armored)? {
        Packet::Signature(sig) => Ok(sig.hash_algo()),
        _ => Err(anyhow::anyhow!("signer produced no signature packet").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micalg_names_follow_rfc3156() {
        assert_eq!(micalg_for(HashAlgorithm::SHA256), "pgp-sha256");
        assert_eq!(micalg_for(HashAlgorithm::SHA512), "pgp-sha512");
        assert_eq!(micalg_for(HashAlgorithm::SHA1), "pgp-sha1");
    }
}
