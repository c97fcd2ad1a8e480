//! The certificate of each served host, chosen by the TLS client's SNI; the default (first)
//! one for a client that names none or names a host we do not know.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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
