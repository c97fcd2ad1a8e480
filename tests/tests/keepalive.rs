//! XEP-0199 keepalive: a client silent for the idle time gets a ping from the server (the
//! ping module's idle hook, through the session's queue); answering keeps the session.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::{Duration, Instant};

use postern_tests::{Raw, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_pinged_and_an_answer_keeps_it() {
    let server = TestServer::start_with(|c| c.xmpp.limits.idle_timeout = Duration::from_secs(10))
        .await
        .unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let silent = Instant::now();
    // Raw::read_until waits 10 s at most; the ping is due after 10 s of silence.
    let ping = match alice.read_until("urn:xmpp:ping").await {
        Ok(p) => p,
        Err(_) => alice.read_until("urn:xmpp:ping").await.unwrap(),
    };
    assert!(
        silent.elapsed() >= Duration::from_secs(9),
        "pinged early: {ping}"
    );
    let start = ping.find("srv-ping-").expect("the server's ping id");
    let id: String = ping[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    alice
        .send(&format!("<iq type='result' id='{id}'/>"))
        .await
        .unwrap();
    // Still served.
    alice
        .send("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    alice.read_until("after").await.unwrap();
    server.stop().await;
}
