//! Bad input over raw sockets: each gets the protocol's error, the server keeps running, and
//! a correct login right after succeeds.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::{Duration, Instant};

use postern_tests::{Raw, TestServer, online};

async fn still_serves(server: &TestServer) {
    let mut c = server.client("alice@localhost", "pw");
    online(&mut c)
        .await
        .expect("a correct login after bad input");
}

#[tokio::test]
async fn malformed_xml_ends_the_stream_with_not_well_formed() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut raw = Raw::login(&server, "alice@localhost", "pw", "r")
        .await
        .unwrap();
    raw.send("<message to='bob@localhost'><body>unclosed</message>")
        .await
        .unwrap();
    let closed = raw.read_to_close().await.unwrap();
    assert!(closed.contains("not-well-formed"), "{closed}");
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_stanza_ends_the_stream_with_policy_violation() {
    let server = TestServer::start_with(|c| {
        c.xmpp.limits.max_stanza_size = postern_xmpp::config::ByteSize(64 * 1024)
    })
    .await
    .unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut raw = Raw::login(&server, "alice@localhost", "pw", "r")
        .await
        .unwrap();
    let big = "x".repeat(200 * 1024);
    // The server may close while we are still writing; that is the point.
    let _ = raw
        .send(&format!(
            "<message to='alice@localhost'><body>{big}</body></message>"
        ))
        .await;
    let closed = raw.read_to_close().await.unwrap();
    assert!(
        closed.contains("policy-violation"),
        "{}",
        &closed[..closed.len().min(500)]
    );
    // A stanza just under the limit is fine.
    let mut raw = Raw::login(&server, "alice@localhost", "pw", "r2")
        .await
        .unwrap();
    let ok = "y".repeat(40 * 1024);
    raw.send(&format!(
        "<message to='alice@localhost/r2' type='chat'><body>{ok}</body></message>"
    ))
    .await
    .unwrap();
    let echoed = raw.read_until("</message>").await.unwrap();
    assert!(echoed.contains(&ok));
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn stanzas_before_authentication_are_refused() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    // Before TLS.
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.open("localhost").await.unwrap();
    raw.read_until("</stream:features>").await.unwrap();
    raw.send("<message to='alice@localhost'><body>hi</body></message>")
        .await
        .unwrap();
    let closed = raw.read_to_close().await.unwrap();
    assert!(closed.contains("not-authorized"), "{closed}");
    // SASL before TLS.
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.open("localhost").await.unwrap();
    let features = raw.read_until("</stream:features>").await.unwrap();
    assert!(
        features.contains("<required"),
        "STARTTLS must be required: {features}"
    );
    assert!(
        !features.contains("PLAIN"),
        "no SASL before TLS: {features}"
    );
    raw.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHB3</auth>",
    )
    .await
    .unwrap();
    let closed = raw.read_to_close().await.unwrap();
    assert!(closed.contains("policy-violation"), "{closed}");
    // After TLS, before SASL.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    raw.send("<iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq>")
        .await
        .unwrap();
    let closed = raw.read_to_close().await.unwrap();
    assert!(closed.contains("not-authorized"), "{closed}");
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_host_garbage_and_unknown_elements_are_handled() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.open("not-served.example").await.unwrap();
    let closed = raw.read_to_close().await.unwrap();
    assert!(closed.contains("host-unknown"), "{closed}");

    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.send_bytes(b"\x16\x03\x01\x00\xff garbage \x00\x01")
        .await
        .unwrap();
    // Not a stream: RFC 6120 §4.9.1.2, our header, <not-well-formed/>, the footer; nothing
    // to negotiate.
    let closed = raw.read_to_close().await.unwrap();
    assert!(!closed.contains("<stream:features"), "{closed}");
    assert_stream_error_after_header(&closed, "not-well-formed");

    let mut raw = Raw::login(&server, "alice@localhost", "pw", "r")
        .await
        .unwrap();
    raw.send("<frobnicate xmlns='urn:example:nope'/>")
        .await
        .unwrap();
    let closed = raw.read_to_close().await.unwrap();
    assert!(closed.contains("unsupported-stanza-type"), "{closed}");

    // A stanza that does not parse gets bad-request with its id, and the stream stays up.
    let mut raw = Raw::login(&server, "alice@localhost", "pw", "r2")
        .await
        .unwrap();
    raw.send("<message id='m1' type='bogus-type' to='alice@localhost'/>")
        .await
        .unwrap();
    let err = raw.read_until("</message>").await.unwrap();
    assert!(err.contains("bad-request") && err.contains("m1"), "{err}");
    raw.send("<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        .await
        .unwrap();
    assert!(raw.read_until("</iq>").await.unwrap().contains("Postern"));
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn failed_logins_are_slowed_but_the_real_user_gets_in_at_once() {
    let server = TestServer::start_with(|c| {
        c.xmpp.limits.auth_failures_before_delay = 2;
        c.xmpp.limits.auth_failure_max_delay = Duration::from_millis(1500);
    })
    .await
    .unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut slowest = Duration::ZERO;
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
        for _ in 0..2 {
            let t = Instant::now();
            let answer = raw.plain("alice@localhost", "guess").await.unwrap();
            assert!(answer.contains("not-authorized"));
            slowest = slowest.max(t.elapsed());
            fastest = fastest.min(t.elapsed());
        }
    }
    assert!(
        slowest >= Duration::from_millis(1000),
        "failures are not slowed: {slowest:?}"
    );
    assert!(
        fastest < Duration::from_millis(1000),
        "first failures should be quick: {fastest:?}"
    );
    // Three attempts on one connection end it.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    for _ in 0..3 {
        let _ = raw.plain("nobody@localhost", "x").await;
    }
    let closed = raw.read_to_close().await.unwrap();
    assert!(closed.contains("policy-violation"), "{closed}");
    // The real user is not locked out and not delayed.
    let (mut raw, _) = Raw::secured(&server, "localhost").await.unwrap();
    let t = Instant::now();
    assert!(
        raw.plain("alice@localhost", "pw")
            .await
            .unwrap()
            .contains("<success")
    );
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "correct login delayed: {:?}",
        t.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_handshake_timeout() {
    let server =
        TestServer::start_with(|c| c.xmpp.limits.handshake_timeout = Duration::from_secs(1))
            .await
            .unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.open("localhost").await.unwrap();
    let t = Instant::now();
    let closed = raw.read_to_close().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(closed.contains("connection-timeout"), "{closed}");
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn whitespace_between_elements_is_fine_at_every_step() {
    // go-xmpp (go-sendxmpp) ends every element with a newline, also before stream restarts.
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.send("\n").await.unwrap();
    raw.open("localhost").await.unwrap();
    raw.read_until("</stream:features>").await.unwrap();
    raw.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n")
        .await
        .unwrap();
    raw.read_element("proceed").await.unwrap();
    raw.upgrade("localhost", server.tls_config("localhost"))
        .await
        .unwrap();
    raw.open("localhost").await.unwrap();
    raw.read_until("</stream:features>").await.unwrap();
    let answer = raw
        .plain_with_suffix("alice@localhost", "pw", "\n")
        .await
        .unwrap();
    assert!(answer.contains("<success"), "{answer}");
    raw.open("localhost").await.unwrap();
    let features = raw.read_until("</stream:features>").await.unwrap();
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{features}"
    );
    raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>ws</resource></bind></iq>\n\n")
        .await
        .unwrap();
    raw.read_element("iq").await.unwrap();
    raw.send("<message to='alice@localhost/ws' type='chat'><body>echo</body></message>\n")
        .await
        .unwrap();
    assert!(raw.read_until("</message>").await.unwrap().contains("echo"));
    server.stop().await;
}

/// The server's answer to a bad header: its own header first, then the error, then the
/// footer (RFC 6120 §4.9.1.2).
fn assert_stream_error_after_header(closed: &str, condition: &str) {
    let header = closed.find("<stream:stream").expect(closed);
    let error = closed.find(&format!("<{condition}")).expect(closed);
    let footer = closed.find("</stream:stream>").expect(closed);
    assert!(header < error && error < footer, "{closed}");
    assert!(
        closed.contains("xmlns='urn:ietf:params:xml:ns:xmpp-streams'")
            || closed.contains("xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\""),
        "{closed}"
    );
}

#[tokio::test]
async fn bad_stream_headers_get_a_header_and_the_rfc_6120_error() {
    let server = TestServer::start().await.unwrap();
    let cases = [
        (
            "<stream:stream to='localhost' version='1.0' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>",
            "invalid-namespace",
        ),
        (
            "<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='urn:not:streams'>",
            "invalid-namespace",
        ),
        (
            "<stream:stream to='localhost' version='1.0' xmlns='jabber:client'>",
            "bad-namespace-prefix",
        ),
        (
            "<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            "unsupported-version",
        ),
    ];
    for (header, condition) in cases {
        let mut raw = Raw::connect(server.starttls).await.unwrap();
        raw.send(&format!("<?xml version='1.0'?>{header}"))
            .await
            .unwrap();
        let closed = raw.read_to_close().await.unwrap();
        assert_stream_error_after_header(&closed, condition);
        assert!(!closed.contains("<stream:features"), "{closed}");
    }
    // The same after TLS (a second header check on the TLS stream).
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.starttls("localhost", server.tls_config("localhost"))
        .await
        .unwrap();
    raw.send("<stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        .await
        .unwrap();
    let closed = raw.read_to_close().await.unwrap();
    assert_stream_error_after_header(&closed, "unsupported-version");
    // And a proper header split into single bytes still works.
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    let header = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    for b in header.as_bytes() {
        raw.send_bytes(&[*b]).await.unwrap();
    }
    let features = raw.read_until("</stream:features>").await.unwrap();
    assert!(features.contains("<starttls"), "{features}");
    server.stop().await;
}
