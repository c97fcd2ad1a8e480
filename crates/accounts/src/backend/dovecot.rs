//! The `dovecot` account backend: Dovecot's authentication protocol (v1) on its auth
//! socket, the way Postfix checks SMTP AUTH, and the auth-master protocol on its
//! auth-userdb socket to list the accounts Dovecot knows.
//!
//! Hand-written: no maintained crate speaks either protocol, and both are a handful of
//! tab-separated lines (<https://doc.dovecot.org/developer_manual/design/auth_protocol/>).
//! A check is one `AUTH … PLAIN … resp=<base64>` line, so nothing in a user name or
//! password reaches Dovecot outside base64. Connections to the auth socket are kept
//! (several checks, one at a time each) and opened again when Dovecot closed them.
//!
//! Answers: `OK` → taken; `FAIL` → refused, unless it says `temp` (Dovecot's passdb could
//! not answer), which is [`Unavailable`] like a dead socket or a garbled line.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};

use super::Unavailable;
use crate::config::DovecotConfig;

/// Where a Dovecot socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Socket {
    Unix(PathBuf),
    Inet(String, u16),
}

impl Socket {
    /// A path (`/run/dovecot/auth-client`) or `inet:host:port`, as Postfix writes them.
    pub(crate) fn parse(text: &str) -> Result<Socket, String> {
        if let Some(rest) = text.strip_prefix("inet:") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("`{text}` is not inet:host:port"))?;
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{port}` in `{text}` is not a port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("`{text}` names no host"));
            }
            return Ok(Socket::Inet(host.to_owned(), port));
        }
        if !text.starts_with('/') {
            return Err(format!(
                "`{text}` is neither an absolute path nor inet:host:port"
            ));
        }
        Ok(Socket::Unix(PathBuf::from(text)))
    }

    async fn connect(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Socket::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
            Socket::Inet(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                let _ = tcp.set_nodelay(true);
                Box::pin(tcp)
            }
        })
    }
}

impl std::fmt::Display for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Socket::Unix(path) => write!(f, "{}", path.display()),
            Socket::Inet(host, port) => write!(f, "inet:{host}:{port}"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}
type Stream = Pin<Box<dyn Io>>;

/// The longest line either protocol sends (Dovecot's own limit is 16 KiB).
const MAX_LINE: u64 = 64 * 1024;
/// Idle auth connections kept.
const IDLE_MAX: usize = 8;
/// Accounts read from one listing at most.
const LIST_MAX: usize = 1_000_000;

/// One line-based connection.
struct Conn {
    io: BufReader<Stream>,
}

impl Conn {
    async fn open(socket: &Socket) -> std::io::Result<Conn> {
        Ok(Conn {
            io: BufReader::new(socket.connect().await?),
        })
    }

    async fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.io.get_mut().write_all(text.as_bytes()).await?;
        self.io.get_mut().flush().await
    }

    /// The next line without its LF, split at tabs (unescaped); an error at the end of the
    /// stream or past [`MAX_LINE`].
    async fn line(&mut self) -> std::io::Result<Vec<String>> {
        let mut buf = Vec::new();
        (&mut self.io)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await?;
        if buf.pop() != Some(b'\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                if buf.is_empty() {
                    "closed"
                } else {
                    "a line without an end"
                },
            ));
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text.split('\t').map(unescape).collect())
    }
}

/// Dovecot's tab-escaping: `\x01` then `0` NUL, `1` itself, `t` TAB, `r` CR, `n`/`l` LF.
fn unescape(field: &str) -> String {
    if !field.contains('\x01') {
        return field.to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n' | 'l') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Dovecot's auth service, as configured.
pub struct DovecotBackend {
    auth: Socket,
    userdb: Option<Socket>,
    service: String,
    sync_interval: Duration,
    idle: Mutex<Vec<Conn>>,
    /// Request ids: Dovecot reads them as 32-bit numbers; they wrap (only the requests in
    /// flight on one connection must differ, and that is one).
    next_id: AtomicU32,
}

impl std::fmt::Debug for DovecotBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DovecotBackend")
            .field("auth", &self.auth)
            .field("userdb", &self.userdb)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for DovecotBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dovecot auth {}", self.auth)
    }
}

/// What one AUTH request came to.
enum Answer {
    Ok,
    Refused,
}

impl DovecotBackend {
    pub fn new(cfg: &DovecotConfig) -> Result<DovecotBackend, String> {
        Ok(DovecotBackend {
            auth: Socket::parse(&cfg.auth_socket)?,
            userdb: cfg
                .userdb_socket
                .as_deref()
                .map(Socket::parse)
                .transpose()?,
            service: cfg.service.clone(),
            sync_interval: cfg.sync_interval,
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU32::new(1),
        })
    }

    fn unavailable(&self, reason: impl Into<String>) -> Unavailable {
        Unavailable::new(self, reason)
    }

    pub(crate) fn sync_interval(&self) -> Option<Duration> {
        self.userdb.as_ref().map(|_| self.sync_interval)
    }

    /// Whether Dovecot takes `password` for `user`. A kept connection that fails before an
    /// answer (Dovecot restarted since) is replaced by a new one once.
    pub(crate) async fn check(&self, user: &str, password: &str) -> Result<bool, Unavailable> {
        let resp =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let kept = self.take_idle();
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(conn) => conn,
            None => self.handshake().await?,
        };
        let answer = match self.ask(&mut conn, user, &resp).await {
            Err(_) if reused => {
                conn = self.handshake().await?;
                self.ask(&mut conn, user, &resp).await
            }
            other => other,
        };
        let answer = answer.map_err(|e| self.unavailable(e.to_string()))?;
        self.put_idle(conn);
        Ok(matches!(answer?, Answer::Ok))
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
    }

    /// A new auth connection, past the handshake: Dovecot's major version is 1 and it
    /// offers PLAIN.
    async fn handshake(&self) -> Result<Conn, Unavailable> {
        let mut conn = Conn::open(&self.auth)
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        let io = |e: std::io::Error| self.unavailable(format!("handshake: {e}"));
        conn.send(&format!("VERSION\t1\t1\nCPID\t{}\n", std::process::id()))
            .await
            .map_err(io)?;
        let mut plain = false;
        loop {
            let line = conn.line().await.map_err(io)?;
            match line.first().map(String::as_str) {
                Some("VERSION") if line.get(1).map(String::as_str) != Some("1") => {
                    return Err(self.unavailable(format!(
                        "protocol version {} (1 expected)",
                        line.get(1).map_or("", String::as_str)
                    )));
                }
                Some("MECH") if line.get(1).is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) => {
                    plain = true;
                }
                Some("DONE") => break,
                _ => {}
            }
        }
        if !plain {
            return Err(
                self.unavailable("Dovecot does not offer PLAIN (auth_mechanisms = plain …)")
            );
        }
        Ok(conn)
    }

    /// One AUTH request for `user` on `conn`: the outer error is the connection's (it is
    /// dropped), the inner a garbled or temporary answer.
    async fn ask(
        &self,
        conn: &mut Conn,
        user: &str,
        resp: &str,
    ) -> std::io::Result<Result<Answer, Unavailable>> {
        let id = self
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .max(1)
            .to_string();
        // `secured`: Postern takes PLAIN only over TLS. `no-penalty`: every login comes
        // from Postern's address, so Dovecot's per-IP delay would punish everyone for one.
        conn.send(&format!(
            "AUTH\t{id}\tPLAIN\tservice={}\tsecured\tno-penalty\tnologin\tresp={resp}\n",
            self.service
        ))
        .await?;
        loop {
            let line = conn.line().await?;
            if line.get(1) != Some(&id) {
                continue;
            }
            let params = &line[2..];
            return Ok(match line[0].as_str() {
                "OK" => Ok(success(params, user)),
                "FAIL" if params.iter().any(|p| p == "temp" || p == "code=temp_fail") => Err(self
                    .unavailable(format!(
                        "temporary failure{}",
                        reason(params).map(|r| format!(": {r}")).unwrap_or_default()
                    ))),
                "FAIL" => Ok(Answer::Refused),
                other => Err(self.unavailable(format!("unexpected answer {other}"))),
            });
        }
    }

    /// Every user name the auth-userdb socket lists, when one is configured.
    pub(crate) fn list(
        &self,
    ) -> Option<impl std::future::Future<Output = Result<Vec<String>, Unavailable>> + Send + '_>
    {
        let socket = self.userdb.as_ref()?;
        Some(async move {
            let unavailable = |e: String| Unavailable::new(format!("Dovecot userdb {socket}"), e);
            let mut conn = Conn::open(socket)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            conn.send(&format!(
                "VERSION\t1\t0\nLIST\t1\tservice={}\n",
                self.service
            ))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
            let mut users = Vec::new();
            loop {
                let line = conn.line().await.map_err(|e| unavailable(e.to_string()))?;
                match (line[0].as_str(), line.get(1).map(String::as_str)) {
                    ("VERSION", Some(v)) if v != "1" => {
                        return Err(unavailable(format!("protocol version {v} (1 expected)")));
                    }
                    ("LIST", Some("1")) => {
                        if users.len() >= LIST_MAX {
                            return Err(unavailable(format!("more than {LIST_MAX} accounts")));
                        }
                        if let Some(user) = line.get(2) {
                            users.push(user.clone());
                        }
                    }
                    ("DONE", Some("1")) => {
                        // `DONE 1 fail`: the iteration broke off; a partial list would
                        // look like deleted accounts.
                        if line[2..].iter().any(|p| !p.is_empty()) {
                            return Err(unavailable(
                                "the listing failed (see Dovecot's log)".into(),
                            ));
                        }
                        return Ok(users);
                    }
                    ("FAIL", Some("1")) => {
                        return Err(unavailable(format!(
                            "listing refused{}",
                            reason(&line[2..])
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        )));
                    }
                    _ => {}
                }
            }
        })
    }
}

/// What an `OK` means for Postern. Dovecot's login processes, not its auth service, enforce
/// the passdb's `nologin` (a disabled mailbox) and `proxy` (the mailbox lives on another
/// server, and with `nopassword` the password was never checked): each is a refusal here.
/// So is an `OK` for another user than the one asked about (a passdb that rewrites names).
fn success(params: &[String], user: &str) -> Answer {
    let refused = params.iter().any(|p| {
        let key = p.split('=').next().unwrap_or(p);
        matches!(
            key,
            "nologin" | "proxy" | "proxy_maybe" | "host" | "nopassword"
        ) || p
            .strip_prefix("user=")
            .is_some_and(|u| !u.eq_ignore_ascii_case(user))
    });
    if refused {
        tracing::info!(user, answer = ?params, "Dovecot took the password but its answer does not let the user log in here");
        Answer::Refused
    } else {
        Answer::Ok
    }
}

fn reason(params: &[String]) -> Option<&str> {
    params.iter().find_map(|p| p.strip_prefix("reason="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets() {
        assert_eq!(
            Socket::parse("/run/dovecot/auth-client"),
            Ok(Socket::Unix("/run/dovecot/auth-client".into()))
        );
        assert_eq!(
            Socket::parse("inet:127.0.0.1:12345"),
            Ok(Socket::Inet("127.0.0.1".into(), 12345))
        );
        assert_eq!(
            Socket::parse("inet:[::1]:1"),
            Ok(Socket::Inet("::1".into(), 1))
        );
        assert!(Socket::parse("auth-client").is_err());
        assert!(Socket::parse("inet:host").is_err());
        assert!(Socket::parse("inet::12").is_err());
    }

    #[test]
    fn only_a_plain_ok_for_the_user_is_a_success() {
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(matches!(success(&p(&["user=a@x"]), "a@x"), Answer::Ok));
        assert!(matches!(success(&p(&["user=A@X"]), "a@x"), Answer::Ok));
        assert!(matches!(success(&p(&[]), "a@x"), Answer::Ok));
        for refused in [
            &["user=a@x", "nologin", "reason=gone"][..],
            &["user=a@x", "proxy", "host=10.0.0.2", "nopassword"],
            &["user=a@x", "proxy_maybe"],
            &["user=b@x"],
        ] {
            assert!(
                matches!(success(&p(refused), "a@x"), Answer::Refused),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn tab_escaping() {
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("a\x01tb\x01nc\x010d\x011"), "a\tb\nc\0d\x01");
    }
}
