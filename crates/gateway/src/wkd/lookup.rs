//! WKD lookup: finding an outside recipient's key by address when none is stored, so mail
//! to people who publish by WKD is encrypted without an admin import. The advanced method
//! (`openpgpkey.<domain>`) is tried first, then the direct one, each within `timeout`;
//! every address is asked at most once per `cache` period (found or not), so a keyless
//! correspondent costs one lookup an hour, not one per mail. What is found goes through
//! [`crate::learn::outside_key`]: the user ID for the address only, never a served domain,
//! never over a newer key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::hash;
use crate::GatewayError;
use crate::config::WkdConfig;

/// Largest response read (a cert with a photo is rarely above 100 KB).
const BODY_MAX: usize = 512 * 1024;

/// The lookup client with its cache.
pub struct Lookup {
    connector: TlsConnector,
    port: u16,
    timeout: Duration,
    cache_for: Duration,
    /// Address → when it was last looked up.
    asked: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup").field("port", &self.port).finish()
    }
}

impl Lookup {
    /// A client trusting the PEM bundle `cfg.lookup_ca_file` (default: the system's).
    pub fn new(cfg: &WkdConfig) -> Result<Lookup, GatewayError> {
        let config = postern_core::tls::client_config(cfg.lookup_ca_file.as_deref())
            .map_err(GatewayError::Tls)?;
        Ok(Lookup {
            connector: TlsConnector::from(config),
            port: cfg.lookup_port,
            timeout: cfg.lookup_timeout,
            cache_for: cfg.lookup_cache,
            asked: Mutex::new(HashMap::new()),
        })
    }

    /// The keys published for `address`, unless it was asked recently or nothing is found.
    pub async fn fetch(&self, address: &str) -> Option<Vec<u8>> {
        let address = address.to_lowercase();
        let (local, domain) = address.rsplit_once('@')?;
        {
            let mut asked = self.asked.lock().ok()?;
            let now = Instant::now();
            if asked
                .get(&address)
                .is_some_and(|t| now.duration_since(*t) < self.cache_for)
            {
                return None;
            }
            if asked.len() > 100_000 {
                asked.retain(|_, t| now.duration_since(*t) < self.cache_for);
            }
            asked.insert(address.clone(), now);
        }
        let h = hash(local);
        let attempts = [
            (
                format!("openpgpkey.{domain}"),
                format!("/.well-known/openpgpkey/{domain}/hu/{h}?l={local}"),
            ),
            (
                domain.to_owned(),
                format!("/.well-known/openpgpkey/hu/{h}?l={local}"),
            ),
        ];
        for (host, path) in attempts {
            match tokio::time::timeout(self.timeout, self.get(&host, &path)).await {
                Ok(Ok(body)) if !body.is_empty() => {
                    tracing::info!(%address, %host, "found a key by WKD");
                    return Some(body);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(%address, %host, error = %e, "WKD lookup failed"),
                Err(_) => tracing::debug!(%address, %host, "WKD lookup timed out"),
            }
        }
        None
    }

    /// One HTTPS GET; the body of a 200, empty for anything else.
    async fn get(&self, host: &str, path: &str) -> std::io::Result<Vec<u8>> {
        let tcp = TcpStream::connect((host, self.port)).await?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut tls = self.connector.connect(name, tcp).await?;
        tls.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: postern\r\n\
                 Accept: application/octet-stream\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        let mut limited = (&mut tls).take(BODY_MAX as u64 + 16 * 1024);
        // A server closing without close_notify still gave us the whole response.
        if let Err(e) = limited.read_to_end(&mut raw).await
            && e.kind() != std::io::ErrorKind::UnexpectedEof
        {
            return Err(e);
        }
        Ok(parse_response(&raw).unwrap_or_default())
    }
}

/// The body of an HTTP/1.1 200 response (plain or chunked); `None` otherwise.
pub fn parse_response(raw: &[u8]) -> Option<Vec<u8>> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?;
    if status != "200" {
        return None;
    }
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    if !chunked {
        return Some(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = rest.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"),
            Some(b"abcde".to_vec())
        );
        assert_eq!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n"), None);
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
    }
}
