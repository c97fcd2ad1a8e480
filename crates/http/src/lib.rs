//! Postern's HTTP side: one HTTPS listener (default `127.0.0.1:5443`) that every web-facing
//! service mounts its routes on: WKD now, HTTP File Upload, and later the admin web, WebSocket
//! and metrics. Built on axum/hyper with tokio-rustls.
//!
//! # Layout
//!
//! - [`config`]: the `[http]` section (listeners, `public_url`, trusted proxies, limits).
//! - [`tls`]: each served domain's certificate by SNI, also for `<label>.<domain>` hosts a
//!   service names (WKD's `openpgpkey.`), ALPN `http/1.1`.
//! - [`origin`]: which of our hosts a request is for and who sent it ([`Origin`]), believing
//!   forwarded headers only from `trusted_proxies`; the base URL of each domain ([`Sites`]).
//! - [`body`]: request bodies cut when they stall (slowloris uploads).
//! - [`server`]: binding ([`Listeners`]), connection limits (global and per IP), the TLS
//!   handshake and header timeouts, hyper, graceful shutdown.
//!
//! # Path of a request
//!
//! TCP accept → connection limits → TLS (certificate by SNI) → hyper (HTTP/1.1) →
//! [`Origin`] resolved from the Host (unknown host: `421`), `public_url` path prefix stripped,
//! body wrapped in [`body::IdleBody`] → the merged axum [`Router`] of the services → the
//! service's handler, which reads the `Origin` from the request's extensions.

pub mod body;
pub mod config;
pub mod origin;
pub mod server;
pub mod tls;

pub use axum::Router;
pub use config::HttpConfig;
pub use origin::{Origin, PublicUrl, Sites};
pub use server::{Listeners, serve};

/// Why the HTTP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Sites {
    /// The sites of `config` for `domains` and the bound `listeners`, with the sub-host
    /// `labels` services named.
    pub fn from_config(
        config: &HttpConfig,
        domains: Vec<String>,
        labels: Vec<String>,
        listeners: &Listeners,
    ) -> Sites {
        let public = config
            .public_url
            .as_deref()
            .and_then(|u| PublicUrl::parse(u).ok());
        let port = listeners.https_addrs().first().map(|a| a.port());
        Sites::new(
            domains,
            labels,
            public,
            port,
            config.trusted_proxies.clone(),
        )
    }
}
