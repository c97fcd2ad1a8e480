//! XEP-0198 Stream Management over raw sockets: acknowledgements, resumption after a cut
//! connection (each unacknowledged message delivered exactly once), the resume timeout
//! (unacknowledged messages end up in offline storage), and bad input: a forged `h`, another
//! account's `previd`, SM nonzas at the wrong time, a nonza flood.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::Duration;

use postern_tests::{Raw, TestServer, attr};

const SM: &str = "urn:xmpp:sm:3";

async fn server_with(accounts: &[&str], resume_secs: u64) -> TestServer {
    let server = TestServer::start_with(move |c| {
        c.xmpp.sm.resume_timeout = Duration::from_secs(resume_secs);
    })
    .await
    .unwrap();
    for who in accounts {
        server.add_account(who, "pw").await.unwrap();
    }
    server
}

/// `<enable resume='true'/>`; returns the resumption id.
async fn enable(raw: &mut Raw) -> String {
    raw.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await
        .unwrap();
    let enabled = raw.read_element("enabled").await.unwrap();
    assert_eq!(
        attr(&enabled, "resume").as_deref(),
        Some("true"),
        "{enabled}"
    );
    attr(&enabled, "id").expect("a resumption id")
}

/// alice (resource `a`) with resumable SM on, and bob (`b`): alice's stream, its resumption
/// id, bob's stream.
async fn alice_with_sm_and_bob(server: &TestServer) -> (Raw, String, Raw) {
    let mut alice = Raw::login(server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let id = enable(&mut alice).await;
    let bob = Raw::login(server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    (alice, id, bob)
}

/// Everything this client sent before has been handled by its session's task: `<r/>` is
/// answered in order by the task that also handles `<a/>`.
async fn acked_round_trip(raw: &mut Raw) -> String {
    raw.send(&format!("<r xmlns='{SM}'/>")).await.unwrap();
    raw.read_element("a").await.unwrap()
}

async fn chat(from: &mut Raw, to: &str, body: &str) {
    from.send(&format!(
        "<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>"
    ))
    .await
    .unwrap();
}

/// A new connection of `jid` that sends `<resume/>` instead of binding; returns it and the
/// server's first answer (`<resumed…/>` or `<failed…>`).
async fn resume(server: &TestServer, jid: &str, previd: &str, h: u32) -> (Raw, String) {
    let (mut raw, features) = Raw::authenticated(server, jid, "pw").await.unwrap();
    assert!(features.contains(SM), "{features}");
    raw.send(&format!("<resume xmlns='{SM}' previd='{previd}' h='{h}'/>"))
        .await
        .unwrap();
    let head = raw.read_until(">").await.unwrap();
    let answer = if head.ends_with("/>") || head.contains("<resumed") {
        head
    } else {
        head + &raw.read_until("</failed>").await.unwrap()
    };
    (raw, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_resumed_and_each_unacked_message_arrives_exactly_once() {
    let server = server_with(&["alice@localhost", "bob@localhost"], 300).await;
    let (mut alice, id, mut bob) = alice_with_sm_and_bob(&server).await;
    for body in ["m1", "m2", "m3"] {
        chat(&mut bob, "alice@localhost/a", body).await;
    }
    alice.read_until("m3</body>").await.unwrap();
    // alice handled two of the three, and says so; then her network drops.
    alice
        .send(&format!("<a xmlns='{SM}' h='1'/>"))
        .await
        .unwrap();
    let a = acked_round_trip(&mut alice).await;
    assert_eq!(
        attr(&a, "h").as_deref(),
        Some("0"),
        "alice sent no stanza: {a}"
    );
    drop(alice);

    // Meanwhile bob writes again; the session is still there and takes it.
    chat(&mut bob, "alice@localhost/a", "m4").await;
    let got = bob.sync("bob-sync").await.unwrap();
    assert!(
        !got.contains("type='error'") && !got.contains("type=\"error\""),
        "{got}"
    );

    let (mut alice, answer) = resume(&server, "alice@localhost", &id, 2).await;
    assert!(answer.contains("<resumed"), "{answer}");
    assert_eq!(
        attr(&answer, "previd").as_deref(),
        Some(id.as_str()),
        "{answer}"
    );
    assert_eq!(attr(&answer, "h").as_deref(), Some("0"), "{answer}");
    let mut got = alice.read_until("m4</body>").await.unwrap();
    got.push_str(&alice.sync("after").await.unwrap());
    got.push_str(&alice.buffer);
    for (body, times) in [("m1", 0), ("m2", 0), ("m3", 1), ("m4", 1)] {
        assert_eq!(
            got.matches(&format!(">{body}</body>")).count(),
            times,
            "{body}: {got}"
        );
    }
    assert!(got.find("m3").unwrap() < got.find("m4").unwrap(), "{got}");
    // The resumed stream counts on: the ping was alice's first stanza since <enable/>.
    let a = acked_round_trip(&mut alice).await;
    assert_eq!(attr(&a, "h").as_deref(), Some("1"), "{a}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_asks_for_acks_one_request_at_a_time_and_answers_them() {
    let server = server_with(&["alice@localhost", "bob@localhost"], 300).await;
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    enable(&mut alice).await;
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    chat(&mut bob, "alice@localhost/a", "n0").await;
    alice.read_until("n0</body>").await.unwrap();
    let r = alice.read_element("r").await.unwrap();
    assert!(r.contains(SM), "{r}");
    // While that request is out, no other.
    chat(&mut bob, "alice@localhost/a", "n1").await;
    chat(&mut bob, "alice@localhost/a", "n2").await;
    let got = alice.read_until("n2</body>").await.unwrap();
    // An answer that leaves n1 and n2 unacknowledged is followed by a new request...
    alice
        .send(&format!("<a xmlns='{SM}' h='1'/>"))
        .await
        .unwrap();
    let again = alice.read_element("r").await.unwrap();
    assert!(!got.contains("<r "), "one request at a time: {got}");
    assert!(again.contains(SM), "{again}");
    // ...and one that covers everything is not.
    alice
        .send(&format!("<a xmlns='{SM}' h='3'/>"))
        .await
        .unwrap();
    let a = acked_round_trip(&mut alice).await;
    assert!(!a.contains("<r "), "{a}");
    assert_eq!(attr(&a, "h").as_deref(), Some("0"), "{a}");
    // The answer to <r/> counts alice's stanzas; the pings' answers were requested once.
    for id in ["p1", "p2"] {
        alice.sync(id).await.unwrap();
    }
    let a = acked_round_trip(&mut alice).await;
    assert_eq!(attr(&a, "h").as_deref(), Some("2"), "{a}");
    // Closing: our last count goes before the footer.
    alice.send("</stream:stream>").await.unwrap();
    let end = alice.read_to_close().await.unwrap();
    let last = end.find("<a ").expect("a last <a/>");
    assert!(last < end.find("</stream:stream>").unwrap(), "{end}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_resume_timeout_unacked_messages_are_in_offline_storage() {
    let server = server_with(&["alice@localhost", "bob@localhost"], 1).await;
    let (mut alice, id, mut bob) = alice_with_sm_and_bob(&server).await;
    chat(&mut bob, "alice@localhost/a", "early").await;
    alice.read_until("early</body>").await.unwrap();
    drop(alice); // never acknowledged
    chat(&mut bob, "alice@localhost/a", "late").await;
    bob.sync("bob-sync").await.unwrap();

    // Wait for the session to end. The probe claims more than was sent, which a live session
    // refuses with <handled-count-too-high/> and leaves as it is; once the session is over
    // (and its stanzas stored: the resumption id is forgotten last) it is <item-not-found/>.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_probe, answer) = resume(&server, "alice@localhost", &id, 1000).await;
        assert!(answer.contains("<failed"), "{answer}");
        if answer.contains("item-not-found") {
            break;
        }
        assert!(answer.contains("handled-count-too-high"), "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never timed out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_late, answer) = resume(&server, "alice@localhost", &id, 0).await;
    assert!(answer.contains("item-not-found"), "{answer}");

    let mut alice = Raw::login(&server, "alice@localhost", "pw", "again")
        .await
        .unwrap();
    alice.send("<presence/>").await.unwrap();
    let mut got = alice.read_until("late</body>").await.unwrap();
    got.push_str(&alice.sync("s").await.unwrap());
    assert_eq!(got.matches(">early</body>").count(), 1, "{got}");
    assert_eq!(got.matches(">late</body>").count(), 1, "{got}");
    assert!(
        got.contains("urn:xmpp:delay"),
        "offline delivery is stamped: {got}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_h_ends_the_stream_and_a_forged_resume_h_fails() {
    let server = server_with(&["alice@localhost", "bob@localhost"], 300).await;
    let (mut alice, id, mut bob) = alice_with_sm_and_bob(&server).await;
    chat(&mut bob, "alice@localhost/a", "one").await;
    alice.read_until("one</body>").await.unwrap();

    let (_other, answer) = resume(&server, "alice@localhost", &id, 2).await;
    assert!(
        answer.contains("<failed") && answer.contains("handled-count-too-high"),
        "{answer}"
    );
    assert!(
        answer.contains("send-count='1'") || answer.contains("send-count=\"1\""),
        "{answer}"
    );

    alice
        .send(&format!("<a xmlns='{SM}' h='7'/>"))
        .await
        .unwrap();
    let end = alice.read_to_close().await.unwrap();
    assert!(end.contains("undefined-condition"), "{end}");
    assert!(end.contains("handled-count-too-high"), "{end}");
    // The server keeps serving others.
    bob.sync("still").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_session_cannot_be_resumed() {
    let server = server_with(&["alice@localhost", "mallory@localhost"], 300).await;
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let id = enable(&mut alice).await;
    drop(alice);
    let (_m, answer) = resume(&server, "mallory@localhost", &id, 0).await;
    assert!(
        answer.contains("<failed") && answer.contains("item-not-found"),
        "{answer}"
    );
    let (_u, answer) = resume(&server, "alice@localhost", "no-such-id", 0).await;
    assert!(answer.contains("item-not-found"), "{answer}");
    // Mallory's attempt did not harm alice's session.
    let (mut alice, answer) = resume(&server, "alice@localhost", &id, 0).await;
    assert!(answer.contains("<resumed"), "{answer}");
    alice.sync("back").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_session_whose_connection_still_looks_alive_takes_it_over() {
    let server = server_with(&["alice@localhost", "bob@localhost"], 300).await;
    let mut old = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let id = enable(&mut old).await;
    let (mut new, answer) = resume(&server, "alice@localhost", &id, 0).await;
    assert!(answer.contains("<resumed"), "{answer}");
    old.read_to_close().await.unwrap();
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    chat(&mut bob, "alice@localhost/a", "to-the-new-one").await;
    new.read_until("to-the-new-one</body>").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sm_nonzas_at_the_wrong_time_get_failed_and_the_stream_goes_on() {
    let server = server_with(&["alice@localhost"], 300).await;
    let (mut raw, _) = Raw::authenticated(&server, "alice@localhost", "pw")
        .await
        .unwrap();
    // Before binding (XEP-0198 §3).
    raw.send(&format!("<enable xmlns='{SM}'/>")).await.unwrap();
    let failed = raw.read_element("failed").await.unwrap();
    assert!(failed.contains("unexpected-request"), "{failed}");
    raw.send(
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
    )
    .await
    .unwrap();
    raw.read_element("iq").await.unwrap();
    // <r/> before <enable/>, then <resume/> on a bound stream.
    raw.send(&format!("<r xmlns='{SM}'/>")).await.unwrap();
    let failed = raw.read_element("failed").await.unwrap();
    assert!(failed.contains("unexpected-request"), "{failed}");
    raw.send(&format!("<resume xmlns='{SM}' previd='x' h='0'/>"))
        .await
        .unwrap();
    let failed = raw.read_element("failed").await.unwrap();
    assert!(failed.contains("unexpected-request"), "{failed}");
    // Enabled once, not twice; without resume='true' there is no id and no resumption.
    raw.send(&format!("<enable xmlns='{SM}'/>")).await.unwrap();
    let enabled = raw.read_element("enabled").await.unwrap();
    assert_eq!(attr(&enabled, "id"), None, "{enabled}");
    raw.send(&format!("<enable xmlns='{SM}'/>")).await.unwrap();
    let failed = raw.read_element("failed").await.unwrap();
    assert!(failed.contains("unexpected-request"), "{failed}");
    raw.sync("alive").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonza_flood_ends_that_stream_only() {
    let server = server_with(&["alice@localhost", "bob@localhost"], 300).await;
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    enable(&mut alice).await;
    let flood = format!("<r xmlns='{SM}'/>").repeat(5000);
    // The server may close before it has read everything.
    let _ = alice.send(&flood).await;
    let end = alice.read_to_close().await.unwrap();
    assert!(
        end.contains("policy-violation"),
        "{}",
        &end[end.len().saturating_sub(400)..]
    );
    bob.sync("still-served").await.unwrap();
    server.stop().await;
}
