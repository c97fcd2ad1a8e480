//! Logging in: every SASL mechanism over STARTTLS and direct TLS, wrong passwords, unknown
//! users, downgrade attempts, virtual hosts.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_tests::scram::{Cb, Client as Scram, Hash};
use postern_tests::{Mode, Raw, TestServer, has, online, text_of};
use sha2::Digest;

#[tokio::test]
async fn alice_logs_in_over_starttls_and_direct_tls_with_scram_plus() {
    let server = TestServer::start().await.unwrap();
    server
        .add_account("alice@localhost", "correct horse")
        .await
        .unwrap();
    for mode in [Mode::StartTls, Mode::DirectTls] {
        let mut c = server.client_with("alice@localhost", "correct horse", mode, true);
        let jid = online(&mut c).await.unwrap();
        assert_eq!(jid.to_bare().as_str(), "alice@localhost", "{mode:?}");
        assert!(jid.resource().is_some(), "server generates a resource");
        c.send_end().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn scram_without_channel_binding_works_and_a_downgrade_is_refused() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw-1").await.unwrap();
    let mut plain_scram = server.client_with("alice@localhost", "pw-1", Mode::StartTls, false);
    online(&mut plain_scram).await.unwrap();

    // 'y': the client claims the server cannot bind, though it advertised -PLUS.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let mut scram = Scram::new(Hash::Sha256, "alice", "pw-1", Cb::ClientOnly);
    let answer = raw.scram(&mut scram).await.unwrap();
    assert!(answer.contains("<failure"), "downgrade accepted: {answer}");
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let server = TestServer::start().await.unwrap();
    server
        .add_account("alice@localhost", "right")
        .await
        .unwrap();
    // SCRAM with the wrong password: a challenge, then not-authorized.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let mut scram = Scram::new(Hash::Sha256, "alice", "wrong", Cb::None);
    assert!(has(&raw.scram(&mut scram).await.unwrap(), "not-authorized"));

    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let wrong = raw.plain("alice@localhost", "wrong").await.unwrap();
    let unknown = raw.plain("nobody@localhost", "wrong").await.unwrap();
    assert!(has(&wrong, "not-authorized"), "{wrong}");
    assert_eq!(
        wrong, unknown,
        "an unknown user must look like a wrong password"
    );

    let mut scram = Scram::new(Hash::Sha256, "nobody", "x", Cb::None);
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let answer = raw.scram(&mut scram).await.unwrap();
    assert!(
        has(&answer, "not-authorized"),
        "unknown SCRAM user gets a challenge, then not-authorized: {answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_user_takes_as_long_to_refuse_as_a_wrong_password() {
    // No throttling delays here: only the verification work is compared.
    let server = TestServer::start_with(|c| c.xmpp.limits.auth_failures_before_delay = 1000)
        .await
        .unwrap();
    server
        .add_account("alice@localhost", "right")
        .await
        .unwrap();
    // Both run a full argon2id verification; skipping it for unknown users would make
    // them tens of times faster.
    let mut known = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    for _ in 0..3 {
        for (user, total) in [
            ("alice@localhost", &mut known),
            ("nobody@localhost", &mut unknown),
        ] {
            let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
            let t = Instant::now();
            assert!(has(
                &raw.plain(user, "wrong").await.unwrap(),
                "not-authorized"
            ));
            *total += t.elapsed();
        }
    }
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.3..3.0).contains(&ratio),
        "unknown {unknown:?} vs wrong password {known:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_mechanism_and_channel_binding_type_authenticates() {
    let server = TestServer::start().await.unwrap();
    server
        .add_account("bob@localhost", "s3cret ünïcode")
        .await
        .unwrap();
    for mode in [Mode::StartTls, Mode::DirectTls] {
        for hash in [Hash::Sha1, Hash::Sha256, Hash::Sha512] {
            for binding in ["none", "tls-exporter", "tls-server-end-point"] {
                let (mut raw, features) =
                    Raw::secured_with(&server, "localhost", mode).await.unwrap();
                let cb = match binding {
                    "tls-exporter" => {
                        Cb::Bound("tls-exporter", raw.tls_exporter().expect("TLS 1.3"))
                    }
                    "tls-server-end-point" => {
                        let cert = raw.peer_certificate().expect("certificate");
                        Cb::Bound("tls-server-end-point", sha2::Sha256::digest(cert).to_vec())
                    }
                    _ => Cb::None,
                };
                let mut scram = Scram::new(hash, "bob", "s3cret ünïcode", cb);
                let mechanism = scram.mechanism();
                assert!(
                    features.contains(&format!(">{mechanism}<")),
                    "{mechanism} not offered: {features}"
                );
                let answer = raw.scram(&mut scram).await.unwrap();
                assert!(
                    answer.contains("<success"),
                    "{mode:?} {mechanism} / {binding}: {answer}"
                );
                let server_final = B64.decode(text_of(&answer)).unwrap();
                assert!(
                    scram.verify(&server_final),
                    "server signature wrong for {mechanism}"
                );
            }
        }
        // PLAIN inside TLS.
        let (mut raw, features) = Raw::secured_with(&server, "localhost", mode).await.unwrap();
        assert!(features.contains(">PLAIN<"));
        assert!(
            raw.plain("bob@localhost", "s3cret ünïcode")
                .await
                .unwrap()
                .contains("<success")
        );
    }
    // Wrong binding data is refused.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let mut scram = Scram::new(
        Hash::Sha256,
        "bob",
        "s3cret ünïcode",
        Cb::Bound("tls-exporter", vec![0; 32]),
    );
    let answer = raw.scram(&mut scram).await.unwrap();
    assert!(
        answer.contains("<failure"),
        "forged channel binding accepted: {answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn sasl_failures_carry_their_rfc_6120_conditions() {
    let server = TestServer::start().await.unwrap();
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    raw.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-OAUTH2'>=</auth>")
        .await
        .unwrap();
    assert!(has(&raw.sasl_answer().await.unwrap(), "invalid-mechanism"));
    raw.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>@@@</auth>")
        .await
        .unwrap();
    assert!(has(&raw.sasl_answer().await.unwrap(), "incorrect-encoding"));
    // Guessing the mechanism wrong is not guessing the password: the client may go on
    // (slixmpp tries three -PLUS variants on TLS 1.2 before plain SCRAM).
    // HT-SHA-256-NONE exists, but only inside SASL2.
    for m in [
        "SCRAM-SHA-1-PLUS-X",
        "X-TOKEN",
        "EXTERNAL",
        "HT-SHA-256-NONE",
    ] {
        raw.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{m}'>=</auth>"
        ))
        .await
        .unwrap();
        assert!(has(&raw.sasl_answer().await.unwrap(), "invalid-mechanism"));
    }
    server.add_account("alice@localhost", "pw").await.unwrap();
    assert!(
        raw.plain("alice@localhost", "pw")
            .await
            .unwrap()
            .contains("<success")
    );

    // A fresh connection for the other conditions.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let data = B64.encode("no-separators");
    raw.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{data}</auth>"
    ))
    .await
    .unwrap();
    assert!(has(&raw.sasl_answer().await.unwrap(), "malformed-request"));
    // The client gives up in the middle of SCRAM.
    let mut scram = Scram::new(Hash::Sha256, "alice", "x", Cb::None);
    let first = B64.encode(scram.first());
    raw.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
    ))
    .await
    .unwrap();
    assert!(raw.sasl_answer().await.unwrap().contains("<challenge"));
    raw.send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        .await
        .unwrap();
    assert!(has(&raw.sasl_answer().await.unwrap(), "aborted"));
    server.stop().await;
}

#[tokio::test]
async fn disabled_accounts_cannot_log_in_until_enabled() {
    let server = TestServer::start().await.unwrap();
    server.add_account("carol@localhost", "pw").await.unwrap();
    server
        .accounts()
        .set_disabled("carol@localhost", true)
        .await
        .unwrap();
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    assert!(has(
        &raw.plain("carol@localhost", "pw").await.unwrap(),
        "not-authorized"
    ));
    server
        .accounts()
        .set_disabled("carol@localhost", false)
        .await
        .unwrap();
    let mut c = server.client("carol@localhost", "pw");
    online(&mut c).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn each_domain_presents_its_own_certificate_and_accounts() {
    let server = TestServer::start().await.unwrap();
    server.add_account("dave@example.org", "pw").await.unwrap();
    // The client trusts only example.org's certificate, so SNI must pick it.
    let mut c = server.client_with("dave@example.org", "pw", Mode::DirectTls, true);
    let jid = online(&mut c).await.unwrap();
    assert_eq!(jid.domain().as_str(), "example.org");
    // dave is not an account of localhost.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    assert!(has(
        &raw.plain("dave", "pw").await.unwrap(),
        "not-authorized"
    ));
    server.stop().await;
}

#[tokio::test]
async fn connection_count_and_per_ip_rate_are_capped() {
    let server = TestServer::start_with(|c| {
        c.xmpp.limits.max_connections = 2;
        c.xmpp.limits.connection_burst_per_ip = 4;
        c.xmpp.limits.connections_per_minute_per_ip = 1;
    })
    .await
    .unwrap();
    let mut first = Raw::connect(server.starttls).await.unwrap();
    let mut second = Raw::connect(server.starttls).await.unwrap();
    first.open("localhost").await.unwrap();
    second.open("localhost").await.unwrap();
    first.read_until("</stream:features>").await.unwrap();
    second.read_until("</stream:features>").await.unwrap();
    // A third concurrent connection is closed at once, without a stream.
    let mut third = Raw::connect(server.starttls).await.unwrap();
    let _ = third.open("localhost").await;
    assert_eq!(third.read_to_close().await.unwrap(), "");
    drop((first, second, third));
    // The server has seen them go (a barrier, not a sleep).
    server.until_connections_at_most(0).await;
    // The fourth connection fits the count again and spends the last token of the burst …
    let mut fourth = Raw::connect(server.starttls).await.unwrap();
    fourth.open("localhost").await.unwrap();
    fourth.read_until("</stream:features>").await.unwrap();
    drop(fourth);
    server.until_connections_at_most(0).await;
    // … so the fifth is over the per-IP rate.
    let mut fifth = Raw::connect(server.starttls).await.unwrap();
    let _ = fifth.open("localhost").await;
    assert_eq!(fifth.read_to_close().await.unwrap(), "");
    server.stop().await;
}

/// RFC 6120 §6.4.1: a `<mechanisms/>` list is never empty; features with nothing to
/// authenticate offer none (xmpp.js, for one, takes an empty list for a SASL offer and fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_carry_mechanisms_only_where_sasl_is_offered() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.open("localhost").await.unwrap();
    let plain = raw.read_until("</stream:features>").await.unwrap();
    assert!(plain.contains("<starttls"), "{plain}");
    assert!(!plain.contains("mechanisms"), "{plain}");
    let (_raw, sasl) = Raw::secured(&server, "localhost").await.unwrap();
    assert!(sasl.contains("<mechanism>PLAIN</mechanism>"), "{sasl}");
    let (_raw, bound) = Raw::authenticated(&server, "alice@localhost", "pw")
        .await
        .unwrap();
    assert!(
        bound.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{bound}"
    );
    assert!(!bound.contains("mechanisms"), "{bound}");
    server.stop().await;
}
