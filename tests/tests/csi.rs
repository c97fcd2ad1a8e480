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
