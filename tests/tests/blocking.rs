//! XEP-0191 Blocking Command over raw sockets: alice blocks bob. Bob's stanzas are answered
//! as if alice had no resource online (nothing reveals the block), alice's to bob get
//! `not-acceptable` + `<blocked/>`, resources that retrieved the list get pushes, and the
//! list outlives the session.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{Raw, TestServer, has};

async fn online(server: &TestServer, jid: &str, resource: &str) -> Raw {
    Raw::online(server, jid, "pw", resource).await.unwrap()
}

async fn sync(raw: &mut Raw, id: &str) -> String {
    raw.sync(id).await.unwrap()
}

/// Sends an IQ set and returns what arrived up to the end of its answer's start tag.
async fn iq(raw: &mut Raw, id: &str, body: &str) -> String {
    raw.send(&format!("<iq type='set' id='{id}'>{body}</iq>"))
        .await
        .unwrap();
    let mut out = raw.read_until(&format!("id='{id}'")).await.unwrap();
    out.push_str(&raw.read_until(">").await.unwrap());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_contact_learns_nothing_and_the_user_is_told() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let mut a1 = online(&server, "alice@localhost", "a1").await;
    let mut a2 = online(&server, "alice@localhost", "a2").await;
    let mut bob = online(&server, "bob@localhost", "b").await;

    a1.send("<iq type='get' id='l1'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await
        .unwrap();
    let empty = a1.read_element("iq").await.unwrap();
    assert!(has(&empty, "blocklist") && !has(&empty, "item"), "{empty}");

    a1.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>")
        .await
        .unwrap();
    // The push (a1 retrieved the list) and the result.
    let pushed = a1.read_until("</block></iq>").await.unwrap();
    assert!(pushed.contains("bob@localhost"), "{pushed}");
    // Bob sees alice go offline.
    let gone = bob.read_until("unavailable").await.unwrap();
    assert!(gone.contains("alice@localhost/a"), "{gone}");

    // Bob writes: an error as for an account without resources, nothing about a block.
    bob.send("<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>")
        .await
        .unwrap();
    let answer = bob.read_element("message").await.unwrap();
    assert!(
        answer.contains("error") && has(&answer, "service-unavailable"),
        "{answer}"
    );
    assert!(!answer.contains("blocking"), "the block leaked: {answer}");
    bob.send("<iq type='get' id='q1' to='alice@localhost/a1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let answer = bob.read_element("iq").await.unwrap();
    assert!(has(&answer, "service-unavailable"), "{answer}");
    bob.send("<presence to='alice@localhost/a1'/>")
        .await
        .unwrap();
    sync(&mut bob, "bob-sent").await;

    // Alice writes to bob: told it is blocked.
    a1.send("<message to='bob@localhost/b' type='chat' id='m2'><body>hi bob</body></message>")
        .await
        .unwrap();
    let answer = a1.read_element("message").await.unwrap();
    assert!(
        has(&answer, "not-acceptable") && answer.contains("urn:xmpp:blocking:errors"),
        "{answer}"
    );

    // Neither of alice's resources got anything from bob; a2 (no retrieval) got no push.
    let a1_saw = sync(&mut a1, "a1-check").await;
    let a2_saw = sync(&mut a2, "a2-check").await;
    for seen in [&a1_saw, &a2_saw] {
        assert!(!seen.contains("bob@localhost/b"), "{seen}");
    }
    assert!(!has(&a2_saw, "block"), "{a2_saw}");
    let bob_saw = sync(&mut bob, "bob-check").await;
    assert!(!bob_saw.contains("hi bob"), "{bob_saw}");

    // The list is kept: a new session of alice reads it.
    let mut a3 = online(&server, "alice@localhost", "a3").await;
    a3.send("<iq type='get' id='l2'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await
        .unwrap();
    let list = a3.read_element("iq").await.unwrap();
    assert!(list.contains("bob@localhost"), "{list}");

    // Unblocking everything: pushed, and bob gets through again.
    let done = iq(&mut a3, "u1", "<unblock xmlns='urn:xmpp:blocking'/>").await;
    assert!(done.contains("result"), "{done}");
    bob.send("<message to='alice@localhost/a3' type='chat'><body>back</body></message>")
        .await
        .unwrap();
    a3.read_until("back").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_a_blocked_contact_are_not_stored_while_the_user_is_away() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    {
        let mut alice = online(&server, "alice@localhost", "a").await;
        let done = iq(
            &mut alice,
            "b1",
            "<block xmlns='urn:xmpp:blocking'><item jid='localhost/bot'/><item jid='bob@localhost'/></block>",
        )
        .await;
        assert!(done.contains("result"), "{done}");
        // Alice leaves; the server unbinds her before it closes its side, so once the
        // connection is closed she is away.
        alice.send("</stream:stream>").await.unwrap();
        alice.read_to_close().await.unwrap();
    }
    // Bob writes anyway.
    let mut bob = online(&server, "bob@localhost", "b").await;
    bob.send("<message to='alice@localhost' type='chat' id='m1'><body>stored?</body></message>")
        .await
        .unwrap();
    let answer = bob.read_element("message").await.unwrap();
    assert!(has(&answer, "service-unavailable"), "{answer}");
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "again")
        .await
        .unwrap();
    alice.send("<presence/>").await.unwrap();
    let seen = sync(&mut alice, "after").await;
    assert!(!seen.contains("stored?"), "{seen}");

    alice
        .send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await
        .unwrap();
    let info = alice.read_element("iq").await.unwrap();
    assert!(info.contains("urn:xmpp:blocking"), "{info}");
    server.stop().await;
}

/// XEP-0191 §3.4: after an unblock, presence flows again both ways between subscribed
/// contacts, without anyone having to change their presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unblocking_a_subscribed_contact_resends_presence_both_ways() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let mut alice = online(&server, "alice@localhost", "a").await;
    let mut bob = online(&server, "bob@localhost", "b").await;
    // Mutual subscription.
    for (from, to) in [(&mut alice, "bob@localhost"), (&mut bob, "alice@localhost")] {
        from.send(&format!("<presence to='{to}' type='subscribe'/>"))
            .await
            .unwrap();
        sync(from, "subscribed-ask").await;
    }
    for (from, to) in [(&mut bob, "alice@localhost"), (&mut alice, "bob@localhost")] {
        from.send(&format!("<presence to='{to}' type='subscribed'/>"))
            .await
            .unwrap();
        sync(from, "subscribed-ok").await;
    }
    alice
        .send("<presence><status>alice here</status></presence>")
        .await
        .unwrap();
    bob.send("<presence><status>bob here</status></presence>")
        .await
        .unwrap();
    bob.read_until("alice here").await.unwrap();
    alice.read_until("bob here").await.unwrap();

    let done = iq(
        &mut alice,
        "b1",
        "<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block>",
    )
    .await;
    assert!(done.contains("result"), "{done}");
    bob.read_until("unavailable").await.unwrap();
    sync(&mut bob, "bob-blocked").await;

    let mut to_alice = iq(
        &mut alice,
        "u1",
        "<unblock xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></unblock>",
    )
    .await;
    assert!(to_alice.contains("result"), "{to_alice}");
    to_alice.push_str(&sync(&mut alice, "after-unblock").await);
    let to_bob = bob.read_until("alice here").await.unwrap();
    assert!(to_bob.contains("from='alice@localhost/a'"), "{to_bob}");
    // Sent before the unblock's result.
    assert!(
        to_alice.contains("bob here") && to_alice.contains("from='bob@localhost/b'"),
        "{to_alice}"
    );
    server.stop().await;
}
