//! OpenPGP certificate rows for the mail gateway. This module only moves bytes: parsing,
//! sealing secrets and choosing a key happen in `postern-gateway` (`keystore.rs`) with
//! `postern-pgp`. A row carries the public cert and, for keys held for local users, the
//! secret key sealed with the server key; the addresses of its user IDs live in a side table
//! so "all certs for bob@example.org" is one indexed lookup.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, int_bool};

/// The columns of [`PgpCertRow`] (a macro so queries stay `&'static str`).
macro_rules! select_cert {
    () => {
        "SELECT fingerprint, public_cert, sealed_secret, local, created_at, updated_at FROM pgp_certs"
    };
}

/// One stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpCertRow {
    /// Uppercase hex fingerprint of the primary key (the row's identity).
    pub fingerprint: String,
    /// Binary OpenPGP public certificate.
    pub public_cert: Vec<u8>,
    /// Binary transferable secret key, secrets sealed under the server key; `None` for a
    /// correspondent's public certificate.
    pub sealed_secret: Option<Vec<u8>>,
    /// Held for a local user (generated here, or imported with its secret).
    pub local: bool,
    /// Creation time of the primary key, seconds since the epoch.
    pub created_at: i64,
    /// Last change of the row, milliseconds since the epoch.
    pub updated_at_ms: i64,
    /// Lowercased addresses of the cert's user IDs.
    pub addresses: Vec<String>,
}

impl Store {
    /// Inserts or replaces a certificate and its address list in one transaction.
    pub async fn pgp_cert_put(&self, row: &PgpCertRow) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO pgp_certs (fingerprint, public_cert, sealed_secret, local, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (fingerprint) DO UPDATE SET public_cert = excluded.public_cert, \
             sealed_secret = excluded.sealed_secret, local = excluded.local, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
        )
        .bind(&row.fingerprint)
        .bind(B64.encode(&row.public_cert))
        .bind(row.sealed_secret.as_ref().map(|s| B64.encode(s)))
        .bind(i64::from(row.local))
        .bind(row.created_at)
        .bind(row.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pgp_cert_addresses WHERE fingerprint = $1")
            .bind(&row.fingerprint)
            .execute(&mut *tx)
            .await?;
        for address in &row.addresses {
            sqlx::query(
                "INSERT INTO pgp_cert_addresses (fingerprint, address) VALUES ($1, $2) \
                 ON CONFLICT (fingerprint, address) DO NOTHING",
            )
            .bind(&row.fingerprint)
            .bind(address)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One certificate by fingerprint (uppercase hex).
    pub async fn pgp_cert_get(&self, fingerprint: &str) -> Result<Option<PgpCertRow>, StoreError> {
        let row = sqlx::query(concat!(select_cert!(), " WHERE fingerprint = $1"))
            .bind(fingerprint)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => {
                let mut cert = cert_from_row(&r)?;
                cert.addresses = self.pgp_cert_addresses(&cert.fingerprint).await?;
                Ok(Some(cert))
            }
            None => Ok(None),
        }
    }

    /// Every certificate carrying `address` (lowercased by the caller), oldest row first.
    pub async fn pgp_certs_for(&self, address: &str) -> Result<Vec<PgpCertRow>, StoreError> {
        let rows = sqlx::query(concat!(
            select_cert!(),
            " WHERE fingerprint IN (SELECT fingerprint FROM pgp_cert_addresses WHERE address = $1)"
        ))
        .bind(address)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut cert = cert_from_row(r)?;
            cert.addresses = self.pgp_cert_addresses(&cert.fingerprint).await?;
            out.push(cert);
        }
        out.sort_by_key(|c| (c.created_at, c.fingerprint.clone()));
        Ok(out)
    }

    /// Every certificate, sorted by first address then fingerprint.
    pub async fn pgp_cert_list(&self) -> Result<Vec<PgpCertRow>, StoreError> {
        let rows = sqlx::query(select_cert!()).fetch_all(&self.pool).await?;
        let mut out = rows
            .iter()
            .map(cert_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let pairs = sqlx::query("SELECT fingerprint, address FROM pgp_cert_addresses")
            .fetch_all(&self.pool)
            .await?;
        for p in &pairs {
            let fpr: String = p.try_get("fingerprint")?;
            let address: String = p.try_get("address")?;
            if let Some(c) = out.iter_mut().find(|c| c.fingerprint == fpr) {
                c.addresses.push(address);
            }
        }
        for c in &mut out {
            c.addresses.sort();
        }
        out.sort_by(|a, b| {
            (a.addresses.first(), &a.fingerprint).cmp(&(b.addresses.first(), &b.fingerprint))
        });
        Ok(out)
    }

    /// Deletes a certificate and its addresses. Returns `false` when there was none.
    pub async fn pgp_cert_delete(&self, fingerprint: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pgp_cert_addresses WHERE fingerprint = $1")
            .bind(fingerprint)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM pgp_certs WHERE fingerprint = $1")
            .bind(fingerprint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn pgp_cert_addresses(&self, fingerprint: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT address FROM pgp_cert_addresses WHERE fingerprint = $1")
            .bind(fingerprint)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(|r| r.try_get("address"))
            .collect::<Result<Vec<String>, _>>()?;
        out.sort();
        Ok(out)
    }
}

fn cert_from_row(r: &AnyRow) -> Result<PgpCertRow, StoreError> {
    let decode = |column: &str, text: &str| {
        B64.decode(text.as_bytes())
            .map_err(|e| StoreError::Corrupt {
                table: "pgp_certs",
                detail: format!("{column}: {e}"),
            })
    };
    let public: String = r.try_get("public_cert")?;
    let sealed: Option<String> = r.try_get("sealed_secret")?;
    Ok(PgpCertRow {
        fingerprint: r.try_get("fingerprint")?,
        public_cert: decode("public_cert", &public)?,
        sealed_secret: sealed.map(|s| decode("sealed_secret", &s)).transpose()?,
        local: int_bool(r.try_get("local")?),
        created_at: r.try_get("created_at")?,
        updated_at_ms: r.try_get("updated_at")?,
        addresses: Vec::new(),
    })
}
