//! XEP-0280 Message Carbons over raw sockets: alice has three resources, two with carbons
//! on; what bob and alice say to each other shows up on the other enabled one, never on the
//! one without carbons, and not when a message asks for privacy.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{Raw, TestServer, has};

const ENABLE: &str = "<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>";

async fn online(server: &TestServer, jid: &str, resource: &str, carbons: bool) -> Raw {
    let mut raw = Raw::online(server, jid, "pw", resource).await.unwrap();
    if carbons {
        raw.send(ENABLE).await.unwrap();
        let answer = raw.read_element("iq").await.unwrap();
        assert!(answer.contains("result"), "{answer}");
    }
    raw
}

async fn sync(raw: &mut Raw, id: &str) -> String {
    raw.sync(id).await.unwrap()
}

fn chat(to: &str, body: &str, extra: &str) -> String {
    format!("<message to='{to}' type='chat'><body>{body}</body>{extra}</message>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_resources_see_both_sides_and_private_messages_stay_private() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let mut a1 = online(&server, "alice@localhost", "a1", true).await;
    let mut a2 = online(&server, "alice@localhost", "a2", true).await;
    let mut a3 = online(&server, "alice@localhost", "a3", false).await;
    let mut bob = online(&server, "bob@localhost", "b", false).await;
    // Presence broadcasts so far are not what this test reads.
    for (raw, id) in [
        (&mut a1, "s1"),
        (&mut a2, "s2"),
        (&mut a3, "s3"),
        (&mut bob, "sb"),
    ] {
        sync(raw, id).await;
    }

    // Received: bob writes to a1's full JID; a2 gets a copy.
    bob.send(&chat("alice@localhost/a1", "one", ""))
        .await
        .unwrap();
    let original = a1.read_until("</message>").await.unwrap();
    assert!(
        original.contains("one") && !has(&original, "received"),
        "{original}"
    );
    let copy = a2
        .read_until("</message></forwarded></received></message>")
        .await
        .unwrap();
    assert!(has(&copy, "received"), "{copy}");
    assert!(
        copy.contains("from=\"alice@localhost\"") || copy.contains("from='alice@localhost'"),
        "{copy}"
    );
    assert!(
        copy.contains("bob@localhost/b") && copy.contains("one"),
        "{copy}"
    );

    // Sent: a1 writes to bob; a2 gets a copy, bob the message.
    a1.send(&chat("bob@localhost/b", "two", "")).await.unwrap();
    let got = bob.read_until("</message>").await.unwrap();
    assert!(got.contains("two"), "{got}");
    let copy = a2
        .read_until("</message></forwarded></sent></message>")
        .await
        .unwrap();
    assert!(has(&copy, "sent") && copy.contains("two"), "{copy}");

    // Private and no-copy: delivered (without <private/>), never copied. Then one ordinary
    // message: the only copy a2 sees is that one.
    let private = "<private xmlns='urn:xmpp:carbons:2'/>";
    a1.send(&chat("bob@localhost/b", "secret", private))
        .await
        .unwrap();
    let got = bob.read_until("</message>").await.unwrap();
    assert!(got.contains("secret") && !has(&got, "private"), "{got}");
    bob.send(&chat(
        "alice@localhost/a1",
        "hush",
        "<no-copy xmlns='urn:xmpp:hints'/>",
    ))
    .await
    .unwrap();
    a1.read_until("hush").await.unwrap();
    bob.send(&chat("alice@localhost/a1", "three", ""))
        .await
        .unwrap();
    let seen = a2.read_until("three").await.unwrap();
    assert!(!seen.contains("secret") && !seen.contains("hush"), "{seen}");

    // The resource without carbons saw none of it.
    let a3_saw = sync(&mut a3, "a3-end").await;
    assert!(
        !has(&a3_saw, "received") && !has(&a3_saw, "sent"),
        "{a3_saw}"
    );

    // Disabled: no more copies.
    a2.send("<iq type='set' id='c2'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
        .await
        .unwrap();
    a2.read_until("id='c2'").await.unwrap();
    bob.send(&chat("alice@localhost/a1", "four", ""))
        .await
        .unwrap();
    a1.read_until("four").await.unwrap();
    let after = sync(&mut a2, "a2-end").await;
    assert!(!after.contains("four"), "{after}");

    // Only for oneself.
    a2.send("<iq type='set' id='c3' to='bob@localhost'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        .await
        .unwrap();
    let refused = a2.read_element("iq").await.unwrap();
    assert!(
        refused.contains("error") && has(&refused, "forbidden"),
        "{refused}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_server_says_it_does_carbons() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut a = Raw::login(&server, "alice@localhost", "pw", "r")
        .await
        .unwrap();
    a.send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await
        .unwrap();
    let info = a.read_element("iq").await.unwrap();
    assert!(info.contains("urn:xmpp:carbons:2"), "{info}");
    server.stop().await;
}
