//! The `[http]` section: where the HTTPS listener is, how clients reach it, whom to believe
//! about forwarded requests, and the limits every connection runs under.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// The `[http]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// HTTPS listeners (each served domain's certificate, chosen by SNI).
    pub listen: Vec<SocketAddr>,
    /// Plain HTTP listeners, for a TLS-terminating reverse proxy on the same machine: loopback
    /// addresses only.
    pub listen_plain: Vec<SocketAddr>,
    /// The base URL clients reach this server under, when it is not
    /// `https://<domain>:<port of the first listener>` (behind a reverse proxy or a port
    /// forward): `"https://chat.example.com"`, or with `{domain}` for one host per domain
    /// (`"https://files.{domain}"`). A path (`https://example.com/postern`) is allowed; the
    /// proxy passes it on, and it is stripped before routing.
    pub public_url: Option<String>,
    /// Peers (the reverse proxy) whose `X-Forwarded-For`, `-Proto` and `-Host` headers are
    /// believed. Anyone else's are ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Concurrent connections, all listeners together; more are closed at once.
    pub max_connections: usize,
    /// Concurrent connections from one IP address (a trusted proxy is exempt).
    pub max_connections_per_ip: usize,
    /// Time for a TLS handshake, and for a request's head to arrive (slowloris).
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub header_timeout: Duration,
    /// Longest silence in the middle of a request body (an upload) before it is cut.
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub body_idle_timeout: Duration,
    /// Largest request head (request line and header fields).
    #[serde(deserialize_with = "postern_core::config::bytes")]
    pub max_header_size: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5443))],
            listen_plain: Vec::new(),
            public_url: None,
            trusted_proxies: Vec::new(),
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_header_size: 16 * 1024,
        }
    }
}

impl HttpConfig {
    /// Every problem with the section, worded for the admin.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.listen_plain {
            if !a.ip().is_loopback() {
                out.push(format!(
                    "http.listen_plain: {a} is not a loopback address (plain HTTP is only for a \
                     reverse proxy on this machine; use `listen` for HTTPS)"
                ));
            }
        }
        if let Some(url) = &self.public_url
            && let Err(e) = crate::origin::PublicUrl::parse(url)
        {
            out.push(format!("http.public_url: {e}"));
        }
        if self.max_connections == 0 {
            out.push("http.max_connections: must be at least 1".into());
        }
        if self.max_connections_per_ip == 0 {
            out.push("http.max_connections_per_ip: must be at least 1".into());
        }
        if self.max_header_size < 1024 {
            out.push("http.max_header_size: must be at least 1 KiB".into());
        }
        for (name, d) in [
            ("header_timeout", self.header_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
        ] {
            if d.is_zero() {
                out.push(format!("http.{name}: must be more than zero"));
            }
        }
        out
    }

    /// Whether any listener is configured.
    pub fn enabled(&self) -> bool {
        !(self.listen.is_empty() && self.listen_plain.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_loopback_https_and_valid() {
        let c = HttpConfig::default();
        assert!(c.problems().is_empty());
        assert!(c.listen.iter().all(|a| a.ip().is_loopback()));
        assert!(c.listen_plain.is_empty());
    }

    #[test]
    fn plain_http_off_loopback_and_bad_urls_are_refused() {
        let c = HttpConfig {
            listen_plain: vec!["0.0.0.0:8080".parse().expect("addr")],
            public_url: Some("ftp://x".into()),
            max_connections: 0,
            ..HttpConfig::default()
        };
        let p = c.problems();
        assert_eq!(p.len(), 3, "{p:#?}");
    }
}
