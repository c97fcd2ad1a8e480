//! The key store: OpenPGP certs in the database (`pgp_certs`, see `postern_store`), secret
//! keys sealed with the server key. Several certs per address are allowed (never the same
//! fingerprint twice: a re-import merges); which one encrypts is decided by
//! `postern_pgp::select_encryption_cert` (newest valid, never expired or revoked).
//!
//! Secrets leave the store unsealed only in memory, for one operation, and through
//! [`KeyStore::export_secret`] (`postern pgp export --secret`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern_pgp::{Cert, KeySpec, RevocationReason, ServerKey};
use postern_store::{PgpCertRow, Store};
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::serialize::SerializeInto;

use crate::error::GatewayError;

/// Handle to the key store; cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyStore {
    store: Store,
    server_key: ServerKey,
}

/// What an import did with one cert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// A fingerprint we did not have.
    New(String),
    /// Merged into a cert we had (new user IDs, subkeys, signatures or its secret).
    Updated(String),
    /// Nothing new.
    Unchanged(String),
}

/// A cert as listed for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Uppercase hex fingerprint.
    pub fingerprint: String,
    /// Addresses of its user IDs.
    pub addresses: Vec<String>,
    /// Its secret is held here (a local user's key).
    pub local: bool,
    /// Primary key algorithm and size, e.g. `EdDSA` or `RSA 4096`.
    pub algorithm: String,
    /// Creation of the primary key.
    pub created: SystemTime,
    /// Expiry of the primary key, if any.
    pub expires: Option<SystemTime>,
    /// Revoked now.
    pub revoked: bool,
    /// Can be encrypted to now.
    pub usable: bool,
}

/// Which certs a command means: an address, or a fingerprint (hex, spaces allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every cert carrying the address.
    Address(String),
    /// One cert.
    Fingerprint(String),
}

impl Selector {
    /// `alice@example.org` or `ABCD 1234 ...`.
    pub fn parse(s: &str) -> Selector {
        if s.contains('@') {
            Selector::Address(s.trim().to_lowercase())
        } else {
            Selector::Fingerprint(
                s.chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_uppercase(),
            )
        }
    }
}

const POLICY: &StandardPolicy<'static> = &StandardPolicy::new();

impl KeyStore {
    /// Wraps the store with the server key that seals secrets.
    pub fn new(store: Store, server_key: ServerKey) -> Self {
        KeyStore { store, server_key }
    }

    /// Imports every cert in `data` (armored or binary, public or secret). A
    /// password-protected secret key needs its `passphrase`; it is then sealed with the
    /// server key instead.
    pub async fn import(
        &self,
        data: &[u8],
        passphrase: Option<&str>,
    ) -> Result<Vec<Imported>, GatewayError> {
        let certs = postern_pgp::parse_certs(data)?;
        let mut out = Vec::with_capacity(certs.len());
        for cert in certs {
            let cert = match passphrase {
                Some(p) if cert.is_tsk() => postern_pgp::unlock(cert, p)?,
                _ => cert,
            };
            out.push(self.put(cert).await?);
        }
        Ok(out)
    }

    /// Generates a key for a local user on a blocking thread (RSA 4096 takes seconds) and
    /// stores it. Returns the public cert.
    pub async fn generate(&self, spec: KeySpec) -> Result<Cert, GatewayError> {
        let cert = tokio::task::spawn_blocking(move || postern_pgp::generate(&spec)).await??;
        let public = cert.clone().strip_secret_key_material();
        self.put(cert).await?;
        Ok(public)
    }

    /// Stores a cert, merging with what is stored under its fingerprint. A secret cert's
    /// secrets must be unlocked; they are sealed here.
    pub async fn put(&self, cert: Cert) -> Result<Imported, GatewayError> {
        let fingerprint = cert.fingerprint().to_hex();
        let existing = self.store.pgp_cert_get(&fingerprint).await?;
        let incoming_public = cert.clone().strip_secret_key_material();
        let (public, sealed, outcome) = match &existing {
            None => {
                let sealed = match cert.is_tsk() {
                    true => Some(postern_pgp::seal(&cert, &self.server_key)?),
                    false => None,
                };
                (incoming_public, sealed, Imported::New(fingerprint.clone()))
            }
            Some(row) => {
                let old =
                    Cert::from_bytes(&row.public_cert).map_err(postern_pgp::PgpError::from)?;
                let merged = old
                    .clone()
                    .merge_public(incoming_public)
                    .map_err(postern_pgp::PgpError::from)?;
                let sealed = match cert.is_tsk() {
                    true => Some(postern_pgp::seal(&cert, &self.server_key)?),
                    false => row.sealed_secret.clone(),
                };
                let changed = merged != old || (cert.is_tsk() && row.sealed_secret.is_none());
                let outcome = match changed {
                    true => Imported::Updated(fingerprint.clone()),
                    false => Imported::Unchanged(fingerprint.clone()),
                };
                (merged, sealed, outcome)
            }
        };
        if matches!(outcome, Imported::Unchanged(_)) {
            return Ok(outcome);
        }
        let row = PgpCertRow {
            fingerprint,
            public_cert: public.to_vec().map_err(postern_pgp::PgpError::from)?,
            local: sealed.is_some(),
            sealed_secret: sealed,
            created_at: unix_secs(public.primary_key().key().creation_time()),
            updated_at_ms: now_ms(),
            addresses: addresses_of(&public),
        };
        self.store.pgp_cert_put(&row).await?;
        tracing::info!(fingerprint = %row.fingerprint, addresses = ?row.addresses, local = row.local, "stored OpenPGP cert");
        Ok(outcome)
    }

    /// Public certs of local users (secret held here) carrying `address`: what WKD
    /// publishes (an admin-imported public key for a local address is not ours to publish).
    pub async fn local_public_certs(&self, address: &str) -> Result<Vec<Cert>, GatewayError> {
        let rows = self.store.pgp_certs_for(&address.to_lowercase()).await?;
        rows.iter()
            .filter(|r| r.local)
            .map(|r| Ok(Cert::from_bytes(&r.public_cert).map_err(postern_pgp::PgpError::from)?))
            .collect()
    }

    /// Public certs carrying `address`.
    pub async fn public_certs(&self, address: &str) -> Result<Vec<Cert>, GatewayError> {
        let rows = self.store.pgp_certs_for(&address.to_lowercase()).await?;
        rows.iter()
            .map(|r| Ok(Cert::from_bytes(&r.public_cert).map_err(postern_pgp::PgpError::from)?))
            .collect()
    }

    /// The cert to encrypt to for `address`, if any is usable now.
    pub async fn encryption_cert(&self, address: &str) -> Result<Option<Cert>, GatewayError> {
        let certs = self.public_certs(address).await?;
        Ok(postern_pgp::select_encryption_cert(&certs, address, SystemTime::now()).cloned())
    }

    /// Whether a secret key is held for `address` (no unsealing).
    pub async fn has_secret(&self, address: &str) -> Result<bool, GatewayError> {
        let rows = self.store.pgp_certs_for(&address.to_lowercase()).await?;
        Ok(rows.iter().any(|r| r.sealed_secret.is_some()))
    }

    /// Every secret cert held for `address`, unsealed (expired and revoked ones too: old
    /// mail must stay readable), with the latest public state merged in.
    pub async fn secret_certs(&self, address: &str) -> Result<Vec<Cert>, GatewayError> {
        let rows = self.store.pgp_certs_for(&address.to_lowercase()).await?;
        rows.iter()
            .filter_map(|r| r.sealed_secret.as_ref().map(|s| (r, s)))
            .map(|(r, sealed)| self.unseal_row(&r.public_cert, sealed))
            .collect()
    }

    /// The secret cert `address` signs with: the newest valid, unrevoked one.
    pub async fn signing_cert(&self, address: &str) -> Result<Option<Cert>, GatewayError> {
        let now = SystemTime::now();
        let mut certs: Vec<Cert> = self
            .secret_certs(address)
            .await?
            .into_iter()
            .filter(|c| {
                !postern_pgp::is_revoked(c, now)
                    && c.with_policy(POLICY, now).is_ok_and(|v| v.alive().is_ok())
            })
            .collect();
        certs.sort_by_key(|c| c.primary_key().key().creation_time());
        Ok(certs.pop())
    }

    /// Armored public certs for a selector (several concatenated).
    pub async fn export_public(&self, selector: &Selector) -> Result<String, GatewayError> {
        let rows = self.select(selector).await?;
        let mut out = String::new();
        for r in rows {
            let cert = Cert::from_bytes(&r.public_cert).map_err(postern_pgp::PgpError::from)?;
            out.push_str(&postern_pgp::armored_public(&cert)?);
        }
        Ok(out)
    }

    /// Armored secret certs (unprotected!) for a selector; only certs whose secret we hold.
    pub async fn export_secret(&self, selector: &Selector) -> Result<String, GatewayError> {
        let rows = self.select(selector).await?;
        let mut out = String::new();
        for r in rows.iter().filter(|r| r.sealed_secret.is_some()) {
            let sealed = r.sealed_secret.as_deref().unwrap_or_default();
            out.push_str(&postern_pgp::armored_secret(
                &self.unseal_row(&r.public_cert, sealed)?,
            )?);
        }
        if out.is_empty() {
            return Err(GatewayError::NotFound(format!(
                "no secret key for {selector:?}"
            )));
        }
        Ok(out)
    }

    /// Revokes every held secret cert matching the selector; returns their fingerprints.
    pub async fn revoke(
        &self,
        selector: &Selector,
        reason: RevocationReason,
        message: &str,
    ) -> Result<Vec<String>, GatewayError> {
        let rows = self.select(selector).await?;
        let mut done = Vec::new();
        for r in rows.iter().filter(|r| r.sealed_secret.is_some()) {
            let sealed = r.sealed_secret.as_deref().unwrap_or_default();
            let secret = self.unseal_row(&r.public_cert, sealed)?;
            let revoked = postern_pgp::revoke(&secret, reason, message)?;
            self.put(revoked).await?;
            done.push(r.fingerprint.clone());
        }
        if done.is_empty() {
            return Err(GatewayError::NotFound(format!(
                "no key with a held secret for {selector:?} (to revoke an outside key, import its revocation certificate)"
            )));
        }
        Ok(done)
    }

    /// Deletes every cert matching the selector; returns their fingerprints.
    pub async fn delete(&self, selector: &Selector) -> Result<Vec<String>, GatewayError> {
        let rows = self.select(selector).await?;
        let mut done = Vec::new();
        for r in rows {
            if self.store.pgp_cert_delete(&r.fingerprint).await? {
                done.push(r.fingerprint);
            }
        }
        Ok(done)
    }

    /// Every cert, optionally only local (secret held) or only external ones.
    pub async fn list(&self, local: Option<bool>) -> Result<Vec<KeyInfo>, GatewayError> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for r in self.store.pgp_cert_list().await? {
            if local.is_some_and(|l| l != r.local) {
                continue;
            }
            let cert = Cert::from_bytes(&r.public_cert).map_err(postern_pgp::PgpError::from)?;
            let key = cert.primary_key().key();
            let algorithm = match key.mpis().bits() {
                Some(bits)
                    if key.pk_algo()
                        == sequoia_openpgp::types::PublicKeyAlgorithm::RSAEncryptSign =>
                {
                    format!("RSA {bits}")
                }
                _ => key.pk_algo().to_string(),
            };
            out.push(KeyInfo {
                fingerprint: r.fingerprint.clone(),
                addresses: r.addresses.clone(),
                local: r.local,
                algorithm,
                created: key.creation_time(),
                expires: cert
                    .with_policy(POLICY, now)
                    .ok()
                    .and_then(|v| v.primary_key().key_expiration_time()),
                revoked: postern_pgp::is_revoked(&cert, now),
                usable: postern_pgp::can_encrypt(&cert, now),
            });
        }
        Ok(out)
    }

    async fn select(&self, selector: &Selector) -> Result<Vec<PgpCertRow>, GatewayError> {
        let rows = match selector {
            Selector::Address(a) => self.store.pgp_certs_for(a).await?,
            Selector::Fingerprint(f) => self.store.pgp_cert_get(f).await?.into_iter().collect(),
        };
        if rows.is_empty() {
            return Err(GatewayError::NotFound(match selector {
                Selector::Address(a) => format!("no key for {a}"),
                Selector::Fingerprint(f) => format!("no key {f}"),
            }));
        }
        Ok(rows)
    }

    fn unseal_row(&self, public: &[u8], sealed: &[u8]) -> Result<Cert, GatewayError> {
        let secret = postern_pgp::unseal(sealed, &self.server_key)?;
        let public = Cert::from_bytes(public).map_err(postern_pgp::PgpError::from)?;
        Ok(secret
            .merge_public(public)
            .map_err(postern_pgp::PgpError::from)?)
    }
}

/// Addresses of a cert's valid user IDs; all user IDs' addresses if none is valid (so a
/// cert with, say, only SHA-1 self-signatures can still be found and listed).
fn addresses_of(cert: &Cert) -> Vec<String> {
    let valid = postern_pgp::addresses(cert);
    if !valid.is_empty() {
        return valid;
    }
    let mut out: Vec<String> = cert
        .userids()
        .filter_map(|u| u.userid().email_normalized().ok().flatten())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn keystore() -> (KeyStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/k.db", dir.path().display()))
            .await
            .unwrap();
        let key = ServerKey::new(&[9u8; 32]).unwrap();
        (KeyStore::new(store, key), dir)
    }

    #[tokio::test]
    async fn generated_keys_are_sealed_found_merged_revoked_and_deleted() {
        let (ks, _dir) = keystore().await;
        let public = ks
            .generate(KeySpec::new("Alice <Alice@Example.org>"))
            .await
            .unwrap();
        let fpr = public.fingerprint().to_hex();
        assert!(!public.is_tsk());

        // Stored sealed: the raw row's secret does not unseal with another key.
        let row = ks.store.pgp_cert_get(&fpr).await.unwrap().unwrap();
        assert!(row.local);
        let other = ServerKey::new(&[1u8; 32]).unwrap();
        assert!(postern_pgp::unseal(row.sealed_secret.as_deref().unwrap(), &other).is_err());

        assert!(ks.has_secret("alice@example.org").await.unwrap());
        let enc = ks
            .encryption_cert("alice@example.org")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(enc.fingerprint().to_hex(), fpr);
        let signer = ks.signing_cert("alice@example.org").await.unwrap().unwrap();
        assert!(signer.is_tsk());

        // Re-importing the public cert changes nothing; the secret export imports back.
        let armored = ks
            .export_public(&Selector::parse("alice@example.org"))
            .await
            .unwrap();
        assert_eq!(
            ks.import(armored.as_bytes(), None).await.unwrap(),
            vec![Imported::Unchanged(fpr.clone())]
        );
        let secret = ks.export_secret(&Selector::parse(&fpr)).await.unwrap();
        assert!(secret.contains("PRIVATE KEY BLOCK"));

        // A second, newer key wins for encryption; revoking it falls back to the first.
        let mut spec = KeySpec::new("alice@example.org");
        spec.creation_time = Some(SystemTime::now() + Duration::from_secs(1));
        let newer = ks.generate(spec).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let chosen = ks
            .encryption_cert("alice@example.org")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(chosen.fingerprint(), newer.fingerprint());
        let revoked = ks
            .revoke(
                &Selector::parse(&newer.fingerprint().to_hex()),
                RevocationReason::Retired,
                "test",
            )
            .await
            .unwrap();
        assert_eq!(revoked.len(), 1);
        let chosen = ks
            .encryption_cert("alice@example.org")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(chosen.fingerprint().to_hex(), fpr);
        let listed = ks.list(Some(true)).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed.iter().filter(|k| k.revoked).count(), 1);
        assert!(ks.list(Some(false)).await.unwrap().is_empty());

        assert_eq!(
            ks.delete(&Selector::parse("alice@example.org"))
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(
            ks.encryption_cert("alice@example.org")
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            ks.export_public(&Selector::parse("alice@example.org"))
                .await,
            Err(GatewayError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn outside_public_keys_import_without_secret() {
        let (ks, _dir) = keystore().await;
        let bob = postern_pgp::generate(&KeySpec::new("bob@partner.example")).unwrap();
        let carol = postern_pgp::generate(&KeySpec::new("carol@partner.example")).unwrap();
        let mut ring = postern_pgp::armored_public(&bob).unwrap();
        ring.push_str(&postern_pgp::armored_public(&carol).unwrap());
        let imported = ks.import(ring.as_bytes(), None).await.unwrap();
        assert!(imported.iter().all(|i| matches!(i, Imported::New(_))));
        assert!(!ks.has_secret("bob@partner.example").await.unwrap());
        assert!(
            ks.encryption_cert("carol@partner.example")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            ks.signing_cert("bob@partner.example")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(ks.list(Some(false)).await.unwrap().len(), 2);
        // Now the secret arrives: the same fingerprint is updated, not duplicated.
        let again = ks
            .import(postern_pgp::armored_secret(&bob).unwrap().as_bytes(), None)
            .await
            .unwrap();
        assert_eq!(again, vec![Imported::Updated(bob.fingerprint().to_hex())]);
        assert!(ks.has_secret("bob@partner.example").await.unwrap());
        assert_eq!(ks.list(None).await.unwrap().len(), 2);
    }
}
