//! The `imap` account backend: a PLAIN password is checked by logging in to the
//! organisation's IMAP server with it (`AUTHENTICATE PLAIN`, base64 on the wire, so nothing
//! in a user name or password can break out of the command), over implicit TLS or STARTTLS,
//! the server's certificate verified. Works with any IMAP server: Dovecot, MDaemon,
//! Exchange, hosted mail.
//!
//! The refusal cache, the time limit and the SCRAM TTL are [`super::Backend`]'s.

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Unavailable;
use crate::config::ImapConfig;

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

/// Where the IMAP server is and how its certificate is checked.
pub struct ImapBackend {
    target: Target,
    tls: TlsConnector,
}

impl std::fmt::Debug for ImapBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapBackend")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for ImapBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IMAP {}", self.target)
    }
}

impl ImapBackend {
    pub fn new(cfg: &ImapConfig) -> Result<ImapBackend, String> {
        Ok(ImapBackend {
            target: Target::parse(&cfg.url)?,
            tls: TlsConnector::from(postern_core::tls::client_config(cfg.ca_file.as_deref())?),
        })
    }

    fn unavailable(&self, reason: impl Into<String>) -> Unavailable {
        Unavailable::new(self, reason)
    }

    /// One login attempt as `user`: `Ok(false)` for a NO, `Err` for anything else that is
    /// not OK.
    pub(crate) async fn check(&self, user: &str, password: &str) -> Result<bool, Unavailable> {
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
