//! Logging in: every SASL mechanism over STARTTLS and direct TLS, wrong passwords, unknown
//! users, downgrade attempts, virtual hosts.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_tests::scram::{Cb, Client as Scram, Hash};
use postern_tests::{Mode, Raw, TestServer, has, online};

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
    let answer = scram_exchange(&mut raw, &mut scram).await.unwrap();
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
    assert!(has(
        &scram_exchange(&mut raw, &mut scram).await.unwrap(),
        "not-authorized"
    ));

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
    let answer = scram_exchange(&mut raw, &mut scram).await.unwrap();
    assert!(
        has(&answer, "not-authorized"),
        "unknown SCRAM user gets a challenge, then not-authorized: {answer}"
    );
    server.stop().await;
}

/// Runs one SCRAM exchange on a secured raw stream; returns the final answer element.
async fn scram_exchange(raw: &mut Raw, scram: &mut Scram) -> anyhow::Result<String> {
    let first = B64.encode(scram.first());
    raw.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{first}</auth>",
        scram.mechanism()
    ))
    .await?;
    let challenge = raw.sasl_answer().await?;
    if !challenge.contains("<challenge") {
        return Ok(challenge);
    }
    let text = challenge
        .split('>')
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or_default();
    let response = scram.respond(&B64.decode(text)?)?;
    raw.send(&format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        B64.encode(response)
    ))
    .await?;
    raw.sasl_answer().await
}

#[tokio::test]
async fn every_mechanism_and_channel_binding_type_authenticates() {
    use sha2::Digest;
    let server = TestServer::start().await.unwrap();
    server
        .add_account("bob@localhost", "s3cret ünïcode")
        .await
        .unwrap();
    for hash in [Hash::Sha1, Hash::Sha256, Hash::Sha512] {
        for binding in ["none", "tls-exporter", "tls-server-end-point"] {
            let (mut raw, features) = Raw::secured(&server, "localhost").await.unwrap();
            let cb = match binding {
                "tls-exporter" => Cb::Bound("tls-exporter", raw.tls_exporter().expect("TLS 1.3")),
                "tls-server-end-point" => {
                    let cert = raw.peer_certificate().expect("certificate");
                    Cb::Bound("tls-server-end-point", sha2::Sha256::digest(cert).to_vec())
                }
                _ => Cb::None,
            };
            let mut scram = Scram::new(hash, "bob", "s3cret ünïcode", cb);
            assert!(
                features.contains(&format!(">{}<", scram.mechanism())),
                "{} not offered: {features}",
                scram.mechanism()
            );
            let answer = scram_exchange(&mut raw, &mut scram).await.unwrap();
            assert!(
                answer.contains("<success"),
                "{} / {binding}: {answer}",
                scram.mechanism()
            );
            let data = answer
                .split('>')
                .nth(1)
                .and_then(|t| t.split('<').next())
                .unwrap_or_default();
            assert!(
                scram.verify(&B64.decode(data).unwrap()),
                "server signature wrong for {}",
                scram.mechanism()
            );
        }
    }
    // Wrong binding data is refused.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let mut scram = Scram::new(
        Hash::Sha256,
        "bob",
        "s3cret ünïcode",
        Cb::Bound("tls-exporter", vec![0; 32]),
    );
    let answer = scram_exchange(&mut raw, &mut scram).await.unwrap();
    assert!(
        answer.contains("<failure"),
        "forged channel binding accepted: {answer}"
    );
    // PLAIN over TLS.
    let (mut raw, features) = Raw::secured(&server, "localhost").await.unwrap();
    assert!(features.contains(">PLAIN<"));
    assert!(
        raw.plain("bob@localhost", "s3cret ünïcode")
            .await
            .unwrap()
            .contains("<success")
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_mechanism_and_bad_base64_get_their_conditions() {
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
