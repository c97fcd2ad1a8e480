//! Deeply nested XML at every point of the stream: the server ends that stream with
//! `<policy-violation/>` (checked as the bytes arrive, before any element tree is built),
//! and a client that logged in before keeps being served.
//!
//! 5,000 levels used to overflow the worker's stack and abort the whole process.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{Mode, Raw, TestServer, has};

/// 10^2 … 10^5 levels; 10^5 `<a>` take 700 KB, so the server under test allows 1 MiB
/// stanzas: every depth here is within the size cap and only the depth limit refuses it.
const DEPTHS: [usize; 4] = [100, 1_000, 10_000, 100_000];

async fn server() -> TestServer {
    let server = TestServer::start_with(|c| {
        c.xmpp.limits.max_stanza_size = postern_xmpp::config::ByteSize(1024 * 1024);
        // Dozens of connections from 127.0.0.1 in one test.
        c.xmpp.limits.connection_burst_per_ip = 1000;
    })
    .await
    .unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    server.add_account("bob@localhost", "pw").await.unwrap();
    server
}

fn nested(open: &str, levels: usize) -> String {
    let mut out = String::with_capacity(levels * 7 + open.len() * 2);
    out.push_str(open);
    out.push_str(&"<a>".repeat(levels));
    out.push_str(&"</a>".repeat(levels));
    out
}

/// `payload` nested so that the top-level element has `levels` levels, inside `outer`
/// (`<message …>`), closed with `close`.
fn stanza(outer: &str, close: &str, levels: usize) -> String {
    let inner = levels.saturating_sub(1);
    let mut out = String::from(outer);
    out.push_str(&"<a xmlns='urn:example:deep'>".repeat(inner));
    out.push_str(&"</a>".repeat(inner));
    out.push_str(close);
    out
}

/// Sends `data` (the server may close while it is still being written: that is the point)
/// and expects the stream to end with policy-violation.
async fn refused(raw: &mut Raw, data: &str, what: &str) {
    let _ = raw.send(data).await;
    let closed = raw.read_to_close().await.unwrap();
    assert!(
        has(&closed, "policy-violation"),
        "{what}: {}",
        &closed[..closed.len().min(400)]
    );
    assert!(closed.contains("</stream:stream>"), "{what}: {closed}");
}

/// The client that logged in before still gets its pings answered.
async fn still_served(bystander: &mut Raw, n: usize) {
    let id = format!("alive{n}");
    bystander
        .send(&format!(
            "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await
        .unwrap();
    let answer = bystander.read_until(&format!("id='{id}'")).await;
    assert!(answer.is_ok(), "the bystander lost its session: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_before_tls_ends_the_stream_and_others_keep_going() {
    let server = server().await;
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    for (n, depth) in DEPTHS.into_iter().enumerate() {
        // Header and features first, then the nest.
        let mut raw = Raw::connect(server.starttls).await.unwrap();
        raw.open("localhost").await.unwrap();
        raw.read_until("</stream:features>").await.unwrap();
        refused(&mut raw, &nested("", depth), "after the header").await;

        // The nest in the same write as the header: the server still answers with its own
        // header and then the error.
        let mut raw = Raw::connect(server.starttls).await.unwrap();
        let header = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' \
                      xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        refused(&mut raw, &nested(header, depth), "with the header").await;

        // Inside the STARTTLS nonza.
        let mut raw = Raw::connect(server.starttls).await.unwrap();
        raw.open("localhost").await.unwrap();
        raw.read_until("</stream:features>").await.unwrap();
        let starttls = stanza(
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>",
            "</starttls>",
            depth,
        );
        refused(&mut raw, &starttls, "inside <starttls/>").await;
        still_served(&mut bob, n).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_after_tls_before_sasl_ends_the_stream() {
    let server = server().await;
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    for (n, depth) in DEPTHS.into_iter().enumerate() {
        for mode in [Mode::StartTls, Mode::DirectTls] {
            let (mut raw, _) = Raw::secured_with(&server, "localhost", mode).await.unwrap();
            refused(&mut raw, &nested("", depth), "after TLS").await;

            let (mut raw, _) = Raw::secured_with(&server, "localhost", mode).await.unwrap();
            let auth = stanza(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>",
                "</auth>",
                depth,
            );
            refused(&mut raw, &auth, "inside <auth/>").await;
        }
        still_served(&mut bob, n).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_after_bind_ends_the_stream_in_every_kind_of_element() {
    let server = server().await;
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let kinds = [
        ("<message to='bob@localhost' type='chat'>", "</message>"),
        ("<iq type='get' id='q' to='localhost'>", "</iq>"),
        ("<presence>", "</presence>"),
        // A nonza, and a top-level element no one knows.
        ("<r xmlns='urn:xmpp:sm:3'>", "</r>"),
        ("<x xmlns='urn:example:unknown'>", "</x>"),
    ];
    let mut n = 0;
    for depth in DEPTHS {
        for (open, close) in kinds {
            let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
                .await
                .unwrap();
            refused(&mut alice, &stanza(open, close, depth), open).await;
            n += 1;
            still_served(&mut bob, n).await;
        }
    }
    // Before the resource is bound (after SASL): the same.
    let (mut raw, _) = Raw::authenticated(&server, "alice@localhost", "pw")
        .await
        .unwrap();
    refused(&mut raw, &nested("", 5_000), "before bind").await;
    still_served(&mut bob, n + 1).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stanza_exactly_at_the_depth_limit_is_delivered() {
    let server = server().await;
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let limit = server.config.xmpp.limits.max_stanza_depth;
    assert_eq!(limit, 64, "the documented default");
    let message = stanza(
        "<message to='bob@localhost/b' type='chat' id='deep'><body>deep</body>",
        "</message>",
        limit,
    );
    alice.send(&message).await.unwrap();
    let got = bob.read_until("</message>").await.unwrap();
    assert!(
        got.contains("id='deep'") || got.contains("id=\"deep\""),
        "{got}"
    );
    assert_eq!(
        got.matches("<a ").count() + got.matches("<a>").count(),
        limit - 1
    );
    // One level more is refused.
    let message = stanza(
        "<message to='bob@localhost/b' type='chat'>",
        "</message>",
        limit + 1,
    );
    refused(&mut alice, &message, "one over the limit").await;
    still_served(&mut bob, 0).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_stream_header_is_refused_and_others_keep_going() {
    let server = server().await;
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let header = |attr: &str, value: &str| {
        format!(
            "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             {attr}='{value}'>"
        )
    };
    // An attribute larger than the stanza size cap: refused before any features.
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    let _ = raw
        .send(&header("from", &"x".repeat(2 * 1024 * 1024)))
        .await;
    let closed = raw.read_to_close().await.unwrap();
    assert!(
        !closed.contains("<stream:features"),
        "{}",
        &closed[..closed.len().min(300)]
    );
    // A long one (rxml caps one attribute value at 8 KiB) is only a long attribute.
    let mut raw = Raw::connect(server.starttls).await.unwrap();
    raw.send(&header("from", &"y".repeat(7 * 1024)))
        .await
        .unwrap();
    raw.read_until("</stream:features>").await.unwrap();
    still_served(&mut bob, 0).await;
    server.stop().await;
}
