//! Deeply nested MIME through the real gateway, with every path that decodes a mail
//! switched on (a rule on the body, the `application/pgp-keys` marker, inline PGP armor to
//! a local recipient): multipart nesting is flat in mail-parser and 20,000 levels are
//! relayed; a 20,000-level chain of `message/rfc822` parts (in the clear or hidden in
//! base64) is not decoded (its drop would recurse once per level and abort the process)
//! but relayed unchanged. Either way the gateway keeps serving.

mod common;

use anyhow::Result;
use common::*;
use postern_gateway::GatewayConfig;

const LEVELS: usize = 20_000;

fn body_rule(config: &mut GatewayConfig) {
    config.rules = rules_from_toml(
        r#"
        [[rules]]
        name = "tag secrets"
        conditions = [{ body_contains = "top secret" }]
        actions = [{ add_header = "X-Tagged: yes" }]
        "#,
    );
}

/// Markers that make the gateway decode the mail on every path it has.
const MARKERS: &str = "pgp-keys\r\n-----BEGIN PGP MESSAGE-----\r\nbm90IGEgbWVzc2FnZQ==\r\n\
                       -----END PGP MESSAGE-----\r\n";

fn deep_multipart(levels: usize) -> Vec<u8> {
    let mut out = String::from(
        "From: outside@partner.example\r\nTo: bob@example.org\r\nSubject: deep\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n",
    );
    for i in 0..levels {
        out.push_str(&format!(
            "--b{i}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n",
            i + 1
        ));
    }
    out.push_str(&format!(
        "--b{levels}\r\nContent-Type: text/plain\r\n\r\n{MARKERS}--b{levels}--\r\n"
    ));
    for i in (0..levels).rev() {
        out.push_str(&format!("--b{i}--\r\n"));
    }
    out.into_bytes()
}

fn rfc822_chain(levels: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..levels {
        out.extend_from_slice(
            format!("Subject: level {i}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
        );
    }
    out.extend_from_slice(format!("Subject: inner\r\n\r\ntop secret\r\n{MARKERS}").as_bytes());
    out
}

fn mail(content_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "From: outside@partner.example\r\nTo: bob@example.org\r\nSubject: forwarded\r\n\
         MIME-Version: 1.0\r\n{content_headers}\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

async fn harness() -> Result<Harness> {
    let h = Harness::start_with(body_rule).await?;
    h.accounts.add("bob@example.org", "pw").await?;
    Ok(h)
}

/// Relays `mail` and checks it arrived with its body untouched.
async fn relayed_unchanged(h: &mut Harness, mail: &[u8]) -> Result<Vec<u8>> {
    let (code, text) = h
        .send("outside@partner.example", &["bob@example.org"], mail)
        .await?;
    assert_eq!(code, 250, "{text}");
    let got = h.sink.next().await?.data;
    assert!(split(&got).1 == split(mail).1, "the body was changed");
    Ok(got)
}

/// After the deep mail, an ordinary one still goes through (and is decoded: the rule
/// sees its body).
async fn still_serves(h: &mut Harness) -> Result<()> {
    let plain = mail("Content-Type: text/plain\r\n", b"top secret\r\n");
    let got = relayed_unchanged(h, &plain).await?;
    assert_eq!(header(&got, "X-Tagged").as_deref(), Some("yes"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20000_level_multipart_is_accepted_and_relayed() -> Result<()> {
    let mut h = harness().await?;
    let deep = deep_multipart(LEVELS);
    relayed_unchanged(&mut h, &deep).await?;
    still_serves(&mut h).await?;
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20000_level_message_chain_is_relayed_undecoded() -> Result<()> {
    let mut h = harness().await?;
    let chain = mail("Content-Type: message/rfc822\r\n", &rfc822_chain(LEVELS));
    let got = relayed_unchanged(&mut h, &chain).await?;
    // Not decoded, yet the body rule still applies: it reads the raw text instead.
    assert_eq!(header(&got, "X-Tagged").as_deref(), Some("yes"));
    still_serves(&mut h).await?;
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_chain_hidden_in_base64_is_relayed_undecoded() -> Result<()> {
    use base64::Engine;
    let mut h = harness().await?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(rfc822_chain(LEVELS));
    let mut body = Vec::new();
    for line in encoded.as_bytes().chunks(76) {
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
    }
    let hidden = mail(
        "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n",
        &body,
    );
    relayed_unchanged(&mut h, &hidden).await?;
    still_serves(&mut h).await?;
    h.stop().await;
    Ok(())
}
