//! XEP-0065 SOCKS5 bytestreams proxy end to end over raw sockets: discovery, the streamhost,
//! two SOCKS5 connections naming the stream's hash, activation only by the initiator, 10 MiB
//! one way and 1 MiB back intact, a third connection refused, an unactivated connection
//! closed after the activation timeout, a stream cut at its byte budget.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::{Duration, Instant};

use postern_tests::{Raw, TestServer, attr, has};
use sha1::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn hash(sid: &str, initiator: &str, target: &str) -> String {
    let d = sha1::Sha1::digest(format!("{sid}{initiator}{target}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SOCKS5 CONNECT to `hash`, as a XEP-0065 client does; the reply code.
async fn socks(addr: (String, u16), hash: &str) -> (TcpStream, u8) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.unwrap();
    assert_eq!(choice, [5, 0], "no-auth method chosen");
    let mut req = vec![5, 1, 0, 3, hash.len() as u8];
    req.extend_from_slice(hash.as_bytes());
    req.extend_from_slice(&[0, 0]);
    s.write_all(&req).await.unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.unwrap();
    let mut rest = vec![0u8; usize::from(head[4]) + 2];
    s.read_exact(&mut rest).await.unwrap();
    (s, head[1])
}

async fn iq(raw: &mut Raw, xml: &str) -> String {
    raw.send(xml).await.unwrap();
    raw.read_element("iq").await.unwrap()
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_relays_only_what_the_initiator_activated() {
    let server = TestServer::start_with(|c| {
        c.xmpp.proxy65.activation_timeout = Duration::from_secs(2);
        c.xmpp.proxy65.max_bytes = postern_core::ByteSize(16 << 20);
    })
    .await
    .unwrap();
    for who in ["alice@localhost", "bob@localhost", "carol@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let mut bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let mut carol = Raw::online(&server, "carol@localhost", "pw", "c")
        .await
        .unwrap();

    let items = iq(&mut alice, "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    assert!(items.contains("proxy.localhost"), "{items}");
    let info = iq(&mut alice, "<iq type='get' id='f' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    assert!(
        info.contains("http://jabber.org/protocol/bytestreams") && info.contains("bytestreams"),
        "{info}"
    );
    let answer = iq(&mut alice, "<iq type='get' id='q' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/bytestreams'/></iq>").await;
    let host = &answer[answer.find("<streamhost").expect("a streamhost")..];
    let addr = (
        attr(host, "host").unwrap(),
        attr(host, "port").unwrap().parse::<u16>().unwrap(),
    );
    assert_eq!(attr(host, "jid").as_deref(), Some("proxy.localhost"));
    assert_eq!(addr.0, "127.0.0.1");

    let (a_full, b_full) = ("alice@localhost/a", "bob@localhost/b");
    let h = hash("s1", a_full, b_full);
    let (mut target, code) = socks(addr.clone(), &h).await;
    assert_eq!(code, 0);
    let (mut initiator, code) = socks(addr.clone(), &h).await;
    assert_eq!(code, 0);
    let (_third, code) = socks(addr.clone(), &h).await;
    assert_eq!(code, 2, "a third connection for one stream is refused");

    let activate = |id: &str, target: &str| {
        format!(
            "<iq type='set' id='{id}' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/bytestreams' sid='s1'><activate>{target}</activate></query></iq>"
        )
    };
    // Neither a third party nor the target can start alice's stream.
    let by_carol = iq(&mut carol, &activate("x1", b_full)).await;
    assert!(has(&by_carol, "item-not-found"), "{by_carol}");
    let by_bob = iq(&mut bob, &activate("x2", a_full)).await;
    assert!(has(&by_bob, "item-not-found"), "{by_bob}");
    let bad = iq(&mut alice, "<iq type='set' id='x3' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/bytestreams'><activate>bob@localhost/b</activate></query></iq>").await;
    assert!(has(&bad, "bad-request"), "no sid: {bad}");
    let ok = iq(&mut alice, &activate("go", b_full)).await;
    assert!(
        ok.contains("type='result'") || ok.contains("type=\"result\""),
        "{ok}"
    );

    let (there, back) = (data(10 << 20, 7), data(1 << 20, 9));
    let (a, b) = (there.clone(), back.clone());
    let send = tokio::spawn(async move {
        initiator.write_all(&a).await.unwrap();
        initiator.shutdown().await.unwrap();
        let mut got = Vec::new();
        initiator.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut got = Vec::new();
    let started = Instant::now();
    target.write_all(&b).await.unwrap();
    target.shutdown().await.unwrap();
    target.read_to_end(&mut got).await.unwrap();
    eprintln!(
        "10 MiB + 1 MiB through the proxy in {:?}",
        started.elapsed()
    );
    assert!(
        got == there,
        "target got {} bytes, not what was sent",
        got.len()
    );
    assert!(
        send.await.unwrap() == back,
        "the initiator got something else back"
    );

    // A connection nobody activates is closed after the activation timeout.
    let (mut lonely, code) = socks(addr.clone(), &hash("s2", a_full, b_full)).await;
    assert_eq!(code, 0);
    let waited = Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), lonely.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        waited.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        waited.elapsed()
    );
    // Activating with only one side connected says so.
    let h3 = hash("s3", a_full, b_full);
    let (_one, _) = socks(addr.clone(), &h3).await;
    let half = iq(
        &mut alice,
        &activate("h", b_full).replace("sid='s1'", "sid='s3'"),
    )
    .await;
    assert!(has(&half, "not-acceptable"), "{half}");

    // A stream over its byte budget (16 MiB here) is cut.
    let h4 = hash("s4", a_full, b_full);
    let (mut t4, _) = socks(addr.clone(), &h4).await;
    let (mut i4, _) = socks(addr.clone(), &h4).await;
    let ok = iq(
        &mut alice,
        &activate("go4", b_full).replace("sid='s1'", "sid='s4'"),
    )
    .await;
    assert!(ok.contains("result"), "{ok}");
    let big = data(32 << 20, 3);
    tokio::spawn(async move {
        let _ = i4.write_all(&big).await;
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), t4.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(
        got.len() <= 16 << 20,
        "{} bytes passed a 16 MiB budget",
        got.len()
    );
    server.stop().await;
}

/// A Jingle file-transfer offer (XEP-0234 over XEP-0260 SOCKS5 with the proxy as candidate)
/// from one client to another arrives whole, from the stamped sender, and its answer comes
/// back. No client library here negotiates Jingle FT (slixmpp 1.17's xep_0234 is stanzas
/// only, xmpp.js and tokio-xmpp have none), so both ends are raw streams: this checks what
/// the server does with the offer, not a Jingle implementation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jingle_file_offer_reaches_the_peer_intact() {
    let server = TestServer::start().await.unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let mut bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let offer = "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' initiator='alice@localhost/a' sid='js1'>\
        <content creator='initiator' name='f' senders='initiator'>\
        <description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>a.txt</name><size>3</size>\
        <hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=</hash></file></description>\
        <transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='t1' dstaddr='0123456789abcdef0123456789abcdef01234567'>\
        <candidate cid='c1' host='127.0.0.1' port='7777' jid='proxy.localhost' type='proxy' priority='10'/>\
        </transport></content></jingle>";
    alice
        .send(&format!(
            "<iq type='set' id='j1' to='bob@localhost/b'>{offer}</iq>"
        ))
        .await
        .unwrap();
    let got = bob.read_element("iq").await.unwrap();
    assert!(
        got.contains("from='alice@localhost/a'") || got.contains("from=\"alice@localhost/a\""),
        "{got}"
    );
    for part in [
        "session-initiate",
        "urn:xmpp:jingle:apps:file-transfer:5",
        "a.txt",
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
        "urn:xmpp:jingle:transports:s5b:1",
        "proxy.localhost",
        "0123456789abcdef0123456789abcdef01234567",
    ] {
        assert!(got.contains(part), "{part} lost: {got}");
    }
    bob.send("<iq type='result' id='j1' to='alice@localhost/a'/>")
        .await
        .unwrap();
    let answer = alice.read_element("iq").await.unwrap();
    assert!(
        answer.contains("id='j1'") && answer.contains("result"),
        "{answer}"
    );
    server.stop().await;
}

/// `rate` bounds each direction of a stream: 3 MiB at 1 MiB/s cannot cross in under two
/// seconds (a lower bound only: a slow machine makes it slower, never faster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_held_to_its_rate() {
    let server = TestServer::start_with(|c| {
        c.xmpp.proxy65.rate =
            postern_xmpp::config::ByteLimit(Some(postern_core::ByteSize(1 << 20)));
    })
    .await
    .unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        server.add_account(who, "pw").await.unwrap();
    }
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let _bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let answer = iq(&mut alice, "<iq type='get' id='q' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/bytestreams'/></iq>").await;
    let host = &answer[answer.find("<streamhost").expect("a streamhost")..];
    let addr = (
        attr(host, "host").unwrap(),
        attr(host, "port").unwrap().parse::<u16>().unwrap(),
    );
    let h = hash("r1", "alice@localhost/a", "bob@localhost/b");
    let (mut target, _) = socks(addr.clone(), &h).await;
    let (mut initiator, _) = socks(addr, &h).await;
    let ok = iq(&mut alice, "<iq type='set' id='go' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/bytestreams' sid='r1'><activate>bob@localhost/b</activate></query></iq>").await;
    assert!(ok.contains("result"), "{ok}");
    let sent = data(3 << 20, 5);
    let copy = sent.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        initiator.write_all(&copy).await.unwrap();
        initiator.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = initiator.read_to_end(&mut rest).await;
    });
    target.shutdown().await.unwrap();
    let mut got = Vec::new();
    target.read_to_end(&mut got).await.unwrap();
    let took = started.elapsed();
    assert!(got == sent, "{} bytes arrived", got.len());
    assert!(
        took >= Duration::from_millis(1900),
        "3 MiB at 1 MiB/s took only {took:?}"
    );
    server.stop().await;
}
