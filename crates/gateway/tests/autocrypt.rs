//! Autocrypt end to end: Bob (gpg, outside) mails Alice with an Autocrypt header; the
//! gateway learns his key, and Alice's next mail to Bob is encrypted to it (gpg opens it)
//! and carries Alice's own Autocrypt header. Headers that must not teach anything do not.
//! These tests FAIL when `gpg` is missing (Debian: gnupg).

mod common;

use anyhow::{Context, Result};
use base64::Engine as _;
use common::*;
use postern_pgp::KeySpec;

/// `Autocrypt:` for `addr` with `gpg`'s minimal export of `uid`, folded.
fn autocrypt_field(gpg: &Gpg, addr: &str, uid: &str) -> Result<String> {
    let key = gpg.run(
        &["--export", "--export-options", "export-minimal", uid],
        b"",
    )?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    let folded: Vec<&str> = b64
        .as_bytes()
        .chunks(70)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    Ok(format!(
        "Autocrypt: addr={addr}; prefer-encrypt=mutual; keydata=\r\n {}\r\n",
        folded.join("\r\n ")
    ))
}

fn mail(from: &str, to: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: hello\r\nMessage-ID: <{}.{}@test>\r\n{extra}\r\n{body}\r\n",
        body.len(),
        std::process::id()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_autocrypt_key_encrypts_the_reply() -> Result<()> {
    let mut h = Harness::start().await?;
    let alice = h.keys().generate(KeySpec::new("alice@example.org")).await?;
    let bob = Gpg::new()?;
    bob.generate("Bob <bob@partner.example>")?;

    // Before: no key for Bob, Alice's mail goes signed but plain.
    assert!(
        h.keys()
            .encryption_cert("bob@partner.example")
            .await?
            .is_none()
    );

    let field = autocrypt_field(&bob, "bob@partner.example", "bob@partner.example")?;
    let inbound = mail(
        "Bob <bob@partner.example>",
        "alice@example.org",
        &field,
        "hi Alice",
    );
    let (code, text) = h
        .send("bob@partner.example", &["alice@example.org"], &inbound)
        .await?;
    assert_eq!(code, 250, "{text}");
    h.sink.next().await?;
    assert!(
        h.keys()
            .encryption_cert("bob@partner.example")
            .await?
            .is_some()
    );

    let reply = mail(
        "Alice <alice@example.org>",
        "bob@partner.example",
        "",
        "the reply is secret",
    );
    let (code, text) = h
        .send("alice@example.org", &["bob@partner.example"], &reply)
        .await?;
    assert_eq!(code, 250, "{text}");
    let out = h.sink.next().await?.data;
    assert!(
        find(&out, b"the reply is secret").is_none(),
        "plaintext leaked"
    );
    let armored = armor(
        &out,
        "-----BEGIN PGP MESSAGE-----",
        "-----END PGP MESSAGE-----",
    )?;
    // Alice's own Autocrypt header rides outside the encryption; gpg reads her key from it
    // and then checks the signature inside.
    let value = header(&out, "autocrypt").context("no Autocrypt header")?;
    assert!(
        value.starts_with("addr=alice@example.org; keydata="),
        "{value}"
    );
    let b64: String = value
        .split_once("keydata=")
        .map(|(_, k)| k.chars().filter(|c| !c.is_whitespace()).collect())
        .unwrap_or_default();
    let keydata = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let (_, status) = bob.run_status(&["--import"], &keydata)?;
    assert!(
        status.contains(&alice.fingerprint().to_hex()),
        "gpg did not import Alice's key: {status}"
    );
    let (plain, status) = bob.run_status(&["--decrypt"], armored)?;
    assert!(find(&plain, b"the reply is secret").is_some());
    assert!(status.contains("GOODSIG"), "{status}");
    Ok(())
}

/// A header for another address than From, and one claiming a served address, teach
/// nothing; nor does one that would replace a newer stored key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocrypt_headers_that_must_not_teach_do_not() -> Result<()> {
    let mut h = Harness::start().await?;
    let eve = Gpg::new()?;
    eve.generate("carol@partner.example")?;
    eve.generate("dave@example.org")?;

    // addr is not the From address.
    let field = autocrypt_field(&eve, "carol@partner.example", "carol@partner.example")?;
    let m = mail("eve@partner.example", "alice@example.org", &field, "x");
    assert_eq!(
        h.send("eve@partner.example", &["alice@example.org"], &m)
            .await?
            .0,
        250
    );
    h.sink.next().await?;
    assert!(
        h.keys()
            .public_certs("carol@partner.example")
            .await?
            .is_empty()
    );

    // A served domain's address.
    let field = autocrypt_field(&eve, "dave@example.org", "dave@example.org")?;
    let m = mail("dave@example.org", "alice@example.org", &field, "y");
    assert_eq!(
        h.send("eve@partner.example", &["alice@example.org"], &m)
            .await?
            .0,
        250
    );
    h.sink.next().await?;
    assert!(h.keys().public_certs("dave@example.org").await?.is_empty());

    // An older key never replaces a newer one: Frank's stored key is newer than the one
    // his header carries.
    let old = Gpg::new()?;
    old.run(
        &[
            "--faked-system-time",
            "20200101T000000!",
            "--quick-gen-key",
            "frank@partner.example",
            "future-default",
            "default",
            "never",
        ],
        b"",
    )?;
    let newer = postern_pgp::generate(&KeySpec::new("frank@partner.example"))?;
    let newer_fpr = newer.fingerprint();
    h.keys().put(newer.strip_secret_key_material()).await?;
    let field = autocrypt_field(&old, "frank@partner.example", "frank@partner.example")?;
    let m = mail("frank@partner.example", "alice@example.org", &field, "z");
    assert_eq!(
        h.send("frank@partner.example", &["alice@example.org"], &m)
            .await?
            .0,
        250
    );
    h.sink.next().await?;
    let stored = h.keys().public_certs("frank@partner.example").await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].fingerprint(),
        newer_fpr,
        "the newer key stays, not the header's older one"
    );
    Ok(())
}
