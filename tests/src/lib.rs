//! Helpers for the end-to-end tests: start the real server (the same `postern::start` that
//! `postern serve` runs) on port 0 in a temporary data dir, and connect real clients to it —
//! tokio-xmpp with a connector that trusts the server's generated certificate, or a raw TLS
//! socket for bad input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sasl::common::ChannelBinding;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::parsers::jid::{BareJid, Jid};
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts,
    XmppStreamElement, initiate_stream,
};
use tokio_xmpp::{Client, Event};

pub use postern::Config;

pub mod backend_login;
pub mod dovecot;
pub mod mariadb;
pub mod process;
pub mod scram;
pub mod slapd;

/// A running Postern with its own data dir.
pub struct TestServer {
    pub config: Config,
    running: Option<postern::Running>,
    pub starttls: SocketAddr,
    pub direct_tls: SocketAddr,
    /// The HTTPS listener (uploads), when `[http]` has one.
    pub https: Option<SocketAddr>,
    /// The plain HTTP listener (for a reverse proxy), when `[http] listen_plain` has one.
    pub http_plain: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the server serving `localhost` and `example.org` on loopback port 0.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], after `tweak` has edited the config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let text = format!(
            r#"
            data_dir = "{}"
            [[domain]]
            name = "localhost"
            [[domain]]
            name = "example.org"
            [xmpp]
            starttls = ["127.0.0.1:0"]
            direct_tls = ["127.0.0.1:0"]
            [gateway]
            listen = "127.0.0.1:0"
            [xmpp.proxy65]
            listen = ["127.0.0.1:0"]
            [http]
            listen = ["127.0.0.1:0"]
            "#,
            dir.path().display()
        );
        let mut config: Config = toml::from_str(&text)?;
        tweak(&mut config);
        let problems = config.problems();
        if !problems.is_empty() {
            bail!("test config invalid: {problems:?}");
        }
        let running = postern::start(&config).await?;
        let starttls = *running.starttls.first().context("no starttls listener")?;
        let direct_tls = *running
            .direct_tls
            .first()
            .context("no direct tls listener")?;
        let https = running.https.first().copied();
        let http_plain = running.http_plain.first().copied();
        Ok(TestServer {
            config,
            running: Some(running),
            starttls,
            direct_tls,
            https,
            http_plain,
            _dir: dir,
        })
    }

    pub async fn add_account(&self, address: &str, password: &str) -> anyhow::Result<()> {
        let running = self.running.as_ref().context("stopped")?;
        running.accounts.add(address, password).await?;
        Ok(())
    }

    /// Waits until the server counts at most `n` open client connections (its connection
    /// tasks have ended): a barrier for tests of connection limits. Panics after 10 s.
    pub async fn until_connections_at_most(&self, n: usize) {
        let xmpp = self
            .running
            .as_ref()
            .and_then(|r| r.xmpp.clone())
            .expect("an XMPP server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while xmpp.open_connections() > n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} connections still open",
                xmpp.open_connections()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn accounts(&self) -> &postern_accounts::Accounts {
        &self.running.as_ref().expect("running").accounts
    }

    /// The generated certificate of `domain`, as a client trust anchor.
    pub fn certificate(&self, domain: &str) -> CertificateDer<'static> {
        let path = self
            .config
            .data_dir
            .join("certs")
            .join(format!("{domain}.crt"));
        CertificateDer::from_pem_file(&path).expect("generated certificate")
    }

    pub fn tls_config(&self, domain: &str) -> Arc<rustls::ClientConfig> {
        trusting(self.certificate(domain))
    }

    /// A tokio-xmpp client that logs in over STARTTLS (channel binding as the TLS offers).
    pub fn client(&self, jid: &str, password: &str) -> Client {
        self.client_with(jid, password, Mode::StartTls, true)
    }

    pub fn client_with(&self, jid: &str, password: &str, mode: Mode, bind_channel: bool) -> Client {
        let jid: Jid = jid.parse().expect("jid");
        let domain = jid.domain().to_string();
        let addr = match mode {
            Mode::StartTls => self.starttls,
            Mode::DirectTls => self.direct_tls,
        };
        let connector = Connector {
            addr,
            mode,
            tls: self.tls_config(&domain),
            bind_channel,
        };
        Client::new_with_connector(jid, password, connector, Timeouts::tight())
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    StartTls,
    DirectTls,
}

/// A tokio-xmpp connector for the test server: fixed address, trusts its certificate.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    mode: Mode,
    tls: Arc<rustls::ClientConfig>,
    /// Send tls-exporter data (SCRAM-*-PLUS) when the TLS version allows it.
    bind_channel: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector({}, {:?})", self.addr, self.mode)
    }
}

impl ServerConnector for Connector {
    type Stream = BufStream<TlsStream<TcpStream>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), tokio_xmpp::Error> {
        let domain = jid.domain().to_string();
        let mut tcp = TcpStream::connect(self.addr).await?;
        if self.mode == Mode::StartTls {
            let header = StreamHeader {
                to: Some(domain.clone().into()),
                from: None,
                id: None,
            };
            let pending = initiate_stream(BufStream::new(tcp), ns, header, timeouts).await?;
            let (features, mut stream) = pending.recv_features::<FallibleStreamElement>().await?;
            if !features.can_starttls() {
                return Err(tokio_xmpp::Error::Disconnected);
            }
            stream
                .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                    starttls::Request,
                )))
                .await?;
            loop {
                match stream
                    .next()
                    .await
                    .map(|v| v.and_then(|e| e.into_read_error()))
                {
                    Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                    Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
                    _ => return Err(tokio_xmpp::Error::Disconnected),
                }
            }
            tcp = stream.into_inner().into_inner();
        }
        let name = ServerName::try_from(domain.clone()).map_err(std::io::Error::other)?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let binding = match (self.bind_channel, tls.get_ref().1.protocol_version()) {
            (true, Some(rustls::ProtocolVersion::TLSv1_3)) => {
                let data = tls
                    .get_ref()
                    .1
                    .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
                    .map_err(std::io::Error::other)?;
                ChannelBinding::TlsExporter(data)
            }
            (false, _) => ChannelBinding::None,
            _ => ChannelBinding::Unsupported,
        };
        let header = StreamHeader {
            to: Some(domain.into()),
            from: None,
            id: None,
        };
        let pending = initiate_stream(BufStream::new(tls), ns, header, timeouts).await?;
        Ok((pending, binding))
    }
}

/// Waits for the client to come online; fails on disconnect or after 10 s.
pub async fn online(client: &mut Client) -> anyhow::Result<Jid> {
    let deadline = Duration::from_secs(10);
    tokio::time::timeout(deadline, async {
        while let Some(event) = client.next().await {
            match event {
                Event::Online { bound_jid, .. } => return Ok(bound_jid),
                Event::Disconnected(e) => bail!("disconnected before online: {e}"),
                Event::Stanza(_) => {}
            }
        }
        bail!("client stream ended")
    })
    .await
    .context("timed out waiting to come online")?
}

/// Waits for the first stanza matching `pick`, skipping others; 10 s at most.
pub async fn expect<T>(
    client: &mut Client,
    mut pick: impl FnMut(&tokio_xmpp::Stanza) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = client.next().await {
            match event {
                Event::Stanza(s) => {
                    if let Some(t) = pick(&s) {
                        return Ok(t);
                    }
                }
                Event::Disconnected(e) => bail!("disconnected: {e}"),
                Event::Online { .. } => {}
            }
        }
        bail!("client stream ended")
    })
    .await
    .context("timed out waiting for a stanza")?
}

/// A ping round trip to the server: everything `client` sent before has been handled (the
/// server handles a client's stanzas in order), and what the server sent before the answer
/// has been read, stream-management requests included (tokio-xmpp answers them itself).
pub async fn round_trip(client: &mut Client, id: &str) -> anyhow::Result<()> {
    let ping = tokio_xmpp::parsers::iq::Iq::from_get(id, tokio_xmpp::parsers::ping::Ping);
    client.send_stanza(tokio_xmpp::Stanza::Iq(ping)).await?;
    expect(client, |s| match s {
        tokio_xmpp::Stanza::Iq(iq) if iq.id() == id => Some(()),
        _ => None,
    })
    .await
}

/// Whether serialized XML contains an element `name` (`<name/>`, `<name>` or `<name attr…`).
pub fn has(xml: &str, name: &str) -> bool {
    let open = format!("<{name}");
    xml.match_indices(&open)
        .any(|(i, _)| matches!(xml[i + open.len()..].chars().next(), Some('/' | '>' | ' ')))
}

/// A TLS client configuration trusting only `cert` (a test server's generated certificate).
pub fn trusting(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

pub fn bare(s: &str) -> BareJid {
    s.parse().expect("bare jid")
}

/// A raw socket speaking XML by hand, for bad input and exact protocol checks.
/// The value of attribute `name` in the first tag of `xml` that has it (either quote style).
pub fn attr(xml: &str, name: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(i) = xml.find(&key) {
            let rest = &xml[i + key.len()..];
            return rest.find(quote).map(|end| rest[..end].to_owned());
        }
    }
    None
}

pub struct Raw {
    stream: RawStream,
    /// Everything received so far, not yet consumed by [`Raw::read_until`].
    pub buffer: String,
}

enum RawStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between giving up the plain socket and getting the TLS one.
    Upgrading,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Raw> {
        let tcp = TcpStream::connect(addr).await?;
        // A stanza and the ping after it leave at once, as a real client's would (no Nagle
        // wait for the server's delayed ACK).
        tcp.set_nodelay(true)?;
        Ok(Raw {
            stream: RawStream::Plain(tcp),
            buffer: String::new(),
        })
    }

    /// Like [`Raw::connect`], with a receive buffer of `bytes`: a client that reads slowly
    /// (or not at all) fills it, and the server's writes to it stall.
    pub async fn connect_small_window(addr: SocketAddr, bytes: u32) -> anyhow::Result<Raw> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(bytes)?;
        Ok(Raw {
            stream: RawStream::Plain(socket.connect(addr).await?),
            buffer: String::new(),
        })
    }

    pub async fn send(&mut self, data: &str) -> anyhow::Result<()> {
        match &mut self.stream {
            RawStream::Plain(s) => s.write_all(data.as_bytes()).await?,
            RawStream::Tls(s) => {
                s.write_all(data.as_bytes()).await?;
                s.flush().await?;
            }
            RawStream::Upgrading => bail!("no connection"),
        }
        Ok(())
    }

    pub async fn send_bytes(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match &mut self.stream {
            RawStream::Plain(s) => s.write_all(data).await?,
            RawStream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await?;
            }
            RawStream::Upgrading => bail!("no connection"),
        }
        Ok(())
    }

    /// Reads until `needle` appears; returns everything up to and including it.
    pub async fn read_until(&mut self, needle: &str) -> anyhow::Result<String> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(i) = self.buffer.find(needle) {
                    let rest = self.buffer.split_off(i + needle.len());
                    return Ok(std::mem::replace(&mut self.buffer, rest));
                }
                let mut buf = vec![0u8; 16384];
                let n = match &mut self.stream {
                    RawStream::Plain(s) => s.read(&mut buf).await?,
                    RawStream::Tls(s) => s.read(&mut buf).await?,
                    RawStream::Upgrading => 0,
                };
                if n == 0 {
                    bail!("connection closed; received so far: {}", self.buffer);
                }
                self.buffer.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .with_context(|| format!("waiting for {needle:?}"))?
    }

    /// Reads through the next complete `<name …/>` or `<name …>…</name>` element; returns
    /// everything read up to its end.
    pub async fn read_element(&mut self, name: &str) -> anyhow::Result<String> {
        let mut out = self.read_until(&format!("<{name}")).await?;
        let head = self.read_until(">").await?;
        let closed = head.ends_with("/>");
        out.push_str(&head);
        if !closed {
            out.push_str(&self.read_until(&format!("</{name}>")).await?);
        }
        Ok(out)
    }

    /// Reads until the peer closes the connection; returns all it sent.
    pub async fn read_to_close(&mut self) -> anyhow::Result<String> {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0u8; 16384];
            loop {
                let n = match &mut self.stream {
                    RawStream::Plain(s) => s.read(&mut buf).await,
                    RawStream::Tls(s) => s.read(&mut buf).await,
                    RawStream::Upgrading => Ok(0),
                };
                match n {
                    Ok(0) | Err(_) => return Ok(std::mem::take(&mut self.buffer)),
                    Ok(n) => self.buffer.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        })
        .await
        .context("waiting for the server to close")?
    }

    /// Opens a stream to `domain` and does STARTTLS, trusting `tls`.
    pub async fn starttls(
        &mut self,
        domain: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<()> {
        self.open(domain).await?;
        self.read_until("</stream:features>").await?;
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        self.read_element("proceed").await?;
        self.upgrade(domain, tls).await
    }

    /// The TLS handshake after `<proceed/>`.
    pub async fn upgrade(
        &mut self,
        domain: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<()> {
        let RawStream::Plain(tcp) = std::mem::replace(&mut self.stream, RawStream::Upgrading)
        else {
            bail!("already TLS");
        };
        let name = ServerName::try_from(domain.to_owned())?;
        let tls = TlsConnector::from(tls).connect(name, tcp).await?;
        self.stream = RawStream::Tls(Box::new(tls));
        self.buffer.clear();
        Ok(())
    }

    pub async fn open(&mut self, domain: &str) -> anyhow::Result<()> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ))
        .await
    }

    /// TLS exporter channel-binding data of the connection (TLS 1.3).
    pub fn tls_exporter(&self) -> Option<Vec<u8>> {
        match &self.stream {
            RawStream::Tls(s) => s
                .get_ref()
                .1
                .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok(),
            RawStream::Plain(_) | RawStream::Upgrading => None,
        }
    }

    /// The server's leaf certificate as seen on this connection.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match &self.stream {
            RawStream::Tls(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec()),
            RawStream::Plain(_) | RawStream::Upgrading => None,
        }
    }
}

impl Raw {
    /// STARTTLS to `domain` and read the SASL features; returns them.
    pub async fn secured(server: &TestServer, domain: &str) -> anyhow::Result<(Raw, String)> {
        Raw::secured_with(server, domain, Mode::StartTls).await
    }

    /// Like [`Raw::secured`], over STARTTLS or direct TLS.
    pub async fn secured_with(
        server: &TestServer,
        domain: &str,
        mode: Mode,
    ) -> anyhow::Result<(Raw, String)> {
        let mut raw = match mode {
            Mode::StartTls => {
                let mut raw = Raw::connect(server.starttls).await?;
                raw.starttls(domain, server.tls_config(domain)).await?;
                raw
            }
            Mode::DirectTls => {
                let tcp = TcpStream::connect(server.direct_tls).await?;
                let name = ServerName::try_from(domain.to_owned())?;
                let tls = TlsConnector::from(server.tls_config(domain))
                    .connect(name, tcp)
                    .await?;
                Raw {
                    stream: RawStream::Tls(Box::new(tls)),
                    buffer: String::new(),
                }
            }
        };
        raw.open(domain).await?;
        let features = raw.read_until("</stream:features>").await?;
        Ok((raw, features))
    }

    /// Sends SASL PLAIN and returns the server's answer element (`<success…` or `<failure…`).
    pub async fn plain(&mut self, user: &str, password: &str) -> anyhow::Result<String> {
        self.plain_with_suffix(user, password, "").await
    }

    /// Like [`Raw::plain`], with `suffix` (e.g. whitespace) sent right after the element.
    pub async fn plain_with_suffix(
        &mut self,
        user: &str,
        password: &str,
        suffix: &str,
    ) -> anyhow::Result<String> {
        let data = B64.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{data}</auth>{suffix}"
        ))
        .await?;
        self.sasl_answer().await
    }

    /// Reads the next `<success…>` or `<failure…</failure>` element.
    pub async fn sasl_answer(&mut self) -> anyhow::Result<String> {
        let head = self.read_until(">").await?;
        if head.contains("<success") {
            if head.ends_with("/>") {
                return Ok(head);
            }
            return Ok(head + &self.read_until("</success>").await?);
        }
        if head.contains("<challenge") {
            return Ok(head + &self.read_until("</challenge>").await?);
        }
        if head.contains("<failure") {
            return Ok(head + &self.read_until("</failure>").await?);
        }
        bail!("unexpected SASL answer: {head}")
    }

    /// A full login: STARTTLS, PLAIN, restart, bind `resource`.
    /// Authenticated with PLAIN and the stream restarted, not yet bound; returns the
    /// features offered after authentication.
    pub async fn authenticated(
        server: &TestServer,
        jid: &str,
        password: &str,
    ) -> anyhow::Result<(Raw, String)> {
        let domain = jid.split('@').nth(1).context("address")?;
        let (mut raw, _) = Raw::secured(server, domain).await?;
        let answer = raw.plain(jid, password).await?;
        anyhow::ensure!(answer.contains("<success"), "login failed: {answer}");
        raw.open(domain).await?;
        let features = raw.read_until("</stream:features>").await?;
        Ok((raw, features))
    }

    /// Logged in, bound and available (initial presence sent and handled).
    pub async fn online(
        server: &TestServer,
        jid: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Raw> {
        let mut raw = Raw::login(server, jid, password, resource).await?;
        raw.send("<presence/>").await?;
        raw.sync(&format!("{resource}-online")).await?;
        Ok(raw)
    }

    /// A ping round trip to the server: everything this client sent before has been
    /// handled (the server handles a client's stanzas in order). Returns what arrived up to
    /// the answer.
    pub async fn sync(&mut self, id: &str) -> anyhow::Result<String> {
        self.send(&format!(
            "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
        self.read_until(&format!("id='{id}'")).await
    }

    /// STARTTLS, PLAIN, restart and bind `resource` on an already connected `raw`.
    pub async fn login_on(
        raw: Raw,
        server: &TestServer,
        jid: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Raw> {
        let domain = jid.split('@').nth(1).context("address")?;
        Raw::login_trusting(raw, server.tls_config(domain), jid, password, resource).await
    }

    /// Like [`Raw::login_on`], for a server known only by its address and certificate (the
    /// real binary in another process).
    pub async fn login_trusting(
        mut raw: Raw,
        tls: Arc<rustls::ClientConfig>,
        jid: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Raw> {
        let domain = jid.split('@').nth(1).context("address")?;
        raw.starttls(domain, tls).await?;
        raw.open(domain).await?;
        raw.read_until("</stream:features>").await?;
        let answer = raw.plain(jid, password).await?;
        anyhow::ensure!(answer.contains("<success"), "login failed: {answer}");
        raw.open(domain).await?;
        raw.read_until("</stream:features>").await?;
        raw.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await?;
        raw.read_element("iq").await?;
        Ok(raw)
    }

    pub async fn login(
        server: &TestServer,
        jid: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<Raw> {
        let (mut raw, _) = Raw::authenticated(server, jid, password).await?;
        raw.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await?;
        raw.read_element("iq").await?;
        Ok(raw)
    }

    /// Runs a SCRAM exchange with `scram` (after the stream's features); returns the
    /// server's last answer (`<success…` with the server-final message, or `<failure…`).
    pub async fn scram(&mut self, scram: &mut scram::Client) -> anyhow::Result<String> {
        let first = B64.encode(scram.first());
        let mechanism = scram.mechanism();
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{first}</auth>"
        ))
        .await?;
        let challenge = self.sasl_answer().await?;
        if !challenge.contains("<challenge") {
            return Ok(challenge);
        }
        let response = scram.respond(&B64.decode(text_of(&challenge))?)?;
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            B64.encode(response)
        ))
        .await?;
        self.sasl_answer().await
    }
}

/// XEP-0388 SASL2 and XEP-0484 FAST, for the tests of tokens.
pub const SASL2: &str = "urn:xmpp:sasl:2";
pub const FAST: &str = "urn:xmpp:fast:0";

/// `HMAC-SHA-256(token, label)`: an HT-SHA-256-NONE proof (`Initiator`) or the server's
/// (`Responder`).
pub fn ht_proof(token: &str, label: &[u8]) -> Vec<u8> {
    use hmac::digest::{FixedOutput, KeyInit, Update};
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(token.as_bytes())
    else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(label);
    mac.finalize_fixed().to_vec()
}

impl Raw {
    /// On a secured stream: an HT-SHA-256-NONE `<authenticate/>` of device `agent` with
    /// `token`, plus `inline`; returns the answer up to the end of `<success>` or
    /// `<failure>`.
    pub async fn fast(
        &mut self,
        user: &str,
        agent: &str,
        token: &str,
        inline: &str,
    ) -> anyhow::Result<String> {
        let mut data = format!("{user}\0").into_bytes();
        data.extend(ht_proof(token, b"Initiator"));
        self.send(&format!(
            "<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>{}</initial-response>\
             <user-agent id='{agent}'/><fast xmlns='{FAST}'/>{inline}</authenticate>",
            B64.encode(data)
        ))
        .await?;
        self.sasl_answer().await
    }

    /// On a secured stream: a SASL2 PLAIN login of device `agent` that asks for a FAST
    /// token; returns the `<success>` (the token is its `<token token='…'/>`).
    pub async fn request_token(
        &mut self,
        user: &str,
        password: &str,
        agent: &str,
    ) -> anyhow::Result<String> {
        let initial = B64.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{initial}</initial-response>\
             <user-agent id='{agent}'/><request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/></authenticate>"
        ))
        .await?;
        self.read_until("</success>").await
    }
}

/// The text content of a one-element answer such as `<success xmlns='…'>dGV4dA==</success>`.
pub fn text_of(element: &str) -> &str {
    element
        .split('>')
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or_default()
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
use base64::Engine;
