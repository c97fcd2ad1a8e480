//! Certificates: parsing keyrings, serializing, addresses, and choosing the key
//! to encrypt to.
//!
//! Validity is always judged with Sequoia's `StandardPolicy` (it rejects SHA-1
//! self-signatures, weak algorithms...) at the time of the call: a cert that is
//! expired or revoked *now* is never selected, even if it was fine when imported.

use std::time::SystemTime;

use sequoia_openpgp::Cert;
use sequoia_openpgp::cert::CertParser;
use sequoia_openpgp::cert::prelude::*;
use sequoia_openpgp::packet::key::PublicParts;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::serialize::SerializeInto;
use sequoia_openpgp::types::{ReasonForRevocation, RevocationStatus};

use crate::error::{PgpError, Result};

/// The one policy used for every validity decision in this crate.
pub(crate) const POLICY: &StandardPolicy<'static> = &StandardPolicy::new();

/// Why a cert is revoked (goes into the revocation signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// The secret key leaked: signatures made with it are no longer trusted.
    Compromised,
    /// Replaced by a newer key.
    Superseded,
    /// No longer used.
    Retired,
    /// No reason given.
    Unspecified,
}

/// Parses every cert in `input`: armored or binary, public or secret, one or many
/// (a keyring). Garbage between certs is an error, not silently skipped, so an
/// admin's `import` never half-succeeds without saying so.
pub fn parse_certs(input: &[u8]) -> Result<Vec<Cert>> {
    let certs = CertParser::from_bytes(input)?.collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(PgpError::NoCertificate);
    }
    Ok(certs)
}

/// ASCII-armored public cert (secret material stripped): what is exported,
/// attached to mail and published over WKD.
pub fn armored_public(cert: &Cert) -> Result<String> {
    Ok(String::from_utf8(cert.armored().to_vec()?).map_err(|e| anyhow::anyhow!(e))?)
}

/// ASCII-armored secret cert (`export --secret`). Secret material is written as it
/// is held: unencrypted after [`crate::unseal`].
pub fn armored_secret(cert: &Cert) -> Result<String> {
    if !cert.is_tsk() {
        return Err(PgpError::NotSecret(cert.fingerprint()));
    }
    Ok(String::from_utf8(cert.as_tsk().armored().to_vec()?).map_err(|e| anyhow::anyhow!(e))?)
}

/// Normalized (lowercased) e-mail addresses of the cert's valid user IDs,
/// deduplicated, in cert order. Revoked user IDs are left out.
pub fn addresses(cert: &Cert) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Ok(valid) = cert.with_policy(POLICY, None) else {
        return out;
    };
    for ua in valid.userids() {
        if matches!(ua.revocation_status(), RevocationStatus::Revoked(_)) {
            continue;
        }
        if let Ok(Some(addr)) = ua.userid().email_normalized()
            && !out.contains(&addr)
        {
            out.push(addr);
        }
    }
    out
}

/// Whether `cert` can be encrypted to at `now`: the cert is valid, alive and not
/// revoked, and has at least one alive, unrevoked encryption-capable key.
pub fn can_encrypt(cert: &Cert, now: SystemTime) -> bool {
    newest_encryption_key_time(cert, now).is_some()
}

/// The cert to encrypt to for `address` among `certs` (several keys per address are
/// allowed): only certs usable per [`can_encrypt`] and holding a valid user ID with
/// that address count; among them the one whose newest encryption key is newest
/// wins (ties: the newer primary key).
pub fn select_encryption_cert<'a>(
    certs: impl IntoIterator<Item = &'a Cert>,
    address: &str,
    now: SystemTime,
) -> Option<&'a Cert> {
    let wanted = address.trim().to_lowercase();
    certs
        .into_iter()
        .filter(|c| has_address_at(c, &wanted, now))
        .filter_map(|c| {
            let key_time = newest_encryption_key_time(c, now)?;
            Some(((key_time, c.primary_key().key().creation_time()), c))
        })
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, c)| c)
}

/// Revokes `cert` with its own primary key and returns the revoked cert (secret
/// parts kept if present). Its public form, [`armored_public`], is the revocation
/// certificate to publish.
pub fn revoke(cert: &Cert, reason: RevocationReason, message: &str) -> Result<Cert> {
    let key = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .map_err(|_| PgpError::NotSecret(cert.fingerprint()))?;
    if !key.has_unencrypted_secret() {
        return Err(PgpError::SecretKeyLocked(cert.fingerprint()));
    }
    let mut signer = key.into_keypair()?;
    let reason = match reason {
        RevocationReason::Compromised => ReasonForRevocation::KeyCompromised,
        RevocationReason::Superseded => ReasonForRevocation::KeySuperseded,
        RevocationReason::Retired => ReasonForRevocation::KeyRetired,
        RevocationReason::Unspecified => ReasonForRevocation::Unspecified,
    };
    let sig = cert.revoke(&mut signer, reason, message.as_bytes())?;
    Ok(cert.clone().insert_packets(sig)?.0)
}

/// Whether the cert is revoked at `now` (under the standard policy).
pub fn is_revoked(cert: &Cert, now: SystemTime) -> bool {
    matches!(
        cert.revocation_status(POLICY, now),
        RevocationStatus::Revoked(_)
    )
}

/// Creation time of the newest usable encryption key, `None` if the cert cannot
/// be encrypted to at `now`.
fn newest_encryption_key_time(cert: &Cert, now: SystemTime) -> Option<SystemTime> {
    let valid = cert.with_policy(POLICY, now).ok()?;
    if valid.alive().is_err() || is_revoked(cert, now) {
        return None;
    }
    encryption_keys(&valid)
        .map(|ka| ka.key().creation_time())
        .max()
}

/// Alive, unrevoked, supported keys flagged for storage or transport encryption.
pub(crate) fn encryption_keys<'a>(
    valid: &ValidCert<'a>,
) -> impl Iterator<Item = ValidErasedKeyAmalgamation<'a, PublicParts>> + use<'a> {
    valid
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_storage_encryption()
        .for_transport_encryption()
}

/// Whether a valid, unrevoked user ID of `cert` carries `address` (already lowercased).
fn has_address_at(cert: &Cert, address: &str, now: SystemTime) -> bool {
    let Ok(valid) = cert.with_policy(POLICY, now) else {
        return false;
    };
    valid.userids().any(|ua| {
        !matches!(ua.revocation_status(), RevocationStatus::Revoked(_))
            && ua.userid().email_normalized().ok().flatten().as_deref() == Some(address)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keygen::{KeySpec, generate};

    const DAY: Duration = Duration::from_secs(86_400);

    fn key_at(uid: &str, created: SystemTime, validity: Option<Duration>) -> Cert {
        let mut spec = KeySpec::new(uid);
        spec.creation_time = Some(created);
        spec.validity = validity;
        generate(&spec).unwrap()
    }

    #[test]
    fn keyring_with_several_certs_parses_armored_and_binary() {
        let a = generate(&KeySpec::new("a@example.org")).unwrap();
        let b = generate(&KeySpec::new("b@example.org")).unwrap();
        let mut ring = armored_public(&a).unwrap().into_bytes();
        ring.extend_from_slice(armored_secret(&b).unwrap().as_bytes());
        let certs = parse_certs(&ring).unwrap();
        assert_eq!(certs.len(), 2);
        assert!(!certs[0].is_tsk());
        assert!(certs[1].is_tsk());

        let binary = b.as_tsk().to_vec().unwrap();
        assert_eq!(
            parse_certs(&binary).unwrap()[0].fingerprint(),
            b.fingerprint()
        );
        assert!(matches!(parse_certs(b""), Err(PgpError::NoCertificate)));
        assert!(parse_certs(b"not a key").is_err());
    }

    #[test]
    fn addresses_are_normalized() {
        let c = generate(&KeySpec::new("Alice <Alice@Example.ORG>")).unwrap();
        assert_eq!(addresses(&c), vec!["alice@example.org".to_owned()]);
    }

    #[test]
    fn newest_valid_key_wins_and_expired_or_revoked_never() {
        let now = SystemTime::now();
        let old = key_at("carol@example.org", now - 30 * DAY, None);
        let newer = key_at("carol@example.org", now - 10 * DAY, None);
        let expired = key_at("carol@example.org", now - 5 * DAY, Some(DAY));
        let revoked = revoke(
            &key_at("carol@example.org", now - 2 * DAY, None),
            RevocationReason::Retired,
            "gone",
        )
        .unwrap();
        let other = key_at("dave@example.org", now - DAY, None);
        let certs = [
            old.clone(),
            newer.clone(),
            expired.clone(),
            revoked.clone(),
            other,
        ];

        let chosen = select_encryption_cert(&certs, "Carol@example.org", now).unwrap();
        assert_eq!(chosen.fingerprint(), newer.fingerprint());
        assert!(!can_encrypt(&expired, now));
        assert!(!can_encrypt(&revoked, now));
        assert!(is_revoked(&revoked, now));
        assert!(select_encryption_cert(&[expired, revoked], "carol@example.org", now).is_none());
        assert!(select_encryption_cert(&certs, "nobody@example.org", now).is_none());
    }
}
