//! Two real clients chatting: messages to full and bare JIDs, the subscription flow with
//! roster pushes, offline delivery with delay stamps, resource conflicts, disco, ping.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{Raw, TestServer, bare, expect, online, round_trip};
use tokio_xmpp::Stanza;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::roster::{Roster, Subscription};

fn chat(to: &str, body: &str) -> Stanza {
    let mut m = Message::chat(Some(to.parse::<Jid>().unwrap()));
    m.bodies.insert(Lang::default(), body.to_owned());
    Stanza::Message(m)
}

fn body_of(s: &Stanza) -> Option<(Message, String)> {
    match s {
        Stanza::Message(m) => m.bodies.values().next().map(|b| (m.clone(), b.clone())),
        _ => None,
    }
}

async fn pair(server: &TestServer) -> (tokio_xmpp::Client, tokio_xmpp::Client) {
    server
        .add_account("alice@localhost", "alice-pw")
        .await
        .unwrap();
    server.add_account("bob@localhost", "bob-pw").await.unwrap();
    let mut alice = server.client("alice@localhost/laptop", "alice-pw");
    let mut bob = server.client("bob@localhost/phone", "bob-pw");
    online(&mut alice).await.unwrap();
    online(&mut bob).await.unwrap();
    for c in [&mut alice, &mut bob] {
        c.send_stanza(Stanza::Presence(Presence::available()))
            .await
            .unwrap();
    }
    (alice, bob)
}

#[tokio::test]
async fn alice_and_bob_chat_and_the_server_stamps_from() {
    let server = TestServer::start().await.unwrap();
    let (mut alice, mut bob) = pair(&server).await;

    alice
        .send_stanza(chat("bob@localhost/phone", "hello full"))
        .await
        .unwrap();
    let (m, body) = expect(&mut bob, body_of).await.unwrap();
    assert_eq!(body, "hello full");
    assert_eq!(m.from.unwrap().to_string(), "alice@localhost/laptop");

    bob.send_stanza(chat("alice@localhost", "hello bare"))
        .await
        .unwrap();
    let (m, body) = expect(&mut alice, body_of).await.unwrap();
    assert_eq!(body, "hello bare");
    assert_eq!(m.from.unwrap().to_string(), "bob@localhost/phone");

    // A spoofed from is overwritten with the authenticated full JID.
    let mut spoof = Message::chat(Some("bob@localhost".parse::<Jid>().unwrap()));
    spoof.from = Some("ceo@localhost/x".parse().unwrap());
    spoof.bodies.insert(Lang::default(), "trust me".into());
    alice.send_stanza(Stanza::Message(spoof)).await.unwrap();
    let (m, _) = expect(&mut bob, body_of).await.unwrap();
    assert_eq!(m.from.unwrap().to_string(), "alice@localhost/laptop");
    server.stop().await;
}

#[tokio::test]
async fn messages_to_unknown_users_and_remote_domains_bounce() {
    let server = TestServer::start().await.unwrap();
    let (mut alice, _bob) = pair(&server).await;
    for (to, condition) in [
        ("ghost@localhost", "service-unavailable"),
        ("someone@elsewhere.example", "remote-server-not-found"),
    ] {
        alice.send_stanza(chat(to, "anyone?")).await.unwrap();
        let err = expect(&mut alice, message_error).await.unwrap();
        assert!(err.contains(condition), "{to}: {err}");
    }
    server.stop().await;
}

fn message_error(s: &Stanza) -> Option<String> {
    match s {
        Stanza::Message(m) if m.type_ == MessageType::Error => {
            Some(String::from(&minidom::Element::from(m.clone())))
        }
        _ => None,
    }
}

fn roster_push(s: &Stanza) -> Option<Roster> {
    match s {
        Stanza::Iq(Iq::Set { payload, .. }) => Roster::try_from(payload.clone()).ok(),
        _ => None,
    }
}

async fn roster_of(client: &mut tokio_xmpp::Client) -> Roster {
    let token = client
        .send_iq(
            None,
            tokio_xmpp::IqRequest::Get(
                Roster {
                    ver: None,
                    items: vec![],
                }
                .into(),
            ),
        )
        .await;
    match token.await.unwrap() {
        tokio_xmpp::IqResponse::Result(Some(el)) => Roster::try_from(el).unwrap(),
        other => panic!("roster get failed: {other:?}"),
    }
}

#[tokio::test]
async fn subscription_flow_updates_both_rosters_with_pushes_and_presence() {
    let server = TestServer::start().await.unwrap();
    let (mut alice, mut bob) = pair(&server).await;
    assert!(roster_of(&mut alice).await.items.is_empty());
    assert!(roster_of(&mut bob).await.items.is_empty());

    // Alice asks for Bob's presence: her roster shows a pending request.
    alice
        .send_stanza(Stanza::Presence(
            Presence::subscribe().with_to(bare("bob@localhost")),
        ))
        .await
        .unwrap();
    let push = expect(&mut alice, roster_push).await.unwrap();
    assert_eq!(push.items[0].jid, bare("bob@localhost"));
    assert_eq!(
        push.items[0].ask,
        tokio_xmpp::parsers::roster::Ask::Subscribe
    );

    // Bob receives the request from Alice's bare JID and approves it.
    let from = expect(&mut bob, |s| match s {
        Stanza::Presence(p) if p.type_ == PresenceType::Subscribe => p.from.clone(),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(from.to_string(), "alice@localhost");
    bob.send_stanza(Stanza::Presence(
        Presence::subscribed().with_to(bare("alice@localhost")),
    ))
    .await
    .unwrap();
    let push = expect(&mut bob, roster_push).await.unwrap();
    assert_eq!(push.items[0].subscription, Subscription::From);

    // Alice gets `subscribed`, a push to `to`, and Bob's current presence.
    let push = expect(&mut alice, roster_push).await.unwrap();
    assert_eq!(push.items[0].subscription, Subscription::To);
    let presence_from = expect(&mut alice, |s| match s {
        Stanza::Presence(p)
            if p.type_ == PresenceType::None
                && p.from
                    .as_ref()
                    .is_some_and(|f| f.to_bare() == bare("bob@localhost")) =>
        {
            p.from.clone()
        }
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(presence_from.to_string(), "bob@localhost/phone");

    // Persisted, with a version: an up-to-date client gets an empty result.
    let roster = roster_of(&mut alice).await;
    assert_eq!(roster.items.len(), 1);
    assert_eq!(roster.items[0].subscription, Subscription::To);
    let ver = roster.ver.clone().expect("roster version");
    let token = alice
        .send_iq(
            None,
            tokio_xmpp::IqRequest::Get(
                Roster {
                    ver: Some(ver),
                    items: vec![],
                }
                .into(),
            ),
        )
        .await;
    assert!(matches!(
        token.await.unwrap(),
        tokio_xmpp::IqResponse::Result(None)
    ));

    // When Bob goes offline Alice sees him unavailable.
    bob.send_end().await.unwrap();
    let gone = expect(&mut alice, |s| match s {
        Stanza::Presence(p) if p.type_ == PresenceType::Unavailable => p.from.clone(),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(gone.to_string(), "bob@localhost/phone");
    server.stop().await;
}

#[tokio::test]
async fn messages_for_an_offline_user_arrive_at_next_login_with_a_delay_stamp() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "a").await.unwrap();
    server.add_account("bob@localhost", "b").await.unwrap();
    let mut alice = server.client("alice@localhost", "a");
    online(&mut alice).await.unwrap();
    for i in 0..3 {
        alice
            .send_stanza(chat("bob@localhost", &format!("while you were out {i}")))
            .await
            .unwrap();
    }
    // Handled in order: once the ping is answered, the messages are stored.
    round_trip(&mut alice, "stored").await.unwrap();
    let mut bob = server.client("bob@localhost", "b");
    online(&mut bob).await.unwrap();
    bob.send_stanza(Stanza::Presence(Presence::available()))
        .await
        .unwrap();
    for i in 0..3 {
        let (m, body) = expect(&mut bob, body_of).await.unwrap();
        assert_eq!(body, format!("while you were out {i}"));
        let delay = m
            .payloads
            .iter()
            .find(|p| p.is("delay", "urn:xmpp:delay"))
            .expect("delay stamp");
        assert!(delay.attr("stamp").is_some());
    }
    // Delivered once: a second login gets nothing more. Bob's client acknowledges what it
    // got (XEP-0198) before it leaves; unacknowledged messages would be stored again.
    round_trip(&mut bob, "acked").await.unwrap();
    bob.send_end().await.unwrap();
    let mut bob = server.client("bob@localhost", "b");
    online(&mut bob).await.unwrap();
    bob.send_stanza(Stanza::Presence(Presence::available()))
        .await
        .unwrap();
    let again = tokio::time::timeout(
        std::time::Duration::from_millis(800),
        expect(&mut bob, body_of),
    )
    .await;
    assert!(
        again.is_err() || again.unwrap().is_err(),
        "offline messages delivered twice"
    );
    server.stop().await;
}

#[tokio::test]
async fn binding_a_taken_resource_closes_the_old_session_with_conflict() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "a").await.unwrap();
    let mut old = Raw::login(&server, "alice@localhost", "a", "desk")
        .await
        .unwrap();
    let mut new = server.client("alice@localhost/desk", "a");
    let jid = online(&mut new).await.unwrap();
    assert_eq!(jid.to_string(), "alice@localhost/desk");
    let closed = old.read_to_close().await.unwrap();
    assert!(closed.contains("<conflict"), "{closed}");
    server.stop().await;
}

#[tokio::test]
async fn disco_ping_version_and_unknown_namespaces() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "a").await.unwrap();
    let mut raw = Raw::login(&server, "alice@localhost", "a", "r")
        .await
        .unwrap();
    raw.send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await.unwrap();
    let info = raw.read_until("</iq>").await.unwrap();
    for f in [
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:time",
        "http://jabber.org/protocol/disco#info",
        "msgoffline",
    ] {
        assert!(
            info.contains(&format!("var=\"{f}\"")) || info.contains(&format!("var='{f}'")),
            "missing {f}: {info}"
        );
    }
    assert!(
        info.contains("category=\"server\"") || info.contains("category='server'"),
        "{info}"
    );
    assert!(
        !info.contains("urn:xmpp:mam"),
        "advertises MAM it does not implement: {info}"
    );

    raw.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await
        .unwrap();
    let pong = raw.read_element("iq").await.unwrap();
    assert!(pong.contains("p1") && pong.contains("result"), "{pong}");
    raw.send("<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        .await
        .unwrap();
    let version = raw.read_element("iq").await.unwrap();
    assert!(version.contains("<name>Postern</name>"), "{version}");

    raw.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:nothing'/></iq>")
        .await
        .unwrap();
    let u = raw.read_until("</iq>").await.unwrap();
    assert!(
        u.contains("service-unavailable") && (u.contains("id=\"u1\"") || u.contains("id='u1'")),
        "{u}"
    );
    server.stop().await;
}

#[tokio::test]
async fn two_resources_coming_online_together_get_each_offline_message_once() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "a").await.unwrap();
    server.add_account("bob@localhost", "b").await.unwrap();
    let mut alice = server.client("alice@localhost", "a");
    online(&mut alice).await.unwrap();
    for i in 0..5 {
        alice
            .send_stanza(chat("bob@localhost", &format!("stored {i}")))
            .await
            .unwrap();
    }
    // Handled in order: once the ping is answered, the messages are stored.
    round_trip(&mut alice, "stored").await.unwrap();
    let mut phone = server.client("bob@localhost/phone", "b");
    let mut desk = server.client("bob@localhost/desk", "b");
    online(&mut phone).await.unwrap();
    online(&mut desk).await.unwrap();
    let (p, d) = tokio::join!(
        phone.send_stanza(Stanza::Presence(Presence::available())),
        desk.send_stanza(Stanza::Presence(Presence::available())),
    );
    p.unwrap();
    d.unwrap();
    let mut received = Vec::new();
    for client in [&mut phone, &mut desk] {
        while let Ok(Ok((_, body))) = tokio::time::timeout(
            std::time::Duration::from_millis(800),
            expect(client, body_of),
        )
        .await
        {
            received.push(body);
        }
    }
    received.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("stored {i}")).collect();
    assert_eq!(received, expected, "each stored message exactly once");
    server.stop().await;
}
