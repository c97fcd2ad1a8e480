//! `postern::start` (what `postern serve` runs) with the gateway on: it binds its SMTP
//! listener, reports it in `Running::smtp`, starts with its next hop down (answering 4xx),
//! and relays encrypted mail once the next hop is up.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::net::SocketAddr;
use std::time::Duration;

use postern::Config;
use postern_pgp::KeySpec;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> u16 {
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).await.unwrap() > 0, "closed");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line[..3].parse().unwrap();
        }
    }
}

/// Sends one mail; the final reply code.
async fn send(addr: SocketAddr, from: &str, to: &str, body: &str) -> u16 {
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    assert_eq!(reply(&mut r).await, 220);
    for (cmd, want) in [
        ("EHLO test".to_owned(), 250),
        (format!("MAIL FROM:<{from}>"), 250),
        (format!("RCPT TO:<{to}>"), 250),
        ("DATA".to_owned(), 354),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        assert_eq!(reply(&mut r).await, want, "{cmd}");
    }
    w.write_all(format!("{body}\r\n.\r\n").as_bytes())
        .await
        .unwrap();
    reply(&mut r).await
}

/// Accepts one SMTP transaction and returns its data.
async fn sink_one(listener: TcpListener) -> Vec<u8> {
    let (tcp, _) = listener.accept().await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink\r\n").await.unwrap();
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await.unwrap() == 0 {
            return data;
        }
        if line.to_ascii_uppercase().starts_with(b"DATA") {
            w.write_all(b"354 go\r\n").await.unwrap();
            loop {
                let mut l = Vec::new();
                r.read_until(b'\n', &mut l).await.unwrap();
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&l);
            }
        }
        let quit = line.to_ascii_uppercase().starts_with(b"QUIT");
        w.write_all(if quit { b"221 bye\r\n" } else { b"250 ok\r\n" })
            .await
            .unwrap();
        if quit {
            return data;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_gateway_and_relays_encrypted_mail() {
    let dir = tempfile::tempdir().unwrap();
    let next_hop = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = format!(
        "data_dir = \"{}\"\n[[domain]]\nname = \"example.org\"\n[xmpp]\nenabled = false\n[gateway]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{next_hop}\"\n[http]\nlisten = []\n",
        dir.path().display()
    );
    let config: Config = toml::from_str(&text).unwrap();
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let running = postern::start(&config).await.unwrap();
    let smtp = running.smtp.expect("gateway listener");
    let gateway = running.gateway.clone().expect("gateway handle");
    let bob = postern_pgp::generate(&KeySpec::new("bob@partner.example")).unwrap();
    gateway
        .keys
        .import(postern_pgp::armored_public(&bob).unwrap().as_bytes(), None)
        .await
        .unwrap();
    let mail =
        "From: alice@example.org\r\nTo: bob@partner.example\r\nSubject: hi\r\n\r\nsecret text";

    // Next hop down: the MTA is told to retry.
    assert_eq!(
        send(smtp, "alice@example.org", "bob@partner.example", mail).await,
        451
    );

    let sink = tokio::spawn(sink_one(TcpListener::bind(next_hop).await.unwrap()));
    assert_eq!(
        send(smtp, "alice@example.org", "bob@partner.example", mail).await,
        250
    );
    let out = tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("X-Postern-PGP: encrypted"), "{text}");
    assert!(text.contains("multipart/encrypted") && !text.contains("secret text"));
    running.stop().await;
}

/// With `[gateway.wkd] enabled`, `postern serve` publishes local keys on its HTTPS listener with the
/// domain's certificate (here the generated self-signed one): curl fetches Alice's key by
/// the direct method. Needs curl (Debian: curl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_local_keys_by_wkd() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"{}\"\n[[domain]]\nname = \"example.org\"\n[xmpp]\nenabled = false\n[gateway]\nlisten = \"127.0.0.1:0\"\n[gateway.wkd]\nenabled = true\n[http]\nlisten = [\"127.0.0.1:0\"]\n",
        dir.path().display()
    );
    let config: Config = toml::from_str(&text).unwrap();
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let running = postern::start(&config).await.unwrap();
    let port = running.https.first().expect("HTTPS listener").port();
    let gateway = running.gateway.clone().expect("gateway handle");
    let alice = gateway
        .keys
        .generate(KeySpec::new("alice@example.org"))
        .await
        .unwrap();
    let (ca, _) = postern::certs::self_signed(dir.path(), "example.org").unwrap();
    let url = format!(
        "https://example.org:{port}/.well-known/openpgpkey/hu/{}?l=alice",
        postern_gateway::wkd::hash("alice")
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("example.org:{port}:127.0.0.1"))
            .arg(url)
            .output()
            .expect("curl must be installed (Debian: curl)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served = postern_pgp::parse_certs(&out.stdout).unwrap();
    assert_eq!(served[0].fingerprint(), alice.fingerprint());
    running.stop().await;
}
