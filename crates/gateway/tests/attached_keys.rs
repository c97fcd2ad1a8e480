//! Attached `application/pgp-keys` parts end to end: imported from an authenticated local
//! sender, or when the key's own user ID is the sender's From address; a stranger's key
//! for another address is not. These tests FAIL when `gpg` is missing (Debian: gnupg).

mod common;

use anyhow::Result;
use common::*;
use postern_gateway::{GatewayConfig, LocalSenders};

fn with_key(from: &str, to: &str, key: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: my key\r\nMessage-ID: <{}.{}@test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"k\"\r\n\r\n\
         --k\r\nContent-Type: text/plain\r\n\r\nHere is the key.\r\n\
         --k\r\nContent-Type: application/pgp-keys; name=\"key.asc\"\r\n\
         Content-Disposition: attachment; filename=\"key.asc\"\r\n\r\n",
        key.len(),
        std::process::id()
    )
    .into_bytes();
    m.extend_from_slice(&crlf(key));
    m.extend_from_slice(b"\r\n--k--\r\n");
    m
}

/// The MTA's evidence that the client authenticated (Postfix `smtpd_sasl_authenticated_header`).
fn authenticated(mail: &[u8], user: &str) -> Vec<u8> {
    let mut out = format!(
        "Received: from client (client [192.0.2.7])\r\n\t(Authenticated sender: {user})\r\n\tby mx.example.org (Postfix) with ESMTPSA id 1\r\n"
    )
    .into_bytes();
    out.extend_from_slice(mail);
    out
}

fn authenticated_senders(c: &mut GatewayConfig) {
    c.local_senders = LocalSenders::Authenticated;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_an_authenticated_local_sender_is_imported() -> Result<()> {
    let mut h = Harness::start_with(authenticated_senders).await?;
    let carol = Gpg::new()?;
    // Carol's key also claims a served address: that user ID is dropped.
    let key = carol.generate("Carol <carol@third.example>")?;
    carol.run(
        &[
            "--quick-add-uid",
            "carol@third.example",
            "mallory@example.org",
        ],
        b"",
    )?;
    let key_with_uids = carol.run(&["--armor", "--export", "carol@third.example"], b"")?;
    assert!(key.len() < key_with_uids.len());

    let m = authenticated(
        &with_key("alice@example.org", "bob@partner.example", &key_with_uids),
        "alice",
    );
    let (code, text) = h
        .send("alice@example.org", &["bob@partner.example"], &m)
        .await?;
    assert_eq!(code, 250, "{text}");
    h.sink.next().await?;
    assert!(
        h.keys()
            .encryption_cert("carol@third.example")
            .await?
            .is_some()
    );
    assert!(
        h.keys()
            .public_certs("mallory@example.org")
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_key_is_imported_only_for_their_own_address() -> Result<()> {
    let mut h = Harness::start_with(authenticated_senders).await?;

    // Without authentication, alice@example.org is not a local sender: her attached key
    // for someone else is refused.
    let other = Gpg::new()?;
    let someone = other.generate("someone@third.example")?;
    let m = with_key("alice@example.org", "bob@partner.example", &someone);
    assert_eq!(
        h.send("alice@example.org", &["bob@partner.example"], &m)
            .await?
            .0,
        250
    );
    h.sink.next().await?;
    assert!(
        h.keys()
            .public_certs("someone@third.example")
            .await?
            .is_empty()
    );

    // Eve, outside, attaches a key for Carol: refused.
    let m = with_key("eve@partner.example", "alice@example.org", &someone);
    assert_eq!(
        h.send("eve@partner.example", &["alice@example.org"], &m)
            .await?
            .0,
        250
    );
    h.sink.next().await?;
    assert!(
        h.keys()
            .public_certs("someone@third.example")
            .await?
            .is_empty()
    );

    // Dan attaches his own key: imported, and Alice's next mail to him is encrypted.
    let dan = Gpg::new()?;
    let dan_key = dan.generate("Dan <dan@partner.example>")?;
    let m = with_key("Dan <dan@partner.example>", "alice@example.org", &dan_key);
    assert_eq!(
        h.send("dan@partner.example", &["alice@example.org"], &m)
            .await?
            .0,
        250
    );
    h.sink.next().await?;
    assert!(
        h.keys()
            .encryption_cert("dan@partner.example")
            .await?
            .is_some()
    );
    Ok(())
}
