//! The WKD listener's TLS config: each served domain's certificate, chosen by SNI for
//! `<domain>` (direct method) and `openpgpkey.<domain>` (advanced method; the certificate
//! must name it for clients to accept it).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use postern_core::tls::SniResolver;

use crate::GatewayError;

/// One domain's certificate chain and key.
pub struct Identity {
    /// The served domain, lowercase.
    pub domain: String,
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

/// A TLS server config serving every identity by SNI (the first one without SNI).
pub fn server_config(identities: Vec<Identity>) -> Result<Arc<ServerConfig>, GatewayError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_name = Vec::new();
    for id in identities {
        let key = provider
            .key_provider
            .load_private_key(id.key)
            .map_err(|e| GatewayError::Tls(format!("{}: {e}", id.domain)))?;
        let certified = Arc::new(CertifiedKey::new(id.chain, key));
        by_name.push((id.domain.clone(), certified.clone()));
        by_name.push((format!("openpgpkey.{}", id.domain), certified));
    }
    let resolver =
        SniResolver::new(by_name).ok_or_else(|| GatewayError::Tls("no domain to serve".into()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(Arc::new(config))
}
