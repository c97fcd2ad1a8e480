//! Learning keys from mail (Autocrypt headers, attached `application/pgp-keys` parts):
//! the one place that decides what a mail may teach the key store, so every way in obeys
//! the same limits.
//!
//! - An outside correspondent's key ([`outside_key`]) is kept only with the user ID for
//!   the address it arrived for, never for a served domain, never over a newer key.
//! - A key a local (authenticated) sender mails through ([`from_local_sender`]) is trusted
//!   as an admin import would be, except for user IDs in served domains: local users' keys
//!   are made here, and a planted public key for a colleague could make forged signatures
//!   look good.

use std::time::SystemTime;

use postern_pgp::Cert;

use crate::{Gateway, Imported};

/// Imports the single cert in `keydata` as `addr`'s key (see the module doc). `Ok(None)`:
/// nothing new; `Err`: why it was refused (for the log).
pub async fn outside_key(
    gw: &Gateway,
    addr: &str,
    keydata: &[u8],
) -> Result<Option<Imported>, String> {
    let addr = addr.to_lowercase();
    if gw.is_local_domain(postern_core::Address::domain_of(&addr)) {
        return Err("address in a served domain".into());
    }
    let certs = postern_pgp::parse_certs(keydata).map_err(|e| e.to_string())?;
    let [cert] = certs.as_slice() else {
        return Err("more than one cert".into());
    };
    outside_cert(gw, &addr, cert.clone()).await
}

/// Like [`outside_key`] for every cert in `keydata` (a WKD answer may hold several).
pub async fn outside_keys(
    gw: &Gateway,
    addr: &str,
    keydata: &[u8],
) -> Vec<Result<Option<Imported>, String>> {
    let addr = addr.to_lowercase();
    if gw.is_local_domain(postern_core::Address::domain_of(&addr)) {
        return vec![Err("address in a served domain".into())];
    }
    match postern_pgp::parse_certs(keydata) {
        Ok(certs) => {
            let mut out = Vec::with_capacity(certs.len());
            for cert in certs {
                out.push(outside_cert(gw, &addr, cert).await);
            }
            out
        }
        Err(e) => vec![Err(e.to_string())],
    }
}

async fn outside_cert(gw: &Gateway, addr: &str, cert: Cert) -> Result<Option<Imported>, String> {
    let addr = addr.to_owned();
    let cert = only_uids(cert, |a| a == addr);
    if !postern_pgp::addresses(&cert).contains(&addr) {
        return Err("no user ID for the address".into());
    }
    if !postern_pgp::can_encrypt(&cert, SystemTime::now()) {
        return Err("no usable encryption key".into());
    }
    let stored = gw
        .keys
        .public_certs(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let created = cert.primary_key().key().creation_time();
    let same = stored.iter().any(|c| c.fingerprint() == cert.fingerprint());
    if !same
        && stored
            .iter()
            .any(|c| c.primary_key().key().creation_time() > created)
    {
        return Err("a newer key is stored for the address".into());
    }
    put(gw, cert).await
}

/// Imports every cert in `keydata` a local sender mailed, minus served-domain user IDs.
pub async fn from_local_sender(gw: &Gateway, keydata: &[u8]) -> Vec<Result<Imported, String>> {
    let certs = match postern_pgp::parse_certs(keydata) {
        Ok(c) => c,
        Err(e) => return vec![Err(e.to_string())],
    };
    let mut out = Vec::with_capacity(certs.len());
    for cert in certs {
        let cert = only_uids(cert, |a| {
            !gw.is_local_domain(postern_core::Address::domain_of(a))
        });
        out.push(match postern_pgp::addresses(&cert).is_empty() {
            true => Err("no user ID outside the served domains".into()),
            false => put(gw, cert)
                .await
                .map(|i| i.unwrap_or_else(|| Imported::Unchanged(String::new()))),
        });
    }
    out
}

/// The public cert with only the user IDs whose address passes `keep`.
fn only_uids(cert: Cert, keep: impl Fn(&str) -> bool) -> Cert {
    cert.strip_secret_key_material()
        .retain_userids(|u| {
            u.userid()
                .email_normalized()
                .ok()
                .flatten()
                .is_some_and(|e| keep(&e))
        })
        .retain_user_attributes(|_| false)
}

async fn put(gw: &Gateway, cert: Cert) -> Result<Option<Imported>, String> {
    match gw.keys.put(cert).await.map_err(|e| e.to_string())? {
        Imported::Unchanged(_) => Ok(None),
        other => Ok(Some(other)),
    }
}
