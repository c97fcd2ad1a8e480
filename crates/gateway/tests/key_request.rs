//! Key requests end to end: Bob mails Alice with `[pgp-key-request]` in the Subject; Alice
//! gets the mail, Bob gets her key back (gpg imports it and encrypts to it), and past the
//! per-sender limit further requests are delivered but not answered.
//! These tests FAIL when `gpg` is missing (Debian: gnupg).

mod common;

use anyhow::{Context, Result};
use common::*;
use postern_pgp::KeySpec;

fn request(n: u32) -> Vec<u8> {
    format!(
        "From: Bob <bob@partner.example>\r\nTo: alice@example.org\r\n\
         Subject: [PGP-Key-Request] {n}\r\nMessage-ID: <req{n}.{}@partner.example>\r\n\r\n\
         May I have your key?\r\n",
        std::process::id()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_request_is_answered_with_the_key_within_the_limit() -> Result<()> {
    let mut h = Harness::start_with(|c| c.key_requests.per_sender = 2).await?;
    let alice = h.keys().generate(KeySpec::new("alice@example.org")).await?;

    for n in 1..=3 {
        let (code, text) = h
            .send("bob@partner.example", &["alice@example.org"], &request(n))
            .await?;
        assert_eq!(code, 250, "{text}");
        assert!(text.contains("1 copy"), "{text}");
        let mut got = vec![h.sink.next().await?];
        if n <= 2 {
            got.push(h.sink.next().await?);
        }
        h.sink.assert_empty();
        got.sort_by_key(|m| m.rcpts.clone());
        assert_eq!(
            got[0].rcpts,
            vec!["alice@example.org"],
            "the request is delivered"
        );
        if n > 2 {
            continue;
        }
        let answer = &got[1];
        assert_eq!(answer.rcpts, vec!["bob@partner.example"]);
        assert_eq!(answer.from, "", "answers come from the null sender");
        assert_eq!(
            header(&answer.data, "auto-submitted").as_deref(),
            Some("auto-replied")
        );
        let key = armor(
            &answer.data,
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----END PGP PUBLIC KEY BLOCK-----",
        )?;
        let bob = Gpg::new()?;
        let (_, status) = bob.run_status(&["--import"], key)?;
        assert!(status.contains(&alice.fingerprint().to_hex()), "{status}");
        let sealed = bob.run(
            &["--armor", "--encrypt", "--recipient", "alice@example.org"],
            b"for alice",
        )?;
        assert!(!sealed.is_empty());
    }

    // The answer coming back through the MTA passes untouched and is not answered.
    let mut c = request(9);
    c.splice(0..0, b"Auto-Submitted: auto-replied\r\n".iter().copied());
    let h2 = Harness::start().await?;
    h2.keys()
        .generate(KeySpec::new("alice@example.org"))
        .await?;
    let (code, _) = h2
        .send("bob@partner.example", &["alice@example.org"], &c)
        .await
        .context("send")?;
    assert_eq!(code, 250);
    let mut sink = h2.sink;
    assert_eq!(sink.next().await?.rcpts, vec!["alice@example.org"]);
    sink.assert_empty();
    Ok(())
}
