//! Certificates: the admin's PEM files, or a self-signed certificate generated on first
//! start into `data_dir/certs/` and reused afterwards.

use std::path::{Path, PathBuf};

use postern_xmpp::DomainIdentity;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("generating a certificate for {domain}: {message}")]
    Generate { domain: String, message: String },
}

/// One identity per served domain.
pub fn identities(config: &Config) -> Result<Vec<DomainIdentity>, CertError> {
    config
        .domains
        .iter()
        .map(|d| {
            let name = d.name.to_ascii_lowercase();
            let (cert, key) = match (&d.cert, &d.key) {
                (Some(c), Some(k)) => (c.clone(), k.clone()),
                _ => self_signed(&config.data_dir, &name)?,
            };
            Ok(DomainIdentity {
                domain: name,
                chain: load_chain(&cert)?,
                key: load_key(&key)?,
            })
        })
        .collect()
}

/// Paths of the generated certificate for `domain`, creating it when missing.
pub fn self_signed(data_dir: &Path, domain: &str) -> Result<(PathBuf, PathBuf), CertError> {
    let dir = data_dir.join("certs");
    let cert = dir.join(format!("{domain}.crt"));
    let key = dir.join(format!("{domain}.key"));
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|source| CertError::Io {
        path: dir.clone(),
        source,
    })?;
    let fail = |e: rcgen::Error| CertError::Generate {
        domain: domain.into(),
        message: e.to_string(),
    };
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    let signing_key = rcgen::KeyPair::generate().map_err(fail)?;
    let generated = params.self_signed(&signing_key).map_err(fail)?;
    write_private(&key, signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.pem()).map_err(|source| CertError::Io {
        path: cert.clone(),
        source,
    })?;
    tracing::info!(%domain, path = %cert.display(), "generated a self-signed certificate");
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CertError::Io {
            path: path.into(),
            source,
        })?;
    f.write_all(data).map_err(|source| CertError::Io {
        path: path.into(),
        source,
    })
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError::Pem {
            path: path.into(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::Pem {
            path: path.into(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| CertError::Pem {
        path: path.into(),
        message: e.to_string(),
    })
}
