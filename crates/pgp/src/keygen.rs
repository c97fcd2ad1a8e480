//! Key generation for local users.
//!
//! The admin picks algorithm, profile and expiry (DESIGN.md, "Keys"); every generated
//! cert has the same shape, Sequoia's "general purpose" layout: a certification-only
//! primary key, one signing subkey and one encryption subkey (storage + transport).
//! Keeping signing and encryption on subkeys lets a compromised subkey be replaced
//! without a new fingerprint for correspondents.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sequoia_openpgp::Cert;
use sequoia_openpgp::Profile;
use sequoia_openpgp::cert::{CertBuilder, CipherSuite};
use sequoia_openpgp::packet::UserID;
use sequoia_openpgp::types::Features;

use crate::error::{PgpError, Result};

/// Public-key algorithm (and size) of a generated cert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// Ed25519 signing + X25519 encryption: small, fast, the default.
    #[default]
    Cv25519,
    /// RSA 2048 bits, for correspondents whose software predates ECC.
    Rsa2048,
    /// RSA 3072 bits.
    Rsa3072,
    /// RSA 4096 bits (slow to generate: seconds to a minute).
    Rsa4096,
}

/// Which OpenPGP version the key is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyProfile {
    /// v4 keys (RFC 4880): readable by every deployed OpenPGP implementation (GnuPG 2.2 too).
    /// They advertise only SEIPDv1, so messages to them are never SEIPDv2 / v6 PKESK,
    /// which GnuPG 2.2 cannot read ("packet(1) with unknown version 6").
    #[default]
    Rfc4880,
    /// v6 keys (RFC 9580): AEAD, Argon2; not readable by GnuPG.
    Rfc9580,
}

/// What to generate: `KeySpec::new(user_id)` gives the admin defaults.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// `"Name <address>"` or a bare `"address"`; must contain an e-mail address,
    /// since the gateway finds keys by address.
    pub user_id: String,
    /// Algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// v4 or v6.
    pub profile: KeyProfile,
    /// How long the cert is valid after its creation; `None` never expires.
    pub validity: Option<Duration>,
    /// Creation time; `None` is now. Set in tests and for reproducible imports.
    pub creation_time: Option<SystemTime>,
}

impl KeySpec {
    /// Defaults: Curve25519, v4, no expiry, created now.
    pub fn new(user_id: impl Into<String>) -> Self {
        KeySpec {
            user_id: user_id.into(),
            algorithm: KeyAlgorithm::default(),
            profile: KeyProfile::default(),
            validity: None,
            creation_time: None,
        }
    }
}

/// Generates a secret cert (unencrypted secret key material: seal it with
/// [`crate::seal`] before storing it).
///
/// A revocation certificate can be made later with [`crate::revoke`], as long as
/// the secret primary key is kept, so none is returned here.
pub fn generate(spec: &KeySpec) -> Result<Cert> {
    let user_id = UserID::from(spec.user_id.as_str());
    if user_id.email_normalized().ok().flatten().is_none() {
        return Err(PgpError::NoAddress(spec.user_id.clone()));
    }
    let suite = match spec.algorithm {
        KeyAlgorithm::Cv25519 => CipherSuite::Cv25519,
        KeyAlgorithm::Rsa2048 => CipherSuite::RSA2k,
        KeyAlgorithm::Rsa3072 => CipherSuite::RSA3k,
        KeyAlgorithm::Rsa4096 => CipherSuite::RSA4k,
    };
    let profile = match spec.profile {
        KeyProfile::Rfc4880 => Profile::RFC4880,
        KeyProfile::Rfc9580 => Profile::RFC9580,
    };
    let mut builder = CertBuilder::general_purpose(Some(user_id))
        .set_cipher_suite(suite)
        .set_profile(profile)?
        .set_validity_period(spec.validity);
    if spec.profile == KeyProfile::Rfc4880 {
        // Sequoia's default features include SEIPDv2 even on v4 keys; senders
        // (us included) would then use it and GnuPG 2.2 could not decrypt.
        builder = builder.set_features(Features::empty().set_seipdv1())?;
    }
    if let Some(t) = spec.creation_time {
        builder = builder.set_creation_time(t);
    }
    let (cert, _revocation) = builder.generate()?;
    tracing::debug!(fingerprint = %cert.fingerprint(), algorithm = %spec.algorithm, "generated OpenPGP key");
    Ok(cert)
}

impl FromStr for KeyAlgorithm {
    type Err = PgpError;

    /// Parses the CLI/config names `cv25519`, `rsa2048`, `rsa3072`, `rsa4096`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cv25519" | "curve25519" | "25519" => Ok(Self::Cv25519),
            "rsa2048" => Ok(Self::Rsa2048),
            "rsa3072" => Ok(Self::Rsa3072),
            "rsa4096" => Ok(Self::Rsa4096),
            _ => Err(PgpError::UnknownName {
                kind: "algorithm",
                name: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cv25519 => "cv25519",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
        })
    }
}

impl FromStr for KeyProfile {
    type Err = PgpError;

    /// Parses the CLI/config names `rfc4880` (v4) and `rfc9580` (v6).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rfc4880" | "v4" => Ok(Self::Rfc4880),
            "rfc9580" | "v6" => Ok(Self::Rfc9580),
            _ => Err(PgpError::UnknownName {
                kind: "profile",
                name: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for KeyProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rfc4880 => "rfc4880",
            Self::Rfc9580 => "rfc9580",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_cv25519_has_signing_and_encryption_subkeys() {
        let cert = generate(&KeySpec::new("Alice <alice@example.org>")).unwrap();
        assert!(cert.is_tsk());
        assert_eq!(cert.primary_key().key().version(), 4);
        assert_eq!(cert.keys().subkeys().count(), 2);
        let features = cert
            .with_policy(crate::cert::POLICY, None)
            .unwrap()
            .primary_key()
            .binding_signature()
            .features()
            .unwrap();
        assert!(features.supports_seipdv1() && !features.supports_seipdv2());
    }

    #[test]
    fn v6_profile_makes_v6_keys() {
        let mut spec = KeySpec::new("bob@example.org");
        spec.profile = KeyProfile::Rfc9580;
        let cert = generate(&spec).unwrap();
        assert_eq!(cert.primary_key().key().version(), 6);
    }

    #[test]
    fn user_id_without_address_is_refused() {
        assert!(matches!(
            generate(&KeySpec::new("Just A Name")),
            Err(PgpError::NoAddress(_))
        ));
    }

    #[test]
    fn names_round_trip() {
        for a in ["cv25519", "rsa2048", "rsa3072", "rsa4096"] {
            assert_eq!(a.parse::<KeyAlgorithm>().unwrap().to_string(), a);
        }
        for p in ["rfc4880", "rfc9580"] {
            assert_eq!(p.parse::<KeyProfile>().unwrap().to_string(), p);
        }
        assert!("dsa".parse::<KeyAlgorithm>().is_err());
    }
}
