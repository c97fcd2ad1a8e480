//! Benchmark (not a test): mails per second through the gateway for 10 KB mails to one
//! keyed recipient, encrypted and signed, with N concurrent SMTP clients — and, side by
//! side on the same machine, the same work done the classic way: one `gpg --encrypt
//! --sign` subprocess per mail, N in parallel (no SMTP at all on that side, which favours
//! gpg).
//!
//! ```sh
//! cargo run --release -p postern-gateway --example bench -- [SECONDS] [CLIENTS]
//! ```
//!
//! Defaults: 10 seconds per side, 4 clients.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_accounts::Accounts;
use postern_gateway::{Gateway, GatewayConfig};
use postern_pgp::KeySpec;
use postern_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let clients: usize = args.get(2).map_or(Ok(4), |s| s.parse())?;
    let duration = Duration::from_secs(seconds);
    let mail = ten_kb_mail();

    // --- Postern -------------------------------------------------------------------------
    let dir = tempfile::tempdir()?;
    let sink = sink().await?;
    let store = Store::connect(&format!("sqlite://{}/bench.db", dir.path().display())).await?;
    let accounts = Accounts::new(store);
    let config = GatewayConfig {
        next_hop: sink,
        max_connections: clients + 4,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(config, vec!["example.org".into()], dir.path(), accounts)?;
    let alice = gateway
        .keys
        .generate(KeySpec::new("alice@example.org"))
        .await?;
    let bob = postern_pgp::generate(&KeySpec::new("bob@partner.example"))?;
    gateway
        .keys
        .import(postern_pgp::armored_public(&bob)?.as_bytes(), None)
        .await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(gateway.serve(listener, rx));

    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let done = done.clone();
        let mail = mail.clone();
        tasks.push(tokio::spawn(async move {
            smtp_client(addr, &mail, started + duration, &done).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let postern_rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    // --- gpg, one subprocess per mail ----------------------------------------------------
    let home = tempfile::tempdir()?;
    let gpg = |args: &[&str], stdin: &[u8]| run_gpg(home.path(), args, stdin);
    let alice_secret = gateway_secret(&alice, dir.path()).await?;
    gpg(&["--import"], alice_secret.as_bytes())?;
    gpg(&["--import"], postern_pgp::armored_public(&bob)?.as_bytes())?;
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..clients {
        let count = count.clone();
        let mail = mail.clone();
        let home = home.path().to_owned();
        threads.push(std::thread::spawn(move || -> Result<()> {
            while started.elapsed() < duration {
                let out = run_gpg(
                    &home,
                    &[
                        "--armor",
                        "--encrypt",
                        "--sign",
                        "-r",
                        "bob@partner.example",
                        "-u",
                        "alice@example.org",
                    ],
                    &mail,
                )?;
                if !out.starts_with(b"-----BEGIN PGP MESSAGE-----") {
                    bail!("gpg produced no message");
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("gpg worker panicked"))??;
    }
    let gpg_rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    println!(
        "10 KB mails to one keyed recipient, encrypted+signed, {clients} concurrent clients, {seconds} s each:"
    );
    println!("  postern gateway (SMTP in, PGP/MIME, SMTP out): {postern_rate:8.1} mails/s");
    println!("  gpg subprocess per mail (encrypt+sign, no SMTP):{gpg_rate:8.1} mails/s");
    println!("  ratio: {:.1}x", postern_rate / gpg_rate);
    Ok(())
}

/// The secret key as the gateway holds it, exported (what `postern pgp export --secret`
/// prints), so gpg signs with the same key.
async fn gateway_secret(public: &postern_pgp::Cert, data_dir: &std::path::Path) -> Result<String> {
    let store = Store::connect(&format!("sqlite://{}/bench.db", data_dir.display())).await?;
    let keys = postern_gateway::open_keystore(&GatewayConfig::default(), data_dir, store)?;
    Ok(keys
        .export_secret(&postern_gateway::Selector::parse(
            &public.fingerprint().to_hex(),
        ))
        .await?)
}

/// One SMTP connection sending the mail over and over until `until`.
async fn smtp_client(
    addr: SocketAddr,
    mail: &[u8],
    until: Instant,
    done: &AtomicU64,
) -> Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await?;
    w.write_all(b"EHLO bench\r\n").await?;
    reply(&mut r).await?;
    let mut data = mail.to_vec();
    data.extend_from_slice(b".\r\n");
    while Instant::now() < until {
        // PIPELINING: the envelope in one write.
        w.write_all(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@partner.example>\r\nDATA\r\n")
            .await?;
        for expected in [250, 250, 354] {
            let code = reply(&mut r).await?;
            if code != expected {
                bail!("expected {expected}, got {code}");
            }
        }
        w.write_all(&data).await?;
        let code = reply(&mut r).await?;
        if code != 250 {
            bail!("mail refused with {code}");
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    w.write_all(b"QUIT\r\n").await?;
    Ok(())
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<u16> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.get(..3).context("short reply")?.parse()?);
        }
    }
}

/// A next hop that accepts everything as fast as it can.
async fn sink() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // Like a real MTA: replies are not held back by Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 sink\r\n").await;
                loop {
                    let mut line = Vec::new();
                    if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = match line.get(..4).map(|c| c.to_ascii_uppercase()) {
                        Some(c) if c == b"EHLO" => b"250-sink\r\n250 PIPELINING\r\n",
                        Some(c) if c == b"DATA" => {
                            let _ = w.write_all(b"354 go\r\n").await;
                            let mut tail = Vec::new();
                            loop {
                                let mut buf = [0u8; 16384];
                                let n = r.read(&mut buf).await.unwrap_or(0);
                                if n == 0 {
                                    return;
                                }
                                tail.extend_from_slice(&buf[..n]);
                                if tail.ends_with(b"\r\n.\r\n") {
                                    break;
                                }
                                let keep = tail.len().saturating_sub(4);
                                tail.drain(..keep);
                            }
                            b"250 ok\r\n"
                        }
                        Some(c) if c == b"QUIT" => return,
                        _ => b"250 ok\r\n",
                    };
                    let _ = w.write_all(reply).await;
                }
            });
        }
    });
    Ok(addr)
}

fn run_gpg(home: &std::path::Path, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args([
            "--batch",
            "--no-tty",
            "--trust-model",
            "always",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running gpg (Debian: gnupg)")?;
    let mut pipe = child.stdin.take().context("stdin")?;
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    if !out.status.success() {
        bail!("gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// A 10 KB plain-text mail (headers included), CRLF, nothing to dot-stuff.
fn ten_kb_mail() -> Vec<u8> {
    let mut m = b"From: Alice <alice@example.org>\r\nTo: bob@partner.example\r\nSubject: bench\r\nMessage-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
    let line =
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    while m.len() + line.len() <= 10 * 1024 {
        m.extend_from_slice(line);
    }
    m
}
