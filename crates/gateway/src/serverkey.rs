//! The server key: the secret that seals users' secret keys in the database (see
//! `postern_pgp::atrest`) and from which the trace-tag key is derived.
//!
//! It comes from the environment variable named by `server_key_env`, or the file
//! `server_key_file`, or — neither set — `<data_dir>/gateway/server.key`, generated on
//! first use (32 random bytes, base64, mode 0600) so the embedded default just works.
//! Losing it makes every stored secret key unreadable: back it up apart from the database.

use std::io::Write;
use std::path::{Path, PathBuf};

use postern_pgp::ServerKey;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::trace::TraceKey;

/// Both keys derived from the server secret.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// Seals secret keys at rest.
    pub seal: ServerKey,
    /// Tags our trace header.
    pub trace: TraceKey,
}

/// The default key file under the data dir.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway").join("server.key")
}

/// Loads (or, for the default file, creates) the server key per the config.
pub fn load(config: &GatewayConfig, data_dir: &Path) -> Result<ServerKeys, GatewayError> {
    let secret: Vec<u8> = if let Some(var) = &config.server_key_env {
        std::env::var(var)
            .map_err(|_| GatewayError::ServerKey(format!("environment variable {var} is not set")))?
            .trim()
            .as_bytes()
            .to_vec()
    } else if let Some(file) = &config.server_key_file {
        read(file)?
    } else {
        let file = default_path(data_dir);
        if !file.exists() {
            generate(&file)?;
        }
        read(&file)?
    };
    let seal = ServerKey::new(&secret).map_err(|e| GatewayError::ServerKey(e.to_string()))?;
    Ok(ServerKeys {
        seal,
        trace: TraceKey::derive(&secret),
    })
}

fn read(file: &Path) -> Result<Vec<u8>, GatewayError> {
    let bytes = std::fs::read(file)
        .map_err(|e| GatewayError::io(format!("reading server key {}", file.display()), e))?;
    Ok(bytes.trim_ascii_end().to_vec())
}

/// Writes 32 random bytes, base64, readable by the owner only. `create_new` makes two
/// processes starting at once agree on one key (the loser reads the winner's).
fn generate(file: &Path) -> Result<(), GatewayError> {
    use base64::Engine as _;
    use std::os::unix::fs::OpenOptionsExt;

    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| GatewayError::io(format!("creating {}", dir.display()), e))?;
    }
    let mut bytes = [0u8; 32];
    sequoia_openpgp::crypto::random(&mut bytes)
        .map_err(|e| GatewayError::ServerKey(e.to_string()))?;
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(mut f) => {
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| GatewayError::io(format!("writing {}", file.display()), e))?;
            tracing::warn!(path = %file.display(), "generated a new server key; back it up: without it stored secret keys cannot be used");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(GatewayError::io(format!("creating {}", file.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_key_is_generated_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = GatewayConfig::default();
        load(&config, dir.path()).unwrap();
        let path = default_path(dir.path());
        let first = std::fs::read(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        load(&config, dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
    }

    #[test]
    fn short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, "short\n").unwrap();
        let config = GatewayConfig {
            server_key_file: Some(file),
            ..GatewayConfig::default()
        };
        assert!(matches!(
            load(&config, dir.path()),
            Err(GatewayError::ServerKey(_))
        ));
    }
}
