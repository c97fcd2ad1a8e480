//! Password hashes made elsewhere, for accounts brought over with `postern account import`:
//! Dovecot's schemes, checked natively at login and replaced by Postern's own (argon2id and
//! SCRAM keys, `password.rs`) on the first login that succeeds.
//!
//! They are stored in the account's `password_hash` as Dovecot writes them, `{SCHEME}data`.
//! Postern's own hashes are PHC strings (`$argon2id$…`), so the first character tells the two
//! apart. Until the upgrade such an account has no SCRAM keys: SCRAM fails for it as for a
//! wrong password, and PLAIN (over TLS) works.

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier as _;
use argon2::password_hash::phc::PasswordHash;
use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq as _;

/// The schemes we read, by Dovecot's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `$6$…` (crypt(3) SHA-512).
    Sha512Crypt,
    /// `$5$…` (crypt(3) SHA-256).
    Sha256Crypt,
    /// `$2y$…` / `$2b$…` / `$2a$…` (bcrypt).
    BlfCrypt,
    /// `$argon2id$…` / `$argon2i$…` (PHC strings).
    Argon2,
    /// base64(SHA-512(password ‖ salt) ‖ salt).
    Ssha512,
    /// base64(SHA-256(password ‖ salt) ‖ salt).
    Ssha256,
}

/// Dovecot's names for each scheme (the first is the one we store).
const NAMES: [(&str, Scheme); 7] = [
    ("SHA512-CRYPT", Scheme::Sha512Crypt),
    ("SHA256-CRYPT", Scheme::Sha256Crypt),
    ("BLF-CRYPT", Scheme::BlfCrypt),
    ("ARGON2ID", Scheme::Argon2),
    ("ARGON2I", Scheme::Argon2),
    ("SSHA512", Scheme::Ssha512),
    ("SSHA256", Scheme::Ssha256),
];

/// An imported hash we cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LegacyError {
    /// A `{SCHEME}` we do not read.
    #[error(
        "unsupported password scheme {{{0}}} (supported: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, ARGON2I, SSHA512, SSHA256, PLAIN)"
    )]
    Unsupported(String),
    /// The data after the scheme is not a hash of that scheme.
    #[error("not a valid {0} hash")]
    Malformed(&'static str),
}

/// Whether a stored `password_hash` is an imported one (not yet upgraded).
pub(crate) fn is_legacy(stored: &str) -> bool {
    stored.starts_with('{')
}

/// The scheme a bare crypt(3) string names (Dovecot's `CRYPT`, or a passwd-file line
/// without a `{SCHEME}`).
fn crypt_scheme(data: &str) -> Option<Scheme> {
    if data.starts_with("$6$") {
        Some(Scheme::Sha512Crypt)
    } else if data.starts_with("$5$") {
        Some(Scheme::Sha256Crypt)
    } else if ["$2y$", "$2b$", "$2a$"].iter().any(|p| data.starts_with(p)) {
        Some(Scheme::BlfCrypt)
    } else if data.starts_with("$argon2id$") || data.starts_with("$argon2i$") {
        Some(Scheme::Argon2)
    } else {
        None
    }
}

fn name(scheme: Scheme) -> &'static str {
    NAMES
        .iter()
        .find(|(_, s)| *s == scheme)
        .map_or("?", |(n, _)| n)
}

/// Splits `{SCHEME}data`; a string without braces is taken as Dovecot's `CRYPT`.
fn split(secret: &str) -> Result<(Scheme, &str), LegacyError> {
    let Some(rest) = secret.strip_prefix('{') else {
        return crypt_scheme(secret)
            .map(|s| (s, secret))
            .ok_or(LegacyError::Unsupported("CRYPT".into()));
    };
    let Some((scheme, data)) = rest.split_once('}') else {
        return Err(LegacyError::Unsupported(rest.to_owned()));
    };
    let upper = scheme.to_ascii_uppercase();
    if upper == "CRYPT" {
        return match crypt_scheme(data) {
            Some(s) => Ok((s, data)),
            None => Err(LegacyError::Unsupported(upper)),
        };
    }
    NAMES
        .iter()
        .find(|(n, _)| *n == upper)
        .map(|(_, s)| (*s, data))
        .ok_or(LegacyError::Unsupported(scheme.to_owned()))
}

/// An imported hash in the form we store: `{SCHEME}data` with Dovecot's name for the scheme
/// (a bare crypt string gets its scheme named), once we know the data is a hash of that
/// scheme.
pub fn normalise(secret: &str) -> Result<String, LegacyError> {
    let (scheme, data) = split(secret)?;
    let ok = match scheme {
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            sha_crypt::PasswordHashRef::new(data).is_ok() && crypt_scheme(data) == Some(scheme)
        }
        Scheme::BlfCrypt => data.parse::<bcrypt::HashParts>().is_ok(),
        Scheme::Argon2 => PasswordHash::new(data).is_ok(),
        Scheme::Ssha512 => salted_parts(data, 64).is_some(),
        Scheme::Ssha256 => salted_parts(data, 32).is_some(),
    };
    if !ok {
        return Err(LegacyError::Malformed(name(scheme)));
    }
    Ok(format!("{{{}}}{data}", name(scheme)))
}

/// The digest and the salt of a salted SHA hash (at least one byte of salt).
fn salted_parts(data: &str, digest: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    if raw.len() <= digest {
        return None;
    }
    let salt = raw.split_off(digest);
    Some((raw, salt))
}

/// Checks `password` against a stored `{SCHEME}data`. Anything that does not parse never
/// matches (and is logged: the row was damaged).
pub(crate) fn verify(stored: &str, password: &str) -> bool {
    let Ok((scheme, data)) = split(stored) else {
        tracing::error!("stored imported password hash has an unknown scheme");
        return false;
    };
    let pw = password.as_bytes();
    match scheme {
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            use sha_crypt::PasswordVerifier as _;
            sha_crypt::ShaCrypt::default()
                .verify_password(pw, data)
                .is_ok()
        }
        Scheme::BlfCrypt => bcrypt::verify(pw, data).unwrap_or(false),
        Scheme::Argon2 => {
            PasswordHash::new(data).is_ok_and(|h| Argon2::default().verify_password(pw, &h).is_ok())
        }
        Scheme::Ssha512 => salted_matches::<Sha512>(data, pw),
        Scheme::Ssha256 => salted_matches::<Sha256>(data, pw),
    }
}

/// Whether `pw` matches a salted SHA hash: `D(pw ‖ salt)` against the stored digest, in
/// constant time.
fn salted_matches<D: Digest>(data: &str, pw: &[u8]) -> bool {
    salted_parts(data, <D as Digest>::output_size()).is_some_and(|(expected, salt)| {
        let got = D::new().chain_update(pw).chain_update(&salt).finalize();
        bool::from(got.as_slice().ct_eq(expected.as_slice()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Dovecot 2.3.19 (`doveadm pw -s SCHEME -p 'pencil ünï'`, Debian 12); the
    /// end-to-end test in tests/tests/account_import.rs asks doveadm for fresh ones.
    const DOVEADM: [&str; 5] = [
        "{SHA512-CRYPT}$6$YYQQmsFf.j.qD.7f$.FgceA9Jm.YQn/PJhi0ZPXG5BYVgjAvCpvSOGTpPJitUaCDSjUZVcG4lrRoNC5T1FekfTDw8xbqCP3ox5qi56.",
        "{SHA256-CRYPT}$5$Fsq90pT9AJbwUUmp$tarFPXBsnZaw4hPeaQMAsE7gC33YwS4n69vztX80knC",
        "{BLF-CRYPT}$2y$05$aRDM8QjEz4hHJ85sQ8eTOe7S3YSHY1ERjW6N42SwIHqP9PpIL/sBS",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$QkEwDbT3uA28QYsRxHpU3A$uBiUrqSXX30jYqSCcX0ZjYBN6BtXV/tQwgZyYTSaw58",
        "{SSHA512}N3b9Y+0cLrFcTn6edYeBCF26xIhCLyWEh/BNMUmke3DhRNMXR5tnTdDKirWX+UwOPJJy6qI3l3iRPsktMP4FCQp12Bo=",
    ];

    #[test]
    fn dovecot_hashes_verify_and_only_with_their_password() {
        for h in DOVEADM {
            let stored = normalise(h).expect(h);
            assert_eq!(stored, h, "already in stored form");
            assert!(is_legacy(&stored));
            assert!(verify(&stored, "pencil ünï"), "{h}");
            assert!(!verify(&stored, "pencil uni"), "{h}");
            assert!(!verify(&stored, ""), "{h}");
        }
    }

    #[test]
    fn bare_crypt_strings_get_their_scheme_named() {
        let bare = DOVEADM[0].trim_start_matches("{SHA512-CRYPT}");
        assert_eq!(normalise(bare).as_deref(), Ok(DOVEADM[0]));
        let crypt = format!("{{CRYPT}}{}", DOVEADM[2].trim_start_matches("{BLF-CRYPT}"));
        assert_eq!(normalise(&crypt).as_deref(), Ok(DOVEADM[2]));
        assert!(verify(&normalise(bare).expect("bare"), "pencil ünï"));
    }

    #[test]
    fn unknown_schemes_and_damaged_hashes_are_refused() {
        assert!(matches!(
            normalise("{MD5}abc"),
            Err(LegacyError::Unsupported(_))
        ));
        assert!(matches!(
            normalise("{NOPE"),
            Err(LegacyError::Unsupported(_))
        ));
        assert!(matches!(
            normalise("hunter2"),
            Err(LegacyError::Unsupported(_))
        ));
        assert!(matches!(
            normalise("{SHA512-CRYPT}$5$abc$def"),
            Err(LegacyError::Malformed(_))
        ));
        assert!(matches!(
            normalise("{SSHA512}AAAA"),
            Err(LegacyError::Malformed(_))
        ));
        assert!(matches!(
            normalise("{BLF-CRYPT}$2y$05$short"),
            Err(LegacyError::Malformed(_))
        ));
        assert!(!verify("{SSHA512}!!!", "x"));
        assert!(!verify("{WHAT}x", "x"));
    }
}
