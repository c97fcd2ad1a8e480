//! The same server on PostgreSQL: accounts, roster and offline storage through one set of
//! queries. Needs `POSTERN_TEST_POSTGRES_URL` (`scripts/test` starts one; see
//! `postern_store::testing::postgres_url`).

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{TestServer, bare, expect, online};
use tokio_xmpp::Stanza;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};

#[tokio::test]
async fn chat_subscription_and_offline_delivery_work_on_postgresql() {
    let Some(url) = postern_store::testing::postgres_url() else {
        return;
    };
    let server = TestServer::start_with(|c| c.database = Some(url))
        .await
        .unwrap();
    // The database outlives the test: unique names keep runs apart.
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (alice, bob) = (
        format!("alice{tag}@localhost"),
        format!("bob{tag}@localhost"),
    );
    server.add_account(&alice, "a").await.unwrap();
    server.add_account(&bob, "b").await.unwrap();

    let mut a = server.client(&alice, "a");
    online(&mut a).await.unwrap();
    a.send_stanza(Stanza::Presence(Presence::available()))
        .await
        .unwrap();
    a.send_stanza(Stanza::Presence(Presence::subscribe().with_to(bare(&bob))))
        .await
        .unwrap();
    let mut m = Message::chat(Some(bare(&bob).into()));
    m.bodies
        .insert(Lang::default(), "stored in postgres".into());
    a.send_stanza(Stanza::Message(m)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut b = server.client(&bob, "b");
    online(&mut b).await.unwrap();
    b.send_stanza(Stanza::Presence(Presence::available()))
        .await
        .unwrap();
    // The pending subscription request and the offline message both arrive.
    let mut got_request = false;
    let mut got_message = false;
    while !(got_request && got_message) {
        let what = expect(&mut b, |s| match s {
            Stanza::Presence(p) if p.type_ == PresenceType::Subscribe => Some("request"),
            Stanza::Message(m) if m.bodies.values().any(|v| v == "stored in postgres") => {
                Some("message")
            }
            _ => None,
        })
        .await
        .unwrap();
        got_request |= what == "request";
        got_message |= what == "message";
    }
    server.accounts().delete(&alice).await.unwrap();
    server.accounts().delete(&bob).await.unwrap();
    server.stop().await;
}
