//! The HTTPS listener's TLS: each served domain's certificate by SNI, for the domain itself
//! and for every `<label>.<domain>` a service named (`openpgpkey.` for WKD; the certificate
//! must name those hosts for clients to accept it), ALPN `http/1.1` (see `server` for why not
//! `h2` yet), TLS 1.2+.

use std::sync::Arc;

use postern_core::tls::{Identity, SniResolver};
use rustls::ServerConfig;
use rustls::sign::CertifiedKey;

use crate::HttpError;

/// A TLS server config for `identities`, also answering for `label.domain` per label.
pub fn server_config(
    identities: Vec<Identity>,
    labels: &[String],
) -> Result<Arc<ServerConfig>, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_name = Vec::new();
    for id in identities {
        let key = provider
            .key_provider
            .load_private_key(id.key)
            .map_err(|e| HttpError::Tls(format!("{}: {e}", id.domain)))?;
        let certified = Arc::new(CertifiedKey::new(id.chain, key));
        // The first domain's own name comes first: the default for clients without SNI.
        by_name.push((id.domain.clone(), certified.clone()));
        for label in labels {
            by_name.push((format!("{label}.{}", id.domain), certified.clone()));
        }
    }
    let resolver =
        SniResolver::new(by_name).ok_or_else(|| HttpError::Tls("no domain to serve".into()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
