//! The certificate of each served host, chosen by the TLS client's SNI; the default (first)
//! one for a client that names none or names a host we do not know. [`Identity`] is one
//! domain's certificate and key.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A served domain's certificate chain and key, as every TLS listener (XMPP, HTTPS) takes it.
pub struct Identity {
    /// The served domain, lowercase.
    pub domain: String,
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            domain: self.domain.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

#[derive(Debug)]
pub struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// `certs` as (host name, certificate); the first is the default. `None` without any.
    pub fn new(certs: impl IntoIterator<Item = (String, Arc<CertifiedKey>)>) -> Option<Self> {
        let mut by_name = HashMap::new();
        let mut default = None;
        for (name, cert) in certs {
            default.get_or_insert_with(|| cert.clone());
            by_name.insert(name.to_ascii_lowercase(), cert);
        }
        Some(Self {
            by_name,
            default: default?,
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()));
        Some(named.unwrap_or(&self.default).clone())
    }
}

/// The system's CA bundle (Debian's `ca-certificates`), the default trust for outgoing TLS.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS client config that trusts the certificates of the PEM bundle `ca_file` (default:
/// [`SYSTEM_CA_FILE`]), for the connections Postern makes itself (WKD lookups, an IMAP
/// account backend). The error names the file and what is wrong with it.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let path = ca_file.unwrap_or(std::path::Path::new(SYSTEM_CA_FILE));
    let bad = |e: String| format!("{}: {e}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
