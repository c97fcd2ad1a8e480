//! Signature verification and its typed result.
//!
//! A bad or unverifiable signature is not an error of the call: the mail is still
//! delivered, and the gateway writes the [`Verification`] into a header. Errors are
//! kept for input that is not OpenPGP at all.

use std::fmt;
use std::io::{self, Read, Write};

use sequoia_openpgp::Cert;
use sequoia_openpgp::packet::Signature;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerifierBuilder,
};
use sequoia_openpgp::{Fingerprint, KeyHandle};

use crate::cert::{POLICY, addresses};
use crate::error::Result;

/// Outcome of checking one signature (or, from [`summarize`], a whole message).
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// Valid signature by a key of a known, valid cert.
    Good {
        /// Fingerprint of the signer's cert (its primary key).
        signer: Fingerprint,
        /// The signer cert's valid user-ID addresses (normalized).
        addresses: Vec<String>,
    },
    /// The signature does not verify, or the key that made it is expired, revoked
    /// or not valid for signing.
    Bad {
        /// The issuer named in the signature, if any.
        issuer: Option<KeyHandle>,
        /// Why (Sequoia's message).
        reason: String,
    },
    /// Signed by a key not among the certs we were given.
    UnknownKey {
        /// The issuer named in the signature, if any.
        issuer: Option<KeyHandle>,
    },
    /// There was no signature at all.
    Unsigned,
}

/// One verdict for a message: any bad signature makes it bad (someone tampered);
/// otherwise the first good one; otherwise unknown key; otherwise unsigned.
pub fn summarize(results: &[Verification]) -> Verification {
    let find = |f: fn(&Verification) -> bool| results.iter().find(|v| f(v)).cloned();
    find(|v| matches!(v, Verification::Bad { .. }))
        .or_else(|| find(|v| matches!(v, Verification::Good { .. })))
        .or_else(|| find(|v| matches!(v, Verification::UnknownKey { .. })))
        .unwrap_or(Verification::Unsigned)
}

/// Verifies a detached signature (armored or binary) over `data`, exactly as given.
pub fn verify_detached(data: &[u8], signature: &[u8], certs: &[Cert]) -> Result<Vec<Verification>> {
    let helper = Collector::new(certs);
    let mut v =
        DetachedVerifierBuilder::from_bytes(signature)?.with_policy(POLICY, None, helper)?;
    v.verify_bytes(data)?;
    Ok(v.into_helper().results)
}

/// Verifies an inline-signed message: a cleartext-signed text (`-----BEGIN PGP
/// SIGNED MESSAGE-----`) or a signed OpenPGP message, writing the signed content
/// to `out`. Sequoia withholds up to 25 MiB until the signature is checked, so
/// what reaches `out` before an error must be discarded by the caller.
pub fn verify_inline<R, W>(signed: R, mut out: W, certs: &[Cert]) -> Result<Vec<Verification>>
where
    R: Read + Send + Sync,
    W: Write,
{
    let helper = Collector::new(certs);
    let mut v = VerifierBuilder::from_reader(signed)?.with_policy(POLICY, None, helper)?;
    io::copy(&mut v, &mut out)?;
    Ok(v.into_helper().results)
}

/// Collects one [`Verification`] per signature; shared with decryption.
pub(crate) struct Collector<'a> {
    certs: &'a [Cert],
    pub(crate) results: Vec<Verification>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(certs: &'a [Cert]) -> Self {
        Collector {
            certs,
            results: Vec::new(),
        }
    }
}

impl VerificationHelper for Collector<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> sequoia_openpgp::Result<Vec<Cert>> {
        // Sequoia matches issuers itself; handing all certs over is simplest and
        // the sets are small (a mail's sender).
        Ok(self.certs.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> sequoia_openpgp::Result<()> {
        for layer in structure {
            if let MessageLayer::SignatureGroup { results } = layer {
                for result in results {
                    self.results.push(match result {
                        Ok(good) => Verification::Good {
                            signer: good.ka.cert().fingerprint(),
                            addresses: addresses(good.ka.cert()),
                        },
                        Err(VerificationError::MissingKey { sig }) => Verification::UnknownKey {
                            issuer: issuer(sig),
                        },
                        Err(e) => Verification::Bad {
                            issuer: error_issuer(&e),
                            reason: e.to_string(),
                        },
                    });
                }
            }
        }
        // Never fail here: a bad signature is reported, not turned into a lost mail.
        Ok(())
    }
}

fn issuer(sig: &Signature) -> Option<KeyHandle> {
    sig.get_issuers().into_iter().next()
}

fn error_issuer(e: &VerificationError<'_>) -> Option<KeyHandle> {
    match e {
        VerificationError::MissingKey { sig }
        | VerificationError::UnboundKey { sig, .. }
        | VerificationError::BadKey { sig, .. }
        | VerificationError::BadSignature { sig, .. }
        | VerificationError::MalformedSignature { sig, .. } => issuer(sig),
        _ => None,
    }
}

impl fmt::Display for Verification {
    /// Compact form for a trace header: `good <FPR> <addr>`, `bad <issuer>`,
    /// `unknown-key <issuer>`, `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let handle = |h: &Option<KeyHandle>| h.as_ref().map(|h| h.to_hex()).unwrap_or_default();
        match self {
            Verification::Good { signer, addresses } => {
                write!(f, "good {}", signer.to_hex())?;
                if let Some(a) = addresses.first() {
                    write!(f, " {a}")?;
                }
                Ok(())
            }
            Verification::Bad { issuer, .. } => write!(f, "bad {}", handle(issuer)),
            Verification::UnknownKey { issuer } => write!(f, "unknown-key {}", handle(issuer)),
            Verification::Unsigned => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::{KeySpec, generate};
    use crate::sign::sign_detached;

    #[test]
    fn detached_signature_good_bad_unknown() {
        let alice = generate(&KeySpec::new("alice@example.org")).unwrap();
        let sig = sign_detached(b"hello\r\n", &alice).unwrap();
        let sig = sig.armored.as_bytes();

        let good = verify_detached(b"hello\r\n", sig, std::slice::from_ref(&alice)).unwrap();
        assert!(
            matches!(&good[..], [Verification::Good { signer, .. }] if *signer == alice.fingerprint())
        );
        let bad = verify_detached(b"hello\n", sig, std::slice::from_ref(&alice)).unwrap();
        assert!(matches!(&bad[..], [Verification::Bad { .. }]));
        let unknown = verify_detached(b"hello\r\n", sig, &[]).unwrap();
        assert!(matches!(
            &unknown[..],
            [Verification::UnknownKey { issuer: Some(_) }]
        ));

        assert_eq!(summarize(&[]), Verification::Unsigned);
        assert!(matches!(
            summarize(&[good[0].clone(), bad[0].clone()]),
            Verification::Bad { .. }
        ));
        assert!(matches!(
            summarize(&[unknown[0].clone(), good[0].clone()]),
            Verification::Good { .. }
        ));
        assert!(good[0].to_string().starts_with("good "));
        assert!(good[0].to_string().ends_with(" alice@example.org"));
    }
}
