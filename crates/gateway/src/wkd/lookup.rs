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

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::hash;
use crate::GatewayError;
use crate::config::WkdConfig;

/// Largest response read (a cert with a photo is rarely above 100 KB).
const BODY_MAX: usize = 512 * 1024;

/// The lookup client (reqwest over rustls with ring) with its cache.
pub struct Lookup {
    client: reqwest::Client,
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
        let tls = postern_core::tls::client_config(cfg.lookup_ca_file.as_deref())
            .map_err(GatewayError::Tls)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
            .user_agent(concat!("postern/", env!("CARGO_PKG_VERSION")))
            // WKD servers answer at the name asked; a redirect elsewhere is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(cfg.lookup_timeout)
            .build()
            .map_err(|e| GatewayError::Tls(format!("WKD lookup client: {e}")))?;
        Ok(Lookup {
            client,
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
        let local = utf8_percent_encode(local, NON_ALPHANUMERIC).to_string();
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

    /// One HTTPS GET; the body of a 200 (at most [`BODY_MAX`]), empty for anything else.
    async fn get(&self, host: &str, path: &str) -> Result<Vec<u8>, reqwest::Error> {
        let url = format!("https://{host}:{}{path}", self.port);
        let mut resp = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/octet-stream")
            .send()
            .await?;
        if resp.status() != reqwest::StatusCode::OK {
            return Ok(Vec::new());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() + chunk.len() > BODY_MAX {
                tracing::debug!(%host, "WKD response larger than {BODY_MAX} bytes: ignored");
                return Ok(Vec::new());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
