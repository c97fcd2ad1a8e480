//! Content-filter rules end to end: the real gateway with `[[gateway.rules]]`, a capture
//! sink as next hop, gpg checking what came out, and the dry run (`postern rules test`)
//! predicting each result. These tests FAIL when `gpg` is missing (Debian: gnupg).

mod common;

use anyhow::{Context, Result};
use common::*;
use postern_gateway::GatewayConfig;
use postern_gateway::rules;
use postern_pgp::KeySpec;

/// Encryption and signing only by rule: policy has both off.
fn rules_only(config: &mut GatewayConfig) {
    config.rules = rules_from_toml(
        r#"
        [[rules]]
        name = "secure subject"
        conditions = [{ subject_contains = "[secure]" }]
        actions = [{ encrypt = true }, { add_header = "X-Classification: secure" }]

        [[rules]]
        name = "too big"
        conditions = [{ size_greater_than = "100 KiB" }]
        actions = [
            { delete = true },
            { notify_sender = { subject = "Not delivered: $SUBJECT$", body = "Your mail to $RECIPIENT$ ($SIZE$ bytes) is larger than we send." } },
            { stop = true },
        ]

        [[rules]]
        name = "legal signs"
        conditions = [{ sender_in_group = "legal" }]
        actions = [{ sign = true }]
        "#,
    );
    config.policy.encrypt = false;
    config.policy.sign = false;
}

fn mail(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len() + body.len()
    )
    .into_bytes()
}

async fn predicted(h: &Harness, from: &str, to: &str, message: &[u8]) -> String {
    rules::dry_run(
        &h.gateway.config.rules,
        &h.accounts,
        from,
        &[to.to_owned()],
        message,
    )
    .await
    .summary()
}

/// Alice writes `[secure]` in the subject: the rule encrypts to Bob's key (policy alone
/// would not), gpg opens it, and the rule's header is inside; without the token the
/// mail goes plain. The dry run said so both times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_token_rule_encrypts() -> Result<()> {
    let mut h = Harness::start_with(rules_only).await?;
    let bob = Gpg::new()?;
    let bob_public = bob.generate("Bob <bob@partner.example>")?;
    h.keys().import(&bob_public, None).await?;

    let secure = mail(
        "alice@example.org",
        "bob@partner.example",
        "Plans [SECURE]",
        "the secret plan",
    );
    assert_eq!(
        predicted(&h, "alice@example.org", "bob@partner.example", &secure).await,
        "encrypt; add header \"X-Classification: secure\""
    );
    let (code, text) = h
        .send("alice@example.org", &["bob@partner.example"], &secure)
        .await?;
    assert_eq!(code, 250, "{text}");
    let got = h.sink.next().await?.data;
    assert!(got.starts_with(b"X-Postern-PGP: encrypted; tag="));
    assert!(find(&got, b"the secret plan").is_none(), "plaintext leaked");
    let armored = armor(
        &got,
        "-----BEGIN PGP MESSAGE-----",
        "-----END PGP MESSAGE-----",
    )?;
    let plain = bob.run(&["--decrypt"], armored)?;
    assert!(find(&plain, b"the secret plan").is_some());

    let ordinary = mail(
        "alice@example.org",
        "bob@partner.example",
        "Lunch",
        "pizza?",
    );
    assert_eq!(
        predicted(&h, "alice@example.org", "bob@partner.example", &ordinary).await,
        "no rule action (policy only)"
    );
    assert_eq!(
        h.send("alice@example.org", &["bob@partner.example"], &ordinary)
            .await?
            .0,
        250
    );
    let got = h.sink.next().await?.data;
    assert!(find(&got, b"pizza?").is_some() && find(&got, b"BEGIN PGP").is_none());
    h.sink.assert_empty();
    Ok(())
}

/// A 200 KB mail: the size rule deletes it (the MTA hears 250, nothing reaches Bob) and
/// the sender gets a note, from the null sender, with the templates filled in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_rule_deletes_and_notifies_the_sender() -> Result<()> {
    let mut h = Harness::start_with(rules_only).await?;
    let big = mail(
        "alice@example.org",
        "bob@partner.example",
        "Holiday photos [secure]",
        &"x".repeat(200 * 1024),
    );
    let summary = predicted(&h, "alice@example.org", "bob@partner.example", &big).await;
    assert!(
        summary.starts_with("delete (rule \"too big\"); add header"),
        "{summary}"
    );
    assert!(
        summary.ends_with("note to alice@example.org (\"Not delivered: Holiday photos [secure]\")")
    );

    let (code, text) = h
        .send("alice@example.org", &["bob@partner.example"], &big)
        .await?;
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("deleted by rule \"too big\""), "{text}");
    let note = h.sink.next().await?;
    assert_eq!(note.from, "", "notes come from the null sender");
    assert_eq!(note.rcpts, vec!["alice@example.org"]);
    assert_eq!(
        header(&note.data, "subject").as_deref(),
        Some("Not delivered: Holiday photos [secure]")
    );
    let size = stuff(&big).len() - 3; // as received: CRLF lines, no dot-stuffing, no "."
    let expected = format!("Your mail to bob@partner.example ({size} bytes)");
    assert!(
        find(&note.data, expected.as_bytes()).is_some(),
        "{}",
        String::from_utf8_lossy(&note.data)
    );
    assert!(note.data.starts_with(b"X-Postern-PGP: note; tag="));
    h.sink.assert_empty();

    // The note comes back through the MTA: it carries our trace field and passes untouched.
    let (code, _) = h.send("", &["alice@example.org"], &note.data).await?;
    assert_eq!(code, 250);
    assert_eq!(h.sink.next().await?.data, note.data);
    Ok(())
}

/// Alice is in group `legal`: the group rule signs her mail (signing is off in policy),
/// gpg verifies it; Carol, not in the group, sends plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_rule_signs() -> Result<()> {
    let mut h = Harness::start_with(rules_only).await?;
    let alice = h.keys().generate(KeySpec::new("alice@example.org")).await?;
    h.keys().generate(KeySpec::new("carol@example.org")).await?;
    h.accounts.group_add("legal").await?;
    h.accounts
        .group_add_member("legal", "alice@example.org")
        .await?;

    let m = mail(
        "alice@example.org",
        "nokey@other.example",
        "Contract",
        "see terms",
    );
    assert_eq!(
        predicted(&h, "alice@example.org", "nokey@other.example", &m).await,
        "sign"
    );
    let (code, text) = h
        .send("alice@example.org", &["nokey@other.example"], &m)
        .await?;
    assert_eq!(code, 250, "{text}");
    let signed = h.sink.next().await?.data;
    assert!(signed.starts_with(b"X-Postern-PGP: signed; tag="));
    let p = parts(&signed, &param(&signed, "boundary")?)?;
    let sig = armor(
        p[1],
        "-----BEGIN PGP SIGNATURE-----",
        "-----END PGP SIGNATURE-----",
    )?;
    let gpg = Gpg::new()?;
    gpg.import(postern_pgp::armored_public(&alice)?.as_bytes())?;
    let data = gpg.file("part", p[0])?;
    let sigf = gpg.file("part.sig", sig)?;
    let (_, status) = gpg.run_status(&["--verify", path(&sigf), path(&data)], b"")?;
    let validsig = status
        .lines()
        .find(|l| l.contains("VALIDSIG"))
        .context("no VALIDSIG")?;
    assert!(validsig.contains(&alice.fingerprint().to_hex()));

    let m = mail(
        "carol@example.org",
        "nokey@other.example",
        "Contract",
        "see terms",
    );
    assert_eq!(
        predicted(&h, "carol@example.org", "nokey@other.example", &m).await,
        "no rule action (policy only)"
    );
    assert_eq!(
        h.send("carol@example.org", &["nokey@other.example"], &m)
            .await?
            .0,
        250
    );
    let plain = h.sink.next().await?.data;
    assert!(find(&plain, b"multipart/signed").is_none());
    Ok(())
}
