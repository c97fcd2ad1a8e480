//! End-to-end SMTP behaviour of the gateway: no loss, exact bytes, limits, ESMTP.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use postern_pgp::KeySpec;

/// The next hop is down: 4xx (the MTA keeps the mail); once it is up, the retry is
/// delivered. A temporary refusal of the data is 4xx too; a permanent refusal of a
/// recipient is passed up as 5xx and nothing is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_next_hop_is_4xx_and_a_retry_later_succeeds() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let placeholder = Sink::start().await?;
    let h = Harness::start_to(port, placeholder, |_| {}).await?;
    let mail = sample_mail("alice@example.org", "bob@partner.example");
    let (code, text) = h
        .send("alice@example.org", &["bob@partner.example"], &mail)
        .await?;
    assert_eq!(code, 451, "{text}");

    let mut sink = Sink::start_on(port).await?;
    let (code, text) = h
        .send("alice@example.org", &["bob@partner.example"], &mail)
        .await?;
    assert_eq!(code, 250, "{text}");
    assert_eq!(sink.next().await?.data, mail);

    sink.behaviour
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .temp_fail_data = true;
    let (code, _) = h
        .send("alice@example.org", &["bob@partner.example"], &mail)
        .await?;
    assert_eq!(code, 451);
    {
        let mut b = sink.behaviour.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        b.temp_fail_data = false;
        b.reject_rcpts = vec!["gone@partner.example".into()];
    }
    let (code, text) = h
        .send(
            "alice@example.org",
            &["bob@partner.example", "gone@partner.example"],
            &mail,
        )
        .await?;
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("no such user"), "{text}");
    sink.assert_empty();
    Ok(())
}

/// Pass-through mail arrives byte for byte, whatever it holds: malformed MIME, NUL bytes,
/// dot lines, no final newline, 8-bit headers, and 25 MiB; a bare LF leaves as CRLF (the
/// only line ending SMTP may carry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_and_large_mail_passes_byte_for_byte() -> Result<()> {
    let mut h = Harness::start().await?;
    let malformed = b"From: a@example.org\r\nContent-Type: multipart/mixed\r\nSubject: \xc3\xa4 raw 8-bit\r\n\r\n--nothing\r\nno closing delimiter\r\n".to_vec();
    let nul = b"From: a@example.org\r\nSubject: nul\r\n\r\nbefore\0after\r\nbare\nlf\n.\r\n..two dots\r\n.\r\nlast line without newline".to_vec();
    let no_body = b"From: a@example.org\r\nSubject: header only\r\n".to_vec();
    for mail in [malformed, nul, no_body] {
        let (code, text) = h.send("a@example.org", &["x@other.example"], &mail).await?;
        assert_eq!(code, 250, "{text}");
        let mut expected = crlf(&mail);
        if !expected.ends_with(b"\n") {
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(h.sink.next().await?.data, expected);
    }

    let big = big_mail(25 * 1024 * 1024);
    let (code, text) = h.send("a@example.org", &["x@other.example"], &big).await?;
    assert_eq!(code, 250, "{text}");
    let got = h.sink.next().await?.data;
    assert_eq!(got.len(), big.len());
    assert!(got == big, "25 MiB pass-through differs");
    Ok(())
}

/// A 25 MiB mail and a mail with NUL bytes to a keyed recipient are encrypted and gpg
/// decrypts them to the exact content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_binary_mail_is_encrypted_whole() -> Result<()> {
    let mut h = Harness::start().await?;
    let gpg = Gpg::new()?;
    let public = gpg.generate("bob@partner.example")?;
    h.keys().import(&public, None).await?;
    let nul = b"From: a@example.org\r\nContent-Type: application/octet-stream\r\n\r\n\0\x01\x02\xff\r\n.\r\n".to_vec();
    for mail in [nul, big_mail(25 * 1024 * 1024)] {
        let (code, text) = h
            .send("a@example.org", &["bob@partner.example"], &mail)
            .await?;
        assert_eq!(code, 250, "{text}");
        let got = h.sink.next().await?.data;
        let armored = armor(
            &got,
            "-----BEGIN PGP MESSAGE-----",
            "-----END PGP MESSAGE-----",
        )?;
        let plain = gpg.run(&["--decrypt"], armored)?;
        assert!(
            plain == inner_of(&mail),
            "decrypted content differs ({} bytes)",
            mail.len()
        );
    }
    Ok(())
}

/// SIZE: announced too big is 552 at MAIL; sent too big is 552 after the data, and the
/// connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_is_announced_and_enforced() -> Result<()> {
    let mut h = Harness::start_with(|c| c.max_message_size = 64 * 1024).await?;
    let mut c = Client::connect(h.addr).await?;
    let (code, ehlo) = c.cmd("EHLO mx").await?;
    assert_eq!(code, 250);
    for ext in [
        "PIPELINING",
        "SIZE 65536",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "ENHANCEDSTATUSCODES",
        "XFORWARD",
    ] {
        assert!(
            ehlo.lines().any(|l| l.starts_with(ext)),
            "{ext} missing in {ehlo}"
        );
    }
    assert_eq!(c.cmd("MAIL FROM:<a@example.org> SIZE=100000").await?.0, 552);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org> SIZE=1000").await?.0, 250);
    assert_eq!(c.cmd("RCPT TO:<x@other.example>").await?.0, 250);
    assert_eq!(c.cmd("DATA").await?.0, 354);
    c.write(&stuff(&big_mail(100 * 1024))).await?;
    assert_eq!(c.reply().await?.0, 552);
    let small = sample_mail("a@example.org", "x@other.example");
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await?.0, 250);
    assert_eq!(c.cmd("RCPT TO:<x@other.example>").await?.0, 250);
    assert_eq!(c.cmd("DATA").await?.0, 354);
    c.write(&stuff(&small)).await?;
    assert_eq!(c.reply().await?.0, 250);
    assert_eq!(h.sink.next().await?.data, small);
    Ok(())
}

/// PIPELINING: a whole transaction in one write gets every reply in order; CHUNKING:
/// BDAT transfers a message in pieces, binary-exact, with dot lines left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_and_chunking() -> Result<()> {
    let mut h = Harness::start().await?;
    let mail = sample_mail("a@example.org", "x@other.example");
    let mut c = Client::connect(h.addr).await?;
    let mut batch = b"EHLO mx\r\nMAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<x@other.example>\r\nRCPT TO:<y@other.example>\r\nDATA\r\n".to_vec();
    c.write(&batch).await?;
    let codes: Vec<u16> = [
        c.reply().await?,
        c.reply().await?,
        c.reply().await?,
        c.reply().await?,
        c.reply().await?,
    ]
    .iter()
    .map(|r| r.0)
    .collect();
    assert_eq!(codes, vec![250, 250, 250, 250, 354]);
    c.write(&stuff(&mail)).await?;
    assert_eq!(c.reply().await?.0, 250);
    let got = h.sink.next().await?;
    assert_eq!(got.rcpts, vec!["x@other.example", "y@other.example"]);
    assert_eq!(got.data, mail);

    let (first, second) = mail.split_at(100);
    batch = format!(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<x@other.example>\r\nBDAT {}\r\n",
        first.len()
    )
    .into_bytes();
    batch.extend_from_slice(first);
    batch.extend_from_slice(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
    batch.extend_from_slice(second);
    c.write(&batch).await?;
    let codes: Vec<u16> = [
        c.reply().await?,
        c.reply().await?,
        c.reply().await?,
        c.reply().await?,
    ]
    .iter()
    .map(|r| r.0)
    .collect();
    assert_eq!(codes, vec![250, 250, 250, 250]);
    assert_eq!(h.sink.next().await?.data, mail);

    // Out of order and nonsense: refused, connection still usable.
    assert_eq!(c.cmd("RCPT TO:<x@other.example>").await?.0, 503);
    assert_eq!(c.cmd("DATA").await?.0, 503);
    assert_eq!(c.cmd("FROB").await?.0, 500);
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>").await?.0, 250);
    assert_eq!(c.cmd("RSET").await?.0, 250);
    assert_eq!(c.cmd("QUIT").await?.0, 221);
    Ok(())
}

/// Connection limit: one over is answered 421 at once; idle clients are timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_and_idle_timeout() -> Result<()> {
    let h = Harness::start_with(|c| {
        c.max_connections = 1;
        c.command_timeout = Duration::from_secs(1);
    })
    .await?;
    let _first = Client::connect(h.addr).await?;
    let mut tcp = tokio::net::TcpStream::connect(h.addr).await?;
    let mut buf = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut buf).await?;
    assert!(
        buf.starts_with(b"421 "),
        "{}",
        String::from_utf8_lossy(&buf)
    );

    let mut idle = _first;
    let rest = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end()).await?;
    assert!(
        rest.starts_with(b"421 4.4.2"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // The slot is free again, once the server has seen the close: polled (a connection
    // while it is still taken gets the 421 greeting), within 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match Client::connect(h.addr).await {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    };
    assert_eq!(again.cmd("NOOP").await?.0, 250);
    Ok(())
}

/// A local sender's mail to a local recipient is internal: never encrypted, even when
/// the recipient has a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_mail_is_not_encrypted() -> Result<()> {
    let mut h = Harness::start().await?;
    h.keys().generate(KeySpec::new("dave@example.org")).await?;
    let mail = sample_mail("alice@example.org", "dave@example.org");
    h.send("alice@example.org", &["dave@example.org"], &mail)
        .await?;
    assert_eq!(h.sink.next().await?.data, mail);
    Ok(())
}

/// A mail of about `size` bytes: headers and base64-like lines.
fn big_mail(size: usize) -> Vec<u8> {
    let mut out = b"From: a@example.org\r\nTo: x@other.example\r\nSubject: big\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u32 = 12345;
    while out.len() < size {
        for _ in 0..76 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            out.push(alphabet[(x >> 16) as usize % 64]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// SMTPUTF8 and 8BITMIME: a UTF-8 envelope and raw UTF-8 headers pass through intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtputf8_envelope_and_headers_pass() -> Result<()> {
    let mut h = Harness::start().await?;
    let mail = "From: Jösé <jösé@example.org>\r\nTo: 友達@other.example\r\nSubject: Grüße 日本\r\n\r\nKöln\r\n".as_bytes();
    let mut c = Client::connect(h.addr).await?;
    c.cmd("EHLO mx").await?;
    assert_eq!(
        c.cmd("MAIL FROM:<jösé@example.org> BODY=8BITMIME SMTPUTF8")
            .await?
            .0,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<友達@other.example>").await?.0, 250);
    assert_eq!(c.cmd("DATA").await?.0, 354);
    c.write(&stuff(mail)).await?;
    assert_eq!(c.reply().await?.0, 250);
    let got = h.sink.next().await?;
    assert_eq!(got.from, "jösé@example.org");
    assert_eq!(got.rcpts, vec!["友達@other.example"]);
    assert_eq!(got.data, mail);
    Ok(())
}
