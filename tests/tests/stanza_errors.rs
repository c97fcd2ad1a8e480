//! Stanza errors as RFC 6120 §8 defines them, checked against the RFC's text:
//! §8.3.3.8 an address that does not parse is `jid-malformed` (modify); §8.2.3 an IQ get/set
//! carries exactly one payload, else `bad-request` (modify); §8.4 an IQ request nobody here
//! understands is `service-unavailable` (cancel), whether it is addressed to the server, to
//! one's own bare JID or to another account's (RFC 6121 §8.5.1, §8.5.2: the server answers
//! for the account); §8.3.1 errors are never answered with errors, and every error keeps the
//! `id` and swaps the addresses.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{Raw, TestServer, has};

async fn answer(raw: &mut Raw, name: &str, stanza: &str) -> String {
    raw.send(stanza).await.unwrap();
    raw.read_element(name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_follow_rfc_6120_section_8() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();

    // §8.3.3.8: an address that is not an XMPP address.
    for to in ["a@b@localhost", "@localhost", "alice@localhost/"] {
        let reply = answer(
            &mut alice,
            "message",
            &format!("<message to='{to}' id='jm' type='chat'><body>x</body></message>"),
        )
        .await;
        assert!(has(&reply, "jid-malformed"), "{to}: {reply}");
        assert!(
            reply.contains("'modify'") || reply.contains("\"modify\""),
            "{reply}"
        );
        assert!(
            reply.contains("id='jm'") || reply.contains("id=\"jm\""),
            "{reply}"
        );
    }
    let reply = answer(
        &mut alice,
        "iq",
        "<iq type='get' id='jm2' to='a@@b'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert!(has(&reply, "jid-malformed"), "{reply}");

    // §8.2.3: exactly one payload in a get or set.
    for (id, body) in [
        ("none", ""),
        (
            "two",
            "<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/>",
        ),
    ] {
        let reply = answer(
            &mut alice,
            "iq",
            &format!("<iq type='get' id='{id}' to='localhost'>{body}</iq>"),
        )
        .await;
        assert!(has(&reply, "bad-request"), "{id}: {reply}");
        assert!(
            reply.contains("'modify'") || reply.contains("\"modify\""),
            "{reply}"
        );
    }

    // §8.4: requests nobody understands, to the server, to oneself, to someone else.
    for (id, to) in [
        ("s", "localhost"),
        ("own", "alice@localhost"),
        ("other", "bob@localhost"),
    ] {
        let reply = answer(
            &mut alice,
            "iq",
            &format!("<iq type='get' id='{id}' to='{to}'><query xmlns='urn:example:nobody'/></iq>"),
        )
        .await;
        assert!(has(&reply, "service-unavailable"), "{to}: {reply}");
        assert!(
            reply.contains("'cancel'") || reply.contains("\"cancel\""),
            "{reply}"
        );
        assert!(
            reply.contains(&format!("from='{to}'")) || reply.contains(&format!("from=\"{to}\"")),
            "{reply}"
        );
        assert!(
            reply.contains("to='alice@localhost/a'") || reply.contains("to=\"alice@localhost/a\""),
            "{reply}"
        );
    }

    // §8.3.1: an error is not answered; the next request is.
    alice
        .send("<iq type='error' id='e1' to='localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        .await
        .unwrap();
    alice
        .send("<message type='error' id='e2' to='nobody@localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
        .await
        .unwrap();
    let reply = answer(
        &mut alice,
        "iq",
        "<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    assert!(
        reply.contains("after") && !reply.contains("e1") && !reply.contains("e2"),
        "{reply}"
    );
    server.stop().await;
}
