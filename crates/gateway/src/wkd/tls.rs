//! The WKD listener's TLS config: each served domain's certificate, chosen by SNI for
//! `<domain>` (direct method) and `openpgpkey.<domain>` (advanced method; the certificate
//! must name it for clients to accept it).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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
    let mut by_name = HashMap::new();
    let mut default = None;
    for id in identities {
        let key = provider
            .key_provider
            .load_private_key(id.key)
            .map_err(|e| GatewayError::Tls(format!("{}: {e}", id.domain)))?;
        let certified = Arc::new(CertifiedKey::new(id.chain, key));
        default.get_or_insert_with(|| certified.clone());
        by_name.insert(format!("openpgpkey.{}", id.domain), certified.clone());
        by_name.insert(id.domain, certified);
    }
    let default = default.ok_or_else(|| GatewayError::Tls("no domain to serve".into()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { by_name, default }));
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct BySni {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()));
        Some(named.unwrap_or(&self.default).clone())
    }
}
