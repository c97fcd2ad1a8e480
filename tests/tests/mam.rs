//! XEP-0313 Message Archive Management over raw sockets: hundreds of messages paged forwards
//! and backwards, the filters (with, start/end, before-id/after-id, ids, full text), the
//! XEP-0359 stanza-id of a live message equal to its archive id, preferences, forged
//! stanza-ids, and bad input (a huge `max`, malformed dates and JIDs, another user's archive,
//! unknown ids and fields).

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_tests::{Raw, TestServer, attr};

const MAM: &str = "urn:xmpp:mam:2";

async fn server(accounts: &[&str]) -> TestServer {
    let server = TestServer::start_with(|c| c.xmpp.archive.max_page = 100)
        .await
        .unwrap();
    for who in accounts {
        server.add_account(who, "pw").await.unwrap();
    }
    server
}

async fn chat(from: &mut Raw, to: &str, body: &str) {
    from.send(&format!(
        "<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>"
    ))
    .await
    .unwrap();
}

/// One result of a query: its archive id and the archived message's body.
#[derive(Debug, Clone, PartialEq)]
struct Hit {
    id: String,
    body: String,
    stamp: String,
}

/// The answer to a query: the results in the order they came, and the IQ result (or error).
struct Answer {
    hits: Vec<Hit>,
    iq: String,
}

impl Answer {
    fn bodies(&self) -> Vec<&str> {
        self.hits.iter().map(|h| h.body.as_str()).collect()
    }
    fn complete(&self) -> bool {
        attr(&self.iq, "complete").as_deref() == Some("true")
    }
    fn error(&self) -> Option<&str> {
        [
            "bad-request",
            "forbidden",
            "item-not-found",
            "feature-not-implemented",
        ]
        .into_iter()
        .find(|c| self.iq.contains(&format!("<{c} ")) || self.iq.contains(&format!("<{c}/")))
    }
}

/// Form fields: var → values.
type Fields<'a> = &'a [(&'a str, &'a [&'a str])];

/// Sends a MAM query with `fields` (var → values) and `set` (the RSM element's content).
async fn query(
    raw: &mut Raw,
    qid: &str,
    to: Option<&str>,
    fields: &[(&str, &[&str])],
    set: &str,
) -> Answer {
    let mut form = String::new();
    if !fields.is_empty() {
        form.push_str(&format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
        ));
        for (var, values) in fields {
            form.push_str(&format!("<field var='{var}'>"));
            for v in *values {
                form.push_str(&format!("<value>{v}</value>"));
            }
            form.push_str("</field>");
        }
        form.push_str("</x>");
    }
    let set = if set.is_empty() {
        String::new()
    } else {
        format!("<set xmlns='http://jabber.org/protocol/rsm'>{set}</set>")
    };
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    raw.send(&format!(
        "<iq type='set' id='{qid}'{to}><query xmlns='{MAM}' queryid='{qid}'>{form}{set}</query></iq>"
    ))
    .await
    .unwrap();
    let mut text = raw.read_until(&format!("id='{qid}'")).await.unwrap();
    // Either the IQ's own id (the last thing) or a result's queryid: read on to the IQ.
    loop {
        let tail = &text[text.rfind('<').unwrap_or(0)..];
        if tail.starts_with("<iq") {
            break;
        }
        text.push_str(&raw.read_until(&format!("id='{qid}'")).await.unwrap());
    }
    let iq_start = text.rfind("<iq").unwrap();
    let (results, iq_head) = text.split_at(iq_start);
    let mut iq = iq_head.to_owned();
    if !iq.ends_with("/>") {
        iq.push_str(&raw.read_until("</iq>").await.unwrap());
    }
    let hits = results
        .split("<result ")
        .skip(1)
        .map(|r| {
            assert_eq!(attr(r, "queryid").as_deref(), Some(qid), "{r}");
            let body = r
                .split_once("<body>")
                .and_then(|(_, b)| b.split_once("</body>"))
                .map(|(b, _)| b.to_owned())
                .unwrap_or_default();
            Hit {
                id: attr(r, "id").unwrap(),
                body,
                stamp: attr(r, "stamp").unwrap(),
            }
        })
        .collect();
    Answer { hits, iq }
}

/// All of alice's archive, page by page in `direction`, checking each page's `complete`.
async fn page_through(raw: &mut Raw, backwards: bool) -> Vec<Hit> {
    let mut all: Vec<Hit> = Vec::new();
    let mut cursor = String::new();
    for n in 0.. {
        let set = match (backwards, cursor.is_empty()) {
            (false, true) => "<max>100</max>".to_owned(),
            (false, false) => format!("<max>100</max><after>{cursor}</after>"),
            (true, true) => "<max>100</max><before/>".to_owned(),
            (true, false) => format!("<max>100</max><before>{cursor}</before>"),
        };
        let a = query(raw, &format!("p{backwards}{n}"), None, &[], &set).await;
        assert!(a.error().is_none(), "{}", a.iq);
        assert!(a.hits.len() <= 100);
        let (first, last) = (
            a.hits.first().unwrap().id.clone(),
            a.hits.last().unwrap().id.clone(),
        );
        assert!(a.iq.contains(&format!(">{first}</first>")), "{}", a.iq);
        assert!(a.iq.contains(&format!("<last>{last}</last>")), "{}", a.iq);
        let complete = a.complete();
        if backwards {
            cursor = first;
            let mut page = a.hits;
            page.extend(all);
            all = page;
        } else {
            cursor = last;
            all.extend(a.hits);
        }
        if complete {
            break;
        }
        assert!(n < 10, "never complete");
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_messages_page_forwards_and_backwards_and_filter() {
    let server = server(&["alice@localhost", "bob@localhost", "carol@localhost"]).await;
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let mut bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let mut carol = Raw::online(&server, "carol@localhost", "pw", "c")
        .await
        .unwrap();
    let mut seen_by_bob = String::new();
    for i in 0..250 {
        // Each handled before the next, so the archive's order is this one.
        if i % 2 == 0 {
            chat(&mut alice, "bob@localhost", &format!("m{i:03}")).await;
            alice.sync(&format!("sa{i}")).await.unwrap();
        } else {
            chat(&mut bob, "alice@localhost/a", &format!("m{i:03}")).await;
            seen_by_bob.push_str(&bob.sync(&format!("sb{i}")).await.unwrap());
        }
    }
    chat(
        &mut carol,
        "alice@localhost",
        "from carol, with a needle in it",
    )
    .await;
    carol.sync("sc").await.unwrap();
    // Bob's live copy of alice's last message carries the id of its archive entry.
    let at = seen_by_bob.find("m248</body>").expect("bob got m248");
    let end = at + seen_by_bob[at..].find("</message>").unwrap();
    let live = &seen_by_bob[..end];
    let live = &live[live.rfind("<message").unwrap()..];
    assert!(live.contains("urn:xmpp:sid:0"), "{live}");
    let live_id = live
        .split("<stanza-id")
        .skip(1)
        .find(|s| attr(s, "by").as_deref() == Some("bob@localhost"))
        .and_then(|s| attr(s, "id"))
        .unwrap_or_else(|| panic!("no stanza-id by bob: {live}"));
    assert_eq!(
        live.matches("<stanza-id").count(),
        1,
        "bob sees his own archive's id only: {live}"
    );
    alice.sync("drain").await.unwrap();

    let expected: Vec<String> = (0..250)
        .map(|i| format!("m{i:03}"))
        .chain(["from carol, with a needle in it".to_owned()])
        .collect();
    let forwards = page_through(&mut alice, false).await;
    assert_eq!(
        forwards.iter().map(|h| &h.body).collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>()
    );
    let backwards = page_through(&mut alice, true).await;
    assert_eq!(
        backwards, forwards,
        "backward paging finds the same messages in the same order"
    );
    let mut ids: Vec<&String> = forwards.iter().map(|h| &h.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 251, "ids are unique");

    // Bob's archive has the same message under the id his live copy carried.
    let b = query(&mut bob, "bq", None, &[("ids", &[&live_id])], "").await;
    assert_eq!(b.bodies(), vec!["m248"], "{}", b.iq);
    assert_eq!(
        forwards[248].id, live_id,
        "one entry, one id, in both archives"
    );

    // with: a bare JID, a full JID (only bob's resource b sent to alice), nobody.
    let with_bob = query(
        &mut alice,
        "w1",
        None,
        &[("with", &["bob@localhost"])],
        "<max>100</max><before/>",
    )
    .await;
    assert_eq!(with_bob.bodies().len(), 100);
    assert_eq!(with_bob.hits.last().unwrap().body, "m249");
    assert!(!with_bob.complete());
    let count = query(
        &mut alice,
        "w2",
        None,
        &[("with", &["bob@localhost/b"])],
        "<max>0</max>",
    )
    .await;
    assert!(
        count.iq.contains("<count>125</count>"),
        "bob/b sent 125: {}",
        count.iq
    );
    let carol_only = query(
        &mut alice,
        "w3",
        None,
        &[("with", &["carol@localhost"])],
        "",
    )
    .await;
    assert_eq!(carol_only.bodies(), vec!["from carol, with a needle in it"]);
    assert!(carol_only.complete());
    let nobody = query(&mut alice, "w4", None, &[("with", &["dave@localhost"])], "").await;
    assert!(nobody.hits.is_empty() && nobody.complete(), "{}", nobody.iq);

    // after-id / before-id: the messages strictly between.
    let between = query(
        &mut alice,
        "ab",
        None,
        &[
            ("after-id", &[&forwards[10].id]),
            ("before-id", &[&forwards[14].id]),
        ],
        "",
    )
    .await;
    assert_eq!(between.bodies(), vec!["m011", "m012", "m013"]);

    // start/end by the results' own stamps (inclusive): at least the message itself.
    let stamp = &forwards[100].stamp;
    let at = query(
        &mut alice,
        "se",
        None,
        &[("start", &[stamp]), ("end", &[stamp])],
        "",
    )
    .await;
    assert!(at.bodies().contains(&"m100"), "{:?}", at.bodies());
    assert!(at.hits.iter().all(|h| &h.stamp == stamp));
    let later = query(
        &mut alice,
        "st",
        None,
        &[("start", &["2999-01-01T00:00:00Z"])],
        "",
    )
    .await;
    assert!(later.hits.is_empty() && later.complete());

    // ids: just those, known ones only.
    let some = query(
        &mut alice,
        "ids",
        None,
        &[("ids", &[&forwards[3].id, &forwards[7].id, "unknown"])],
        "",
    )
    .await;
    assert_eq!(some.bodies(), vec!["m003", "m007"]);

    // XEP-0431 full text: every word, any case.
    let found = query(
        &mut alice,
        "ft",
        None,
        &[("{urn:xmpp:fulltext:0}fulltext", &["NEEDLE carol"])],
        "",
    )
    .await;
    assert_eq!(found.bodies(), vec!["from carol, with a needle in it"]);
    let none = query(
        &mut alice,
        "ft2",
        None,
        &[("{urn:xmpp:fulltext:0}fulltext", &["needle haystack"])],
        "",
    )
    .await;
    assert!(none.hits.is_empty());

    // flip-page: the same page, newest first.
    alice
        .send(&format!(
            "<iq type='set' id='flip'><query xmlns='{MAM}' queryid='flip'><set xmlns='http://jabber.org/protocol/rsm'><max>3</max></set><flip-page/></query></iq>"
        ))
        .await
        .unwrap();
    let flipped = alice.read_until("</iq>").await.unwrap();
    let order: Vec<usize> = ["m000", "m001", "m002"]
        .iter()
        .map(|b| flipped.find(b).unwrap())
        .collect();
    assert!(order[0] > order[1] && order[1] > order[2], "{flipped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_protocol_errors_and_bounded_answers() {
    let server = server(&["alice@localhost", "bob@localhost"]).await;
    let mut alice = Raw::login(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    for i in 0..120 {
        chat(&mut alice, "bob@localhost", &format!("x{i}")).await;
    }
    alice.sync("s").await.unwrap();

    // A `max` of 10^9 gets one page of at most max_page (100 here), not everything at once.
    let huge = query(&mut alice, "huge", None, &[], "<max>1000000000</max>").await;
    assert_eq!(huge.hits.len(), 100, "{}", huge.iq);
    assert!(!huge.complete());

    let cases: [(&str, Fields, &str, &str); 7] = [
        ("date", &[("start", &["yesterday"])], "", "bad-request"),
        ("jid", &[("with", &["not@@a@jid"])], "", "bad-request"),
        ("field", &[("colour", &["blue"])], "", "bad-request"),
        (
            "two",
            &[("start", &["2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"])],
            "",
            "bad-request",
        ),
        ("after", &[], "<after>no-such-id</after>", "item-not-found"),
        (
            "before",
            &[("before-id", &["no-such-id"])],
            "",
            "item-not-found",
        ),
        ("index", &[], "<index>3</index>", "feature-not-implemented"),
    ];
    for (qid, fields, set, condition) in cases {
        let a = query(&mut alice, qid, None, fields, set).await;
        assert_eq!(a.error(), Some(condition), "{qid}: {}", a.iq);
        assert!(a.hits.is_empty(), "{qid}");
    }
    let theirs = query(&mut alice, "theirs", Some("bob@localhost"), &[], "").await;
    assert_eq!(theirs.error(), Some("forbidden"), "{}", theirs.iq);

    // Still serving after all that.
    let fine = query(&mut alice, "fine", None, &[], "<max>5</max>").await;
    assert_eq!(fine.bodies(), vec!["x0", "x1", "x2", "x3", "x4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_decide_whose_archive_shows_a_message_and_forged_ids_are_removed() {
    let server = server(&["alice@localhost", "bob@localhost"]).await;
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let mut bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();

    // Bob archives nothing by default, except alice's messages... then changes his mind.
    bob.send(&format!(
        "<iq type='set' id='p1'><prefs xmlns='{MAM}' default='never'><always/><never><jid>alice@localhost</jid></never></prefs></iq>"
    ))
    .await
    .unwrap();
    bob.read_until("id='p1'").await.unwrap();
    let set = bob.read_until("</iq>").await.unwrap();
    assert!(
        set.contains("type='result'") || set.contains("type=\"result\""),
        "{set}"
    );
    assert!(
        set.contains("alice@localhost"),
        "the stored prefs come back: {set}"
    );
    bob.send(&format!(
        "<iq type='get' id='p2'><prefs xmlns='{MAM}'/></iq>"
    ))
    .await
    .unwrap();
    bob.read_until("id='p2'").await.unwrap();
    let got = bob.read_until("</iq>").await.unwrap();
    assert_eq!(
        attr(&got[got.find("<prefs").expect(&got)..], "default").as_deref(),
        Some("never"),
        "{got}"
    );

    alice
        .send(
            "<message to='bob@localhost' type='chat' id='f1'><body>secret</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>",
        )
        .await
        .unwrap();
    let live = bob.read_until("secret</body>").await.unwrap();
    let live_rest = bob.sync("bs").await.unwrap();
    let live = live + &live_rest;
    assert!(
        !live.contains("forged"),
        "a forged stanza-id reached bob: {live}"
    );
    assert!(
        !live
            .split("<stanza-id")
            .skip(1)
            .any(|s| attr(s, "by").as_deref() == Some("bob@localhost")),
        "bob's archive does not hold it, so no id by bob: {live}"
    );
    alice.sync("as").await.unwrap();
    let mine = query(&mut alice, "a1", None, &[], "").await;
    assert_eq!(mine.bodies(), vec!["secret"], "alice keeps everything");
    let his = query(&mut bob, "b1", None, &[], "").await;
    assert!(
        his.hits.is_empty(),
        "bob's prefs keep it out: {:?}",
        his.bodies()
    );

    // A message with the no-store hint is archived nowhere; a chat state alone neither.
    alice
        .send("<message to='bob@localhost' type='chat'><body>ephemeral</body><no-store xmlns='urn:xmpp:hints'/></message>")
        .await
        .unwrap();
    alice
        .send("<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await
        .unwrap();
    alice.sync("as2").await.unwrap();
    let mine = query(&mut alice, "a2", None, &[], "").await;
    assert_eq!(mine.bodies(), vec!["secret"]);

    // Back to the default: bob's archive shows what follows.
    bob.send(&format!("<iq type='set' id='p3'><prefs xmlns='{MAM}' default='always'><always/><never/></prefs></iq>"))
        .await
        .unwrap();
    bob.read_until("</iq>").await.unwrap();
    chat(&mut alice, "bob@localhost", "now kept").await;
    alice.sync("as3").await.unwrap();
    let his = query(&mut bob, "b2", None, &[], "").await;
    assert_eq!(his.bodies(), vec!["now kept"]);

    // The account's disco#info says what is offered.
    alice
        .send("<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await
        .unwrap();
    alice.read_until("id='d'").await.unwrap();
    let info = alice.read_until("</iq>").await.unwrap();
    for feature in [
        MAM,
        "urn:xmpp:mam:2#extended",
        "urn:xmpp:sid:0",
        "urn:xmpp:fulltext:0",
    ] {
        assert!(
            info.contains(&format!("var='{feature}'"))
                || info.contains(&format!("var=\"{feature}\"")),
            "{feature}: {info}"
        );
    }
}
