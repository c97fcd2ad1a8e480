//! Test harness: the real gateway on a loopback port 0 in a temporary data dir, a capture
//! SMTP sink as its next hop, a small SMTP client, and throwaway GnuPG / `sq` homes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use postern_accounts::Accounts;
use postern_gateway::{Gateway, GatewayConfig, KeyStore};
use postern_store::Store;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// A running gateway with its sink.
pub struct Harness {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub sink: Sink,
    pub accounts: Accounts,
    pub dir: TempDir,
    shutdown: watch::Sender<bool>,
}

impl Harness {
    /// Gateway for `example.org` relaying to a fresh sink.
    pub async fn start() -> Result<Harness> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut GatewayConfig)) -> Result<Harness> {
        let sink = Sink::start().await?;
        let addr = sink.addr;
        Self::start_to(addr, sink, tweak).await
    }

    /// Gateway relaying to `next_hop` (the sink may or may not listen there).
    pub async fn start_to(
        next_hop: SocketAddr,
        sink: Sink,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Result<Harness> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir()?;
        let store =
            Store::connect(&format!("sqlite://{}/postern.db", dir.path().display())).await?;
        let accounts = Accounts::new(store);
        let mut config = GatewayConfig {
            next_hop,
            next_hop_timeout: Duration::from_secs(10),
            ..GatewayConfig::default()
        };
        tweak(&mut config);
        let problems = config.problems();
        if !problems.is_empty() {
            bail!("config problems: {problems:?}");
        }
        let gateway = Gateway::new(
            config,
            vec!["example.org".into()],
            dir.path(),
            accounts.clone(),
        )?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(gateway.clone().serve(listener, rx));
        Ok(Harness {
            addr,
            gateway,
            sink,
            accounts,
            dir,
            shutdown,
        })
    }

    pub fn keys(&self) -> &KeyStore {
        &self.gateway.keys
    }

    /// Sends one mail; returns the final reply code and text.
    pub async fn send(&self, from: &str, rcpts: &[&str], data: &[u8]) -> Result<(u16, String)> {
        send(self.addr, from, rcpts, data).await
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
    }
}

/// `[[rules]]` tables (as under `[gateway]` in the config) parsed into rules.
pub fn rules_from_toml(text: &str) -> Vec<postern_gateway::rules::Rule> {
    #[derive(serde::Deserialize)]
    struct Section {
        rules: Vec<postern_gateway::rules::Rule>,
    }
    toml::from_str::<Section>(text).expect("rules parse").rules
}

/// One mail as the sink got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

/// How the sink answers.
#[derive(Debug, Clone, Default)]
pub struct SinkBehaviour {
    /// Answer DATA's end with 451.
    pub temp_fail_data: bool,
    /// Refuse these recipients with 550.
    pub reject_rcpts: Vec<String>,
}

/// A capture SMTP server: the gateway's next hop.
pub struct Sink {
    pub addr: SocketAddr,
    pub behaviour: Arc<Mutex<SinkBehaviour>>,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Sink {
    pub async fn start() -> Result<Sink> {
        Self::start_on("127.0.0.1:0".parse()?).await
    }

    pub async fn start_on(addr: SocketAddr) -> Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let behaviour = Arc::new(Mutex::new(SinkBehaviour::default()));
        let b = behaviour.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(sink_session(tcp, tx.clone(), b.clone()));
            }
        });
        Ok(Sink {
            addr,
            behaviour,
            rx,
        })
    }

    /// The next mail, waiting up to 60 s.
    pub async fn next(&mut self) -> Result<Received> {
        tokio::time::timeout(Duration::from_secs(60), self.rx.recv())
            .await
            .context("no mail reached the sink")?
            .context("sink closed")
    }

    /// Nothing more arrived. Exact, not a wait: the gateway hands every copy of a mail on
    /// before it answers its own client (it starts no task of its own to send later), and
    /// the sink queues a mail here before it answers the gateway; so once a test has the
    /// gateway's reply, whatever the gateway sent for that mail is in the queue.
    pub fn assert_empty(&mut self) {
        if let Ok(m) = self.rx.try_recv() {
            panic!("unexpected mail to {:?}", m.rcpts);
        }
    }
}

async fn sink_session(
    tcp: TcpStream,
    tx: mpsc::UnboundedSender<Received>,
    behaviour: Arc<Mutex<SinkBehaviour>>,
) {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
    let mut from = String::new();
    let mut rcpts = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 100000000\r\n"
                .into()
        } else if upper.starts_with("MAIL FROM:") {
            from = between(&line, '<', '>');
            rcpts.clear();
            "250 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = between(&line, '<', '>');
            let refused = behaviour
                .lock()
                .map(|b| b.reject_rcpts.contains(&rcpt))
                .unwrap_or(false);
            if refused {
                "550 5.1.1 no such user\r\n".into()
            } else {
                rcpts.push(rcpt);
                "250 ok\r\n".into()
            }
        } else if upper.starts_with("DATA") {
            let _ = w.write_all(b"354 go\r\n").await;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                    return;
                }
                if l == b".\r\n" {
                    break;
                }
                if l.starts_with(b".") {
                    l.remove(0);
                }
                data.extend_from_slice(&l);
            }
            let fail = behaviour.lock().map(|b| b.temp_fail_data).unwrap_or(false);
            if fail {
                "451 4.3.0 try later\r\n".into()
            } else {
                let _ = tx.send(Received {
                    from: from.clone(),
                    rcpts: std::mem::take(&mut rcpts),
                    data,
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper.starts_with("QUIT") {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            "250 ok\r\n".into()
        } else {
            // Refused, as a real MTA refuses what it did not offer (XFORWARD, BDAT, ...):
            // a gateway that sends one fails the test instead of passing unnoticed.
            "502 5.5.1 command not recognised\r\n".into()
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn between(s: &str, l: char, r: char) -> String {
    match (s.find(l), s.rfind(r)) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_owned(),
        _ => String::new(),
    }
}

/// A minimal SMTP client: EHLO, MAIL, RCPT..., DATA; stops at the first refusal.
pub async fn send(
    addr: SocketAddr,
    from: &str,
    rcpts: &[&str],
    data: &[u8],
) -> Result<(u16, String)> {
    let mut c = Client::connect(addr).await?;
    c.cmd("EHLO client.test").await?;
    let r = c.cmd(&format!("MAIL FROM:<{from}>")).await?;
    if r.0 != 250 {
        return Ok(r);
    }
    for rcpt in rcpts {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await?;
        if r.0 != 250 {
            return Ok(r);
        }
    }
    let r = c.cmd("DATA").await?;
    if r.0 != 354 {
        return Ok(r);
    }
    c.write(&stuff(data)).await?;
    let r = c.reply().await?;
    let _ = c.cmd("QUIT").await;
    Ok(r)
}

/// Dot-stuffs and terminates message data, sending bare LF as CRLF as MTAs do.
pub fn stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1024);
    let mut at_start = true;
    let mut last = 0u8;
    for &b in data {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && last != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_start = b == b'\n';
        last = b;
    }
    if !at_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A raw SMTP connection for protocol-level tests.
pub struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let (r, w) = tcp.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        let greeting = c.reply().await?;
        if greeting.0 != 220 {
            bail!("greeting {greeting:?}");
        }
        Ok(c)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.w.write_all(bytes).await?;
        Ok(())
    }

    pub async fn cmd(&mut self, line: &str) -> Result<(u16, String)> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// One reply: code and text (lines joined by `\n`).
    pub async fn reply(&mut self) -> Result<(u16, String)> {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(120), self.r.read_line(&mut line))
                .await??;
            if n == 0 {
                bail!("connection closed");
            }
            let code: u16 = line.get(..3).context("short reply")?.parse()?;
            text.push(line.get(4..).unwrap_or_default().trim_end().to_owned());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text.join("\n")));
            }
        }
    }

    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v).await;
        v
    }
}

// ---------------------------------------------------------------------------
// MIME helpers for checking output.

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a message at the blank line.
pub fn split(mail: &[u8]) -> (&[u8], &[u8]) {
    match find(mail, b"\r\n\r\n") {
        Some(i) => (&mail[..i + 2], &mail[i + 4..]),
        None => (mail, &[]),
    }
}

/// Value of the first header field `name` (unfolded).
pub fn header(mail: &[u8], name: &str) -> Option<String> {
    let (head, _) = split(mail);
    let text = String::from_utf8_lossy(head)
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// A Content-Type parameter of the top-level entity.
pub fn param(mail: &[u8], name: &str) -> Result<String> {
    let ct = header(mail, "content-type").context("no content-type")?;
    let at = ct
        .find(&format!("{name}="))
        .with_context(|| format!("no {name} in {ct}"))?
        + name.len()
        + 1;
    let rest = &ct[at..];
    Ok(match rest.strip_prefix('"') {
        Some(q) => q.split('"').next().unwrap_or_default().to_owned(),
        None => rest.split([';', ' ']).next().unwrap_or_default().to_owned(),
    })
}

/// Body parts of a multipart mail (exact bytes, without the CRLF before each delimiter).
pub fn parts<'a>(mail: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
    let delim = format!("\r\n--{boundary}");
    let (_, body) = split(mail);
    let body_start = mail.len() - body.len();
    // The first delimiter may start the body without a preceding CRLF.
    let mut rest = &mail[body_start - 2..];
    let first = find(rest, delim.as_bytes()).context("first delimiter")?;
    rest = &rest[first..];
    let mut out = Vec::new();
    loop {
        rest = &rest[delim.len()..];
        if rest.starts_with(b"--") {
            return Ok(out);
        }
        rest = &rest[2..];
        let next = find(rest, delim.as_bytes()).context("next delimiter")?;
        out.push(&rest[..next]);
        rest = &rest[next..];
    }
}

/// The armored block between `begin` and `end` (inclusive).
pub fn armor<'a>(data: &'a [u8], begin: &str, end: &str) -> Result<&'a [u8]> {
    let b = find(data, begin.as_bytes()).context("armor begin")?;
    let e = b + find(&data[b..], end.as_bytes()).context("armor end")? + end.len();
    Ok(&data[b..e])
}

/// The message without its first header line (our trace field).
pub fn without_first_line(mail: &[u8]) -> &[u8] {
    let i = find(mail, b"\r\n").map_or(0, |i| i + 2);
    &mail[i..]
}

// ---------------------------------------------------------------------------
// Real tools.

/// A throwaway GnuPG home (no passphrases).
pub struct Gpg {
    pub home: TempDir,
}

impl Gpg {
    pub fn new() -> Result<Gpg> {
        let gpg = Gpg {
            home: TempDir::new()?,
        };
        gpg.run(&["--version"], b"")
            .context("GnuPG (`gpg`) must be installed for these tests (Debian: gnupg)")?;
        Ok(gpg)
    }

    /// A new Ed25519/Cv25519 key for `uid`; returns its armored public cert.
    pub fn generate(&self, uid: &str) -> Result<Vec<u8>> {
        self.run(
            &["--quick-gen-key", uid, "future-default", "default", "never"],
            b"",
        )?;
        self.run(&["--armor", "--export", uid], b"")
    }

    pub fn file(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let p = self.home.path().join(name);
        std::fs::write(&p, data)?;
        Ok(p)
    }

    pub fn import(&self, data: &[u8]) -> Result<()> {
        self.run(&["--import"], data).map(drop)
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
        let out = self.output(args, stdin)?;
        if !out.status.success() {
            bail!(
                "gpg {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }

    /// Runs with `--status-fd 2`; returns stdout and the status lines.
    pub fn run_status(&self, args: &[&str], stdin: &[u8]) -> Result<(Vec<u8>, String)> {
        let mut all = vec!["--status-fd", "2"];
        all.extend_from_slice(args);
        let out = self.output(&all, stdin)?;
        let status = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("gpg {args:?} failed: {status}");
        }
        Ok((out.stdout, status))
    }

    fn output(&self, args: &[&str], stdin: &[u8]) -> Result<Output> {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--no-tty",
                "--trust-model",
                "always",
            ])
            .args(args);
        run_with_stdin(cmd, stdin).context("running gpg")
    }
}

/// Sequoia's `sq` in a temporary home (0.x and 1.x command lines).
pub struct Sq {
    dir: TempDir,
    modern: bool,
}

impl Sq {
    pub fn new() -> Result<Sq> {
        let out = Command::new("sq")
            .arg("--version")
            .output()
            .context("Sequoia's `sq` must be installed for these tests (Debian: sq)")?;
        let version = String::from_utf8_lossy(&out.stdout).into_owned();
        let modern = version
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            .is_some_and(|m| m >= 1);
        Ok(Sq {
            dir: TempDir::new()?,
            modern,
        })
    }

    /// Decrypts with a secret key file, checking the signature against `signer`.
    pub fn decrypt(&self, ciphertext: &[u8], secret_key: &[u8], signer: &[u8]) -> Result<Vec<u8>> {
        let k = write(self.dir.path(), "key.asc", secret_key)?;
        let s = write(self.dir.path(), "signer.asc", signer)?;
        let m = write(self.dir.path(), "msg.asc", ciphertext)?;
        let (kf, sf) = if self.modern {
            ("--recipient-file", "--signer-file")
        } else {
            ("--recipient-key", "--signer-cert")
        };
        self.run(&["decrypt", kf, path(&k), sf, path(&s), path(&m)])
    }

    pub fn verify_detached(&self, data: &[u8], sig: &[u8], signer: &[u8]) -> Result<()> {
        let s = write(self.dir.path(), "signer.asc", signer)?;
        let d = write(self.dir.path(), "data", data)?;
        let g = write(self.dir.path(), "data.sig", sig)?;
        let (sf, gf) = if self.modern {
            ("--signer-file", "--signature-file")
        } else {
            ("--signer-cert", "--detached")
        };
        self.run(&["verify", sf, path(&s), gf, path(&g), path(&d)])
            .map(drop)
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>> {
        let mut cmd = Command::new("sq");
        cmd.env("HOME", self.dir.path())
            .env("SEQUOIA_HOME", self.dir.path());
        if self.modern {
            cmd.arg("--batch");
        }
        cmd.args(args);
        let out = run_with_stdin(cmd, b"")?;
        if !out.status.success() {
            bail!(
                "sq {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, data)?;
    Ok(p)
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Result<Output> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut pipe = child.stdin.take().context("stdin")?;
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("stdin writer panicked"))??;
    Ok(out)
}

/// A mail with UTF-8 text and a binary attachment; content fields last so the inner
/// entity of its encrypted form is easy to predict.
pub fn sample_mail(from: &str, to: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\n\
To: {to}\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <sample-{n}@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Grüße aus Köln — 日本語\r\n\
.a line starting with a dot\r\n\
--outer\r\n\
Content-Type: application/octet-stream; name=\"a.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"a.bin\"\r\n\
\r\n\
AAECAwQF/w==\r\n\
--outer--\r\n",
        n = std::process::id()
    )
    .into_bytes()
}

/// The inner entity an encrypted or signed form of `sample_mail` carries: its Content-*
/// fields, a blank line, its body.
pub fn inner_of(mail: &[u8]) -> Vec<u8> {
    let (head, body) = split(mail);
    let text = String::from_utf8_lossy(head);
    let mut out = Vec::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-") {
            out.extend_from_slice(line.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Bare LF to CRLF (what a mail client does to gpg's output before sending it).
pub fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
