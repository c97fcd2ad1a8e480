//! TLS for client streams: one certificate per served domain chosen by SNI (the first
//! domain's when the client sends none), TLS 1.2+ only, and the channel-binding data that
//! SCRAM-*-PLUS needs (RFC 5929 `tls-server-end-point`, RFC 9266 `tls-exporter`).

use std::collections::HashMap;
use std::sync::Arc;

use postern_accounts::scram::ChannelBindings;
use postern_core::tls::SniResolver;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::server::ServerConnection;
use rustls::sign::CertifiedKey;
use sha2::Digest;
use tokio_rustls::TlsAcceptor;

/// A served domain's certificate chain and key.
pub use postern_core::tls::Identity as DomainIdentity;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("domain {domain}: {source}")]
    Key {
        domain: String,
        source: rustls::Error,
    },
    #[error("domain {0}: empty certificate chain")]
    EmptyChain(String),
    #[error("no domain is configured")]
    NoDomain,
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS side of the server, built once at start.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// `tls-server-end-point` data per domain: the certificate's hash (RFC 5929 §4.1).
    end_points: Arc<HashMap<String, Vec<u8>>>,
    default_domain: String,
}

impl Tls {
    pub fn new(identities: Vec<DomainIdentity>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut by_name = Vec::new();
        let mut end_points = HashMap::new();
        let mut default = None;
        for id in identities {
            let leaf = id
                .chain
                .first()
                .ok_or_else(|| TlsError::EmptyChain(id.domain.clone()))?;
            end_points.insert(id.domain.clone(), end_point_hash(leaf));
            let key = provider
                .key_provider
                .load_private_key(id.key)
                .map_err(|source| TlsError::Key {
                    domain: id.domain.clone(),
                    source,
                })?;
            let certified = Arc::new(CertifiedKey::new(id.chain, key));
            if default.is_none() {
                default = Some((id.domain.clone(), certified.clone()));
            }
            by_name.push((id.domain, certified));
        }
        let (default_domain, _) = default.ok_or(TlsError::NoDomain)?;
        let resolver = SniResolver::new(by_name).ok_or(TlsError::NoDomain)?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            end_points: Arc::new(end_points),
            default_domain,
        })
    }

    /// Channel bindings of an established connection, for SCRAM-PLUS.
    pub fn bindings(&self, conn: &ServerConnection) -> ChannelBindings {
        let domain = conn
            .server_name()
            .unwrap_or(&self.default_domain)
            .to_ascii_lowercase();
        let end_point = self
            .end_points
            .get(&domain)
            .or_else(|| self.end_points.get(&self.default_domain))
            .cloned();
        // RFC 9266 defines tls-exporter for TLS 1.3 only.
        let exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| {
                let mut out = vec![0u8; 32];
                let ok = conn
                    .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
                    .is_ok();
                ok.then_some(out)
            })
            .flatten();
        ChannelBindings {
            tls_exporter: exporter,
            tls_server_end_point: end_point,
        }
    }
}

/// RFC 5929 §4.1: hash the certificate with its signature's hash function, SHA-256 when
/// that is MD5 or SHA-1.
fn end_point_hash(cert: &CertificateDer<'_>) -> Vec<u8> {
    use x509_parser::oid_registry as oid;
    let alg = x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .map(|(_, c)| c.signature_algorithm.algorithm.clone());
    match alg {
        Some(a) if a == oid::OID_SIG_ECDSA_WITH_SHA384 || a == oid::OID_PKCS1_SHA384WITHRSA => {
            sha2::Sha384::digest(cert.as_ref()).to_vec()
        }
        Some(a) if a == oid::OID_SIG_ECDSA_WITH_SHA512 || a == oid::OID_PKCS1_SHA512WITHRSA => {
            sha2::Sha512::digest(cert.as_ref()).to_vec()
        }
        _ => sha2::Sha256::digest(cert.as_ref()).to_vec(),
    }
}
