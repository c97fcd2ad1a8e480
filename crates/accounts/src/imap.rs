//! The `imap` account backend: a PLAIN password is checked by logging in to the
//! organisation's IMAP server with it (`AUTHENTICATE PLAIN`, base64 on the wire, so nothing
//! in a user name or password can break out of the command), over implicit TLS or STARTTLS,
//! the server's certificate verified. Works with any IMAP server: Dovecot, MDaemon,
//! Exchange, hosted mail.
//!
//! A refused pair (address, SHA-256 of the password) is refused again without asking the
//! server for `failure_cache`; anything that is not a clear NO (no answer in time, TLS
//! failure, `[UNAVAILABLE]`) is an error, which the SASL step answers with
//! `<temporary-auth-failure/>`, never a success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{ImapConfig, ImapUsername};

/// The IMAP server could not give an answer.
#[derive(Debug, thiserror::Error)]
#[error("IMAP account backend {target}: {reason}")]
pub struct Unavailable {
    target: String,
    reason: String,
}

/// Where the IMAP server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    host: String,
    port: u16,
    /// `imap://`: plain TCP, then STARTTLS (required).
    starttls: bool,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let (starttls, rest) = if let Some(r) = url.strip_prefix("imaps://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("imap://") {
            (true, r)
        } else {
            return Err(format!(
                "`{url}` is not imaps://host[:port] or imap://host[:port]"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` in `{url}` is not a port"))?,
            ),
            _ => (rest, if starttls { 143 } else { 993 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(format!("`{url}` names no host"));
        }
        Ok(Target {
            host: host.to_owned(),
            port,
            starttls,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.starttls { "imap" } else { "imaps" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The backend: where, how, and the refusals it remembers.
pub struct ImapBackend {
    target: Target,
    tls: TlsConnector,
    username: ImapUsername,
    timeout: Duration,
    pub(crate) scram_ttl: Duration,
    failure_cache: Duration,
    refused: Mutex<HashMap<(String, [u8; 32]), Instant>>,
}

impl std::fmt::Debug for ImapBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapBackend")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Refusals remembered at most; past it the oldest half goes.
const REFUSED_MAX: usize = 10_000;

impl ImapBackend {
    pub fn new(cfg: &ImapConfig) -> Result<ImapBackend, String> {
        Ok(ImapBackend {
            target: Target::parse(&cfg.url)?,
            tls: TlsConnector::from(postern_core::tls::client_config(cfg.ca_file.as_deref())?),
            username: cfg.username,
            timeout: cfg.timeout,
            scram_ttl: cfg.scram_ttl,
            failure_cache: cfg.failure_cache,
            refused: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the IMAP server takes `password` for `address` (`localpart@domain`).
    pub async fn check(&self, address: &str, password: &str) -> Result<bool, Unavailable> {
        // No IMAP password holds a line break or a NUL (Dovecot answers such a PLAIN
        // message with an error, not a NO): refused here, never sent.
        if [address, password]
            .iter()
            .any(|s| s.contains(['\r', '\n', '\0']))
        {
            return Ok(false);
        }
        let key = (
            address.to_owned(),
            Sha256::digest(password.as_bytes()).into(),
        );
        if self.recently_refused(&key) {
            return Ok(false);
        }
        let user = match self.username {
            ImapUsername::Address => address,
            ImapUsername::Localpart => address.split('@').next().unwrap_or(address),
        };
        let outcome = tokio::time::timeout(self.timeout, self.login(user, password))
            .await
            .map_err(|_| self.unavailable(format!("no answer within {:?}", self.timeout)))?;
        let ok = outcome?;
        if !ok {
            self.remember_refusal(key);
        }
        Ok(ok)
    }

    fn recently_refused(&self, key: &(String, [u8; 32])) -> bool {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        refused
            .get(key)
            .is_some_and(|at| at.elapsed() < self.failure_cache)
    }

    fn remember_refusal(&self, key: (String, [u8; 32])) {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if refused.len() >= REFUSED_MAX {
            let cache = self.failure_cache;
            refused.retain(|_, at| at.elapsed() < cache);
            if refused.len() >= REFUSED_MAX {
                refused.clear();
            }
        }
        refused.insert(key, Instant::now());
    }

    fn unavailable(&self, reason: impl Into<String>) -> Unavailable {
        Unavailable {
            target: self.target.to_string(),
            reason: reason.into(),
        }
    }

    /// One login attempt: `Ok(false)` for a NO, `Err` for anything else that is not OK.
    async fn login(&self, user: &str, password: &str) -> Result<bool, Unavailable> {
        let io = |e: std::io::Error| self.unavailable(e.to_string());
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.target.host.clone())
            .map_err(|e| self.unavailable(format!("host name: {e}")))?;
        let tcp = if self.target.starttls {
            let mut client = async_imap::Client::new(tcp);
            self.greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| self.unavailable(format!("STARTTLS refused: {e}")))?;
            client.into_inner()
        } else {
            tcp
        };
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| self.unavailable(format!("TLS: {e}")))?;
        let mut client = async_imap::Client::new(tls);
        if !self.target.starttls {
            self.greeting(&mut client).await?;
        }
        let plain = Plain(format!("\0{user}\0{password}").into_bytes());
        match client.authenticate("PLAIN", plain).await {
            Ok(mut session) => {
                let _ = session.logout().await;
                Ok(true)
            }
            // RFC 5530's UNAVAILABLE: the server cannot check now, which is no refusal.
            Err((async_imap::error::Error::No(text), _))
                if !text.to_ascii_uppercase().contains("UNAVAILABLE") =>
            {
                Ok(false)
            }
            Err((e, _)) => Err(self.unavailable(format!("AUTHENTICATE: {e}"))),
        }
    }

    async fn greeting<T>(&self, client: &mut async_imap::Client<T>) -> Result<(), Unavailable>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        match client.read_response().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(self.unavailable("closed before its greeting")),
            Err(e) => Err(self.unavailable(format!("greeting: {e}"))),
        }
    }
}

/// SASL PLAIN's one message.
struct Plain(Vec<u8>);

impl async_imap::Authenticator for Plain {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("imaps://mail.example.org").expect("ok");
        assert_eq!(
            (t.host.as_str(), t.port, t.starttls),
            ("mail.example.org", 993, false)
        );
        let t = Target::parse("imap://127.0.0.1:1143/").expect("ok");
        assert_eq!(
            (t.host.as_str(), t.port, t.starttls),
            ("127.0.0.1", 1143, true)
        );
        let t = Target::parse("imaps://[::1]:994").expect("ok");
        assert_eq!((t.host.as_str(), t.port), ("::1", 994));
        assert!(Target::parse("pop3://x").is_err());
        assert!(Target::parse("imaps://").is_err());
        assert!(Target::parse("imaps://x:notaport").is_err());
    }
}
