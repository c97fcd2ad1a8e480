//! XEP-0388 SASL2 with XEP-0386 Bind2 over raw sockets: one round trip from TLS to a bound
//! session with carbons and stream management on; an inline `<resume/>` after a cut
//! connection; failures in SASL2's own framing; SASL2 without Bind2 going on to classic
//! binding on the same stream (no restart).

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_tests::{FAST, Raw, SASL2, TestServer, attr, ht_proof};

const BIND2: &str = "urn:xmpp:bind:0";
const SM: &str = "urn:xmpp:sm:3";

fn authenticate(user: &str, password: &str, inline: &str) -> String {
    let initial = B64.encode(format!("\0{user}\0{password}"));
    format!(
        "<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{initial}</initial-response>\
         <user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>test</software></user-agent>{inline}</authenticate>"
    )
}

/// TLS, then `<authenticate/>` with `inline`; returns the stream and the answer up to the
/// end of `<success>` or `<failure>`.
async fn login(server: &TestServer, user: &str, password: &str, inline: &str) -> (Raw, String) {
    let (mut raw, features) = Raw::secured(server, "localhost").await.unwrap();
    assert!(features.contains(SASL2), "{features}");
    raw.send(&authenticate(user, password, inline))
        .await
        .unwrap();
    let head = raw.read_until(">").await.unwrap();
    let answer = if head.contains("<success") {
        head + &raw.read_until("</success>").await.unwrap()
    } else {
        head + &raw.read_until("</failure>").await.unwrap()
    };
    (raw, answer)
}

fn text_of(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + end].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl2_offers_bind2_with_its_inline_features() {
    let server = TestServer::start().await.unwrap();
    let (_raw, features) = Raw::secured(&server, "localhost").await.unwrap();
    let sasl2 = &features[features.find("<authentication").unwrap()..];
    assert!(
        sasl2.contains("<mechanism>SCRAM-SHA-256</mechanism>"),
        "{sasl2}"
    );
    for var in ["urn:xmpp:carbons:2", SM, "urn:xmpp:csi:0"] {
        assert!(sasl2.contains(&format!("var='{var}'")), "{var}: {sasl2}");
    }
    assert!(
        sasl2.contains(&format!("<sm xmlns='{SM}'")),
        "inline resume: {sasl2}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_to_a_bound_session_with_carbons_and_sm() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let inline = format!(
        "<bind xmlns='{BIND2}'><tag>phone</tag><enable xmlns='urn:xmpp:carbons:2'/>\
         <enable xmlns='{SM}' resume='true'/></bind>"
    );
    let (mut phone, success) = login(&server, "alice@localhost", "pw", &inline).await;
    assert!(
        success.contains(&format!("<success xmlns='{SASL2}'")),
        "{success}"
    );
    let jid = text_of(&success, "authorization-identifier").unwrap();
    assert!(jid.starts_with("alice@localhost/phone."), "{jid}");
    assert!(
        success.contains(&format!("<bound xmlns='{BIND2}'")),
        "{success}"
    );
    let enabled = &success[success.find("<enabled").unwrap()..];
    assert_eq!(
        attr(enabled, "resume").as_deref(),
        Some("true"),
        "{success}"
    );
    // The session is live at once: no restart, no features, no bind.
    phone.sync("p1").await.unwrap();

    // Carbons are on: what alice's laptop sends to bob shows up on the phone.
    let mut laptop = Raw::login(&server, "alice@localhost", "pw", "laptop")
        .await
        .unwrap();
    let _bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    laptop
        .send("<message to='bob@localhost/b' type='chat'><body>from the laptop</body></message>")
        .await
        .unwrap();
    let copy = phone.read_until("from the laptop").await.unwrap();
    assert!(copy.contains("urn:xmpp:carbons:2"), "{copy}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_resume_brings_back_the_session_and_what_it_missed() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let inline = format!(
        "<bind xmlns='{BIND2}'><tag>phone</tag><enable xmlns='{SM}' resume='true'/></bind>"
    );
    let (phone, success) = login(&server, "alice@localhost", "pw", &inline).await;
    let jid = text_of(&success, "authorization-identifier").unwrap();
    let id = attr(&success[success.find("<enabled").unwrap()..], "id").unwrap();
    drop(phone);
    let mut bob = Raw::login(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    bob.send(&format!(
        "<message to='{jid}' type='chat'><body>missed</body></message>"
    ))
    .await
    .unwrap();
    bob.sync("b1").await.unwrap();

    let resume = format!(
        "<resume xmlns='{SM}' previd='{id}' h='0'/><bind xmlns='{BIND2}'><tag>phone</tag></bind>"
    );
    let (mut phone, success) = login(&server, "alice@localhost", "pw", &resume).await;
    assert_eq!(
        text_of(&success, "authorization-identifier").as_deref(),
        Some(jid.as_str()),
        "{success}"
    );
    assert!(success.contains("<resumed"), "{success}");
    assert!(
        !success.contains("additional-data"),
        "PLAIN has none: {success}"
    );
    assert!(
        !success.contains("<bound"),
        "resumed, not bound anew: {success}"
    );
    let got = phone.read_until("missed</body>").await.unwrap();
    assert!(!got.contains("<success"), "{got}");
    phone.sync("p2").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_use_sasl2_framing_and_no_bind2_means_classic_binding() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let (_raw, failure) = login(&server, "alice@localhost", "wrong", "").await;
    assert!(
        failure.contains(&format!("<failure xmlns='{SASL2}'")),
        "{failure}"
    );
    assert!(failure.contains("<not-authorized"), "{failure}");

    let (mut raw, success) = login(&server, "alice@localhost", "pw", "").await;
    assert_eq!(
        text_of(&success, "authorization-identifier").as_deref(),
        Some("alice@localhost"),
        "{success}"
    );
    // Features follow on the same stream; binding as in RFC 6120.
    let features = raw.read_until("</stream:features>").await.unwrap();
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{features}"
    );
    assert!(!features.contains("mechanisms"), "{features}");
    raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
        .await
        .unwrap();
    let bound = raw.read_element("iq").await.unwrap();
    assert!(bound.contains("alice@localhost/r"), "{bound}");
    raw.sync("s").await.unwrap();
    server.stop().await;
}

/// An HT-SHA-256-NONE `<authenticate/>` of `agent` with `token`, plus `inline`.
async fn fast_login(
    server: &TestServer,
    user: &str,
    agent: &str,
    token: &str,
    inline: &str,
) -> (Raw, String) {
    let (mut raw, features) = Raw::secured(server, "localhost").await.unwrap();
    assert!(
        features.contains("<mechanism>HT-SHA-256-NONE</mechanism>"),
        "{features}"
    );
    let answer = raw.fast(user, agent, token, inline).await.unwrap();
    (raw, answer)
}

const PHONE: &str = "9c3f3e2a-1111-4c1a-8f00-0000000000aa";

/// A password login of `PHONE` that asks for a token; returns it.
async fn token_for_phone(server: &TestServer) -> String {
    let (mut raw, _) = Raw::secured(server, "localhost").await.unwrap();
    let success = raw
        .request_token("alice@localhost", "pw", PHONE)
        .await
        .unwrap();
    let token_el = &success[success.find("<token").expect("a token")..];
    assert!(attr(token_el, "expiry").is_some(), "{success}");
    attr(token_el, "token").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_token_login_then_reconnect_with_the_token_and_its_limits() {
    let server = TestServer::start().await.unwrap();
    server.add_account("alice@localhost", "pw").await.unwrap();
    let token = token_for_phone(&server).await;

    // Back with the token, bound in the same round trip; the server proves it knows it too.
    let bind = format!("<bind xmlns='{BIND2}'><tag>phone</tag></bind>");
    let (mut raw, success) = fast_login(&server, "alice@localhost", PHONE, &token, &bind).await;
    assert!(success.contains("<success"), "{success}");
    let server_proof = B64
        .decode(text_of(&success, "additional-data").unwrap())
        .unwrap();
    assert_eq!(server_proof, ht_proof(&token, b"Responder"));
    assert!(
        text_of(&success, "authorization-identifier")
            .unwrap()
            .starts_with("alice@localhost/phone.")
    );
    raw.sync("fast").await.unwrap();

    // Bound to the device, and to knowing the token.
    let (_r, other_device) =
        fast_login(&server, "alice@localhost", "another-device", &token, "").await;
    assert!(other_device.contains("<not-authorized"), "{other_device}");
    let (_r, wrong) = fast_login(&server, "alice@localhost", PHONE, "not-the-token", "").await;
    assert!(wrong.contains("<not-authorized"), "{wrong}");

    // Rotation: a login with the token can get a new one; once the new one is used, the old
    // one is gone.
    let request = format!("<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/>");
    let (_r, success) = fast_login(&server, "alice@localhost", PHONE, &token, &request).await;
    let newer = attr(&success[success.find("<token").unwrap()..], "token").unwrap();
    assert_ne!(newer, token);
    let (_r, still) = fast_login(&server, "alice@localhost", PHONE, &token, "").await;
    assert!(
        still.contains("<success"),
        "the old token works until the new one is used: {still}"
    );
    let (_r, ok) = fast_login(&server, "alice@localhost", PHONE, &newer, "").await;
    assert!(ok.contains("<success"), "{ok}");
    let (_r, old) = fast_login(&server, "alice@localhost", PHONE, &token, "").await;
    assert!(old.contains("<not-authorized"), "{old}");

    // A new password revokes every token.
    server
        .accounts()
        .set_password("alice@localhost", "new-pw")
        .await
        .unwrap();
    let (_r, revoked) = fast_login(&server, "alice@localhost", PHONE, &newer, "").await;
    assert!(revoked.contains("<not-authorized"), "{revoked}");
    server.stop().await;
}
