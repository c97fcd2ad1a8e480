//! XEP-0352 Client State Indication over raw sockets: an inactive client gets messages with
//! a body at once, while presence updates and chat states wait (the newest per sender) and
//! arrive before the next message, or when the client is active again.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{Raw, TestServer, has};

fn presence(status: &str) -> String {
    format!("<presence to='alice@localhost/a'><status>{status}</status></presence>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_holds_presence_and_chat_states_but_not_messages() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    // The feature is offered after authentication.
    let (raw, features) = Raw::authenticated(&server, "alice@localhost", "pw")
        .await
        .unwrap();
    assert!(features.contains("urn:xmpp:csi:0"), "{features}");
    // A state sent before binding is ignored (XEP-0352 has no error), not a stream error.
    let mut raw = raw;
    raw.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    raw.send(
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>early</resource></bind></iq>",
    )
    .await
    .unwrap();
    let bound = raw.read_element("iq").await.unwrap();
    assert!(bound.contains("alice@localhost/early"), "{bound}");
    drop(raw);

    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    alice
        .send("<inactive xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    alice
        .send("<iq type='get' id='p0'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    alice.read_until("p0").await.unwrap();

    bob.send(&presence("first")).await.unwrap();
    bob.send(&presence("second")).await.unwrap();
    bob.send("<message to='alice@localhost/a' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await
        .unwrap();
    bob.send("<message to='alice@localhost/a' type='chat'><body>hello</body></message>")
        .await
        .unwrap();
    let got = alice.read_until("hello").await.unwrap();
    assert!(!got.contains("first"), "coalesced away: {got}");
    let second = got
        .find("second")
        .expect("held presence delivered before the message");
    let composing = got.find("composing").expect("held chat state delivered");
    assert!(second < got.len() && composing < got.len(), "{got}");

    // Held while inactive, out on <active/>: only the newest of two, so it was held until
    // then (anything else alice received would have flushed both).
    bob.send(&presence("third-a")).await.unwrap();
    bob.send(&presence("third-b")).await.unwrap();
    bob.send("<iq type='get' id='bsync'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    bob.read_until("bsync").await.unwrap();
    alice
        .send("<active xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    alice
        .send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let after = alice.read_until("p1").await.unwrap();
    assert!(
        after.contains("third-b") && !after.contains("third-a"),
        "{after}"
    );

    // Active: presence goes out at once again.
    bob.send(&presence("fourth")).await.unwrap();
    alice.read_until("fourth").await.unwrap();

    // A top-level element no module handles still ends the stream.
    alice
        .send("<nonsense xmlns='urn:example:none'/>")
        .await
        .unwrap();
    let closed = alice.read_to_close().await.unwrap();
    assert!(has(&closed, "unsupported-stanza-type"), "{closed}");
    server.stop().await;
}

/// A client that says it is inactive and then never reads: its TCP window stays shut, the
/// server's writes stall, and after `write_timeout` its connection counts as lost; with
/// stream management the session waits for a resumption, then ends. Memory stays bounded
/// (the session queue, the SM queue) and nothing is lost: every message is in the client's
/// socket, in its offline storage, or back at the sender as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_client_that_never_reads_is_cut_and_loses_nothing() {
    let server = TestServer::start_with(|c| {
        c.xmpp.limits.write_timeout = std::time::Duration::from_secs(2);
        c.xmpp.sm.resume_timeout = std::time::Duration::from_secs(1);
    })
    .await
    .unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let raw = Raw::connect_small_window(server.starttls, 4096)
        .await
        .unwrap();
    let mut alice = Raw::login_on(raw, &server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    alice
        .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/><inactive xmlns='urn:xmpp:csi:0'/>")
        .await
        .unwrap();
    let enabled = alice.read_element("enabled").await.unwrap();
    let id = postern_tests::attr(&enabled, "id").unwrap();
    // From here alice reads nothing.
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    const N: usize = 600;
    let filler = "x".repeat(8 * 1024);
    for i in 0..N {
        bob.send(&format!(
            "<message to='alice@localhost/a' type='chat' id='m{i}'><body>#{i}# {filler}</body></message>"
        ))
        .await
        .unwrap();
    }
    bob.sync("sent").await.unwrap();

    // The session ends: a resumption attempt finds nothing (a probe with an impossible h
    // leaves a live session alone).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (mut probe, _) = Raw::authenticated(&server, "alice@localhost", "pw")
            .await
            .unwrap();
        probe
            .send(&format!(
                "<resume xmlns='urn:xmpp:sm:3' previd='{id}' h='99999'/>"
            ))
            .await
            .unwrap();
        let answer = probe.read_until("</failed>").await.unwrap();
        if answer.contains("item-not-found") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's session was never given up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut seen = vec![false; N];
    let mark = |seen: &mut Vec<bool>, text: &str| {
        for part in text.split('#').skip(1).step_by(2) {
            if let Ok(i) = part.parse::<usize>()
                && i < N
            {
                seen[i] = true;
            }
        }
    };
    mark(&mut seen, &alice.read_to_close().await.unwrap_or_default());
    // What was not written is stored (offline) or bounced (to bob) as the session ends; the
    // session may still be storing: collect until everything is accounted for.
    let mut round = 0;
    loop {
        round += 1;
        // The server still serves others, and bob gets what bounced.
        mark(&mut seen, &bob.sync(&format!("bob-{round}")).await.unwrap());
        let mut again = Raw::login(&server, "alice@localhost", "pw", &format!("again{round}"))
            .await
            .unwrap();
        again.send("<presence/>").await.unwrap();
        mark(&mut seen, &again.sync("offline").await.unwrap());
        drop(again);
        if seen.iter().all(|s| *s) || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let missing: Vec<usize> = (0..N).filter(|i| !seen[*i]).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    server.stop().await;
}
