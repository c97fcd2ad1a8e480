//! `postern logs` as an admin uses it: processes of the real binary reading the store of a
//! real running server, on SQLite and on PostgreSQL (`POSTERN_TEST_POSTGRES_URL`):
//! search with every filter, the conversation view and JSON lines, conversations, exports to
//! mbox, JSON and HTML, the audit trail of all of it (and of an admin's MAM read over XMPP),
//! purges with a legal hold, retention by the server's own expiry task, and the login notice.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::path::Path;
use std::time::{Duration, Instant};

use postern_tests::process::{postern, run, serve};
use postern_tests::{Raw, trusting};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

async fn say(from: &mut Raw, to: String, body: &str) {
    let send = format!("<message to='{to}' type='chat'><body>{body}</body></message>");
    from.send(&send).await.unwrap();
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn bodies(out: &str) -> Vec<String> {
    json_lines(out)
        .iter()
        .map(|v| v["body"].as_str().unwrap().to_owned())
        .collect()
}

async fn scenario(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Names of their own: a PostgreSQL database is shared by the tests.
    let tag = format!(
        "t{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let (d, e) = (format!("{tag}.test"), format!("short{tag}.test"));
    let config = dir.path().join("postern.toml");
    let database = database
        .map(|url| format!("database = \"{url}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n{database}\
             [[domain]]\nname = \"{d}\"\n[[domain]]\nname = \"{e}\"\n\
             [xmpp]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = []\n\
             [xmpp.archive]\nnotice = \"Messages on this server are logged.\"\nexpire_every = \"1s\"\n\
             [xmpp.archive.retention_by_domain]\n\"{e}\" = \"2s\"\n\
             [gateway]\nenabled = false\n[http]\nlisten = []\n[xmpp.proxy65]\nenabled = false\n",
            data.display()
        ),
    )
    .unwrap();
    let cfg = config.as_path();
    for user in ["alice", "bob", "carol", "boss"] {
        postern(
            cfg,
            &["account", "add", &format!("{user}@{d}"), "--password-stdin"],
            "pw\n",
        );
    }
    for user in ["eve", "dave"] {
        postern(
            cfg,
            &["account", "add", &format!("{user}@{e}"), "--password-stdin"],
            "pw\n",
        );
    }
    postern(cfg, &["account", "admin", &format!("boss@{d}")], "");
    let (mut server, addr, _problems) = serve(cfg);

    let tls = |domain: &str| {
        trusting(
            CertificateDer::from_pem_file(data.join("certs").join(format!("{domain}.crt")))
                .unwrap(),
        )
    };
    let online = |jid: String, resource: &'static str, tls| async move {
        let raw = Raw::connect(addr).await.unwrap();
        let mut raw = Raw::login_trusting(raw, tls, &jid, "pw", resource)
            .await
            .unwrap();
        raw.send("<presence/>").await.unwrap();
        let seen = raw.sync("online").await.unwrap();
        (raw, seen)
    };
    let (mut alice, first) = online(format!("alice@{d}"), "phone", tls(&d)).await;
    assert!(
        first.contains("Messages on this server are logged.") && first.contains("type='headline'"),
        "a new device is told: {first}"
    );
    let (mut bob, _) = online(format!("bob@{d}"), "desk", tls(&d)).await;
    let (mut carol, _) = online(format!("carol@{d}"), "web", tls(&d)).await;
    say(&mut alice, format!("bob@{d}"), "hello bob, lunch at noon?").await;
    alice.sync("a1").await.unwrap();
    say(
        &mut bob,
        format!("alice@{d}/phone"),
        "yes\nsee you at the usual place",
    )
    .await;
    bob.sync("b1").await.unwrap();
    say(
        &mut carol,
        format!("alice@{d}"),
        "quarterly report: 1 &lt; 2 &amp; 3 &gt; 2 &lt;script&gt;x&lt;/script&gt;",
    )
    .await;
    carol.sync("c1").await.unwrap();
    say(&mut alice, format!("carol@{d}"), "From the report, page 2").await;
    alice.sync("a2").await.unwrap();

    // The same device again: no second notice.
    drop(alice);
    let (mut alice, again) = online(format!("alice@{d}"), "phone", tls(&d)).await;
    assert!(!again.contains("are logged"), "told twice: {again}");

    // Search: everything of the domain, as JSON lines, oldest first.
    let all = postern(cfg, &["logs", "search", "--domain", &d, "--json"], "");
    assert_eq!(
        bodies(&all),
        [
            "hello bob, lunch at noon?",
            "yes\nsee you at the usual place",
            "quarterly report: 1 < 2 & 3 > 2 <script>x</script>",
            "From the report, page 2",
        ],
        "{all}"
    );
    let first = &json_lines(&all)[0];
    assert_eq!(first["from"], format!("alice@{d}/phone"));
    assert_eq!(first["to"], format!("bob@{d}"));
    assert_eq!(first["type"], "chat");
    // Filters: account + peer, full-JID peer, text, time, limit.
    let with_bob = postern(
        cfg,
        &[
            "logs",
            "search",
            "--account",
            &format!("alice@{d}"),
            "--peer",
            &format!("bob@{d}"),
            "--json",
        ],
        "",
    );
    assert_eq!(bodies(&with_bob).len(), 2, "{with_bob}");
    let bob_desk = postern(
        cfg,
        &[
            "logs",
            "search",
            "--domain",
            &d,
            "--peer",
            &format!("bob@{d}/desk"),
            "--json",
        ],
        "",
    );
    assert_eq!(bodies(&bob_desk), ["yes\nsee you at the usual place"]);
    let lunch = postern(
        cfg,
        &[
            "logs",
            "search",
            "--domain",
            &d,
            "--text",
            "LUNCH noon",
            "--json",
        ],
        "",
    );
    assert_eq!(bodies(&lunch), ["hello bob, lunch at noon?"]);
    let future = postern(
        cfg,
        &[
            "logs",
            "search",
            "--domain",
            &d,
            "--since",
            "2999-01-01",
            "--json",
        ],
        "",
    );
    assert!(bodies(&future).is_empty());
    let past = postern(
        cfg,
        &["logs", "search", "--domain", &d, "--until", "1h", "--json"],
        "",
    );
    assert!(
        bodies(&past).is_empty(),
        "nothing older than an hour: {past}"
    );
    let newest = postern(cfg, &["logs", "search", "--domain", &d, "--limit", "1"], "");
    assert!(
        newest.contains("From the report, page 2") && !newest.contains("lunch"),
        "{newest}"
    );
    assert!(newest.contains("older matches left out"), "{newest}");
    // The conversation view: a heading per conversation, sender and recipient on each line.
    let view = postern(
        cfg,
        &["logs", "search", "--account", &format!("alice@{d}")],
        "",
    );
    assert!(
        view.contains(&format!("── alice@{d} ⇄ bob@{d} ──")),
        "{view}"
    );
    assert!(
        view.contains(&format!("alice@{d}/phone → bob@{d}: hello bob")),
        "{view}"
    );
    assert!(
        view.contains("see you at the usual place"),
        "continuation line: {view}"
    );
    let bad = run(cfg, &["logs", "search", "--since", "last tuesday"], "");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a time"),
        "{bad:?}"
    );

    // --follow: what arrives after the start is shown as it is archived.
    let mut follow = std::process::Command::new(postern_tests::process::binary())
        .arg("--config")
        .arg(cfg)
        .args([
            "logs", "search", "--domain", &d, "--text", "usual", "--json", "--follow",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    // First what matches already: once it is shown, what follows is new.
    let old = lines_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("--follow showed no match");
    assert!(old.contains("see you at the usual place"), "{old}");
    say(
        &mut bob,
        format!("alice@{d}/phone"),
        "the usual: fresh news",
    )
    .await;
    bob.sync("b2").await.unwrap();
    let line = lines_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("--follow showed nothing new");
    assert!(line.contains("the usual: fresh news"), "{line}");
    follow.kill().unwrap();
    follow.wait().unwrap();

    // Conversations.
    let convs = postern(
        cfg,
        &["logs", "conversations", "--domain", &d, "--json"],
        "",
    );
    let convs = json_lines(&convs);
    assert_eq!(convs.len(), 2, "{convs:?}");
    assert!(
        convs.iter().any(|c| c["messages"] == 2
            && (c["a"] == format!("alice@{d}") && c["b"] == format!("carol@{d}"))),
        "{convs:?}"
    );

    // Exports: JSON lines, mbox, HTML (escaped, nothing active).
    let out = dir.path().join("x.json");
    postern(
        cfg,
        &[
            "logs",
            "export",
            "--domain",
            &d,
            "--format",
            "json",
            "-o",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(bodies(&std::fs::read_to_string(&out).unwrap()).len(), 5);
    let exists = run(
        cfg,
        &[
            "logs",
            "export",
            "--domain",
            &d,
            "--format",
            "json",
            "-o",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        !exists.status.success(),
        "an export never overwrites a file"
    );
    let mbox = dir.path().join("x.mbox");
    postern(
        cfg,
        &[
            "logs",
            "export",
            "--account",
            &format!("alice@{d}"),
            "--format",
            "mbox",
            "-o",
            mbox.to_str().unwrap(),
        ],
        "",
    );
    let mbox = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(
        mbox.lines().filter(|l| l.starts_with("From: ")).count(),
        5,
        "{mbox}"
    );
    assert_eq!(
        mbox.lines().filter(|l| l.starts_with("From ")).count(),
        5,
        "one separator per message: {mbox}"
    );
    assert!(
        mbox.contains("\n>From the report, page 2\n"),
        "mboxrd quoting: {mbox}"
    );
    let html = dir.path().join("x.html");
    postern(
        cfg,
        &[
            "logs",
            "export",
            "--domain",
            &d,
            "--text",
            "quarterly",
            "--format",
            "html",
            "-o",
            html.to_str().unwrap(),
        ],
        "",
    );
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(
        html.contains("1 &lt; 2 &amp; 3 &gt; 2 &lt;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("Content-Security-Policy") && html.ends_with("</html>\n"),
        "{html}"
    );

    // An admin reads bob's archive over XMPP (MAM to bob's JID); alice may not.
    let (mut boss, _) = online(format!("boss@{d}"), "admin", tls(&d)).await;
    boss.send(&format!(
        "<iq type='set' id='adm' to='bob@{d}'><query xmlns='urn:xmpp:mam:2' queryid='adm'/></iq>"
    ))
    .await
    .unwrap();
    let read = boss.read_until("<fin").await.unwrap();
    assert!(
        read.contains("lunch at noon") && read.contains("usual place"),
        "{read}"
    );
    alice
        .send(&format!("<iq type='set' id='nope' to='bob@{d}'><query xmlns='urn:xmpp:mam:2' queryid='nope'/></iq>"))
        .await
        .unwrap();
    alice.read_until("id='nope'").await.unwrap();
    let refused = alice.read_until("</iq>").await.unwrap();
    assert!(refused.contains("<forbidden"), "{refused}");

    // The audit trail has every read above, by whom and with what query.
    let audit = json_lines(&postern(cfg, &["logs", "audit", "--json"], ""));
    let actions: Vec<&str> = audit
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for action in ["search", "conversations", "export", "mam-query"] {
        assert!(actions.contains(&action), "{action} not audited: {audit:?}");
    }
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "search"
                && a["query"].as_str().unwrap().contains("text=LUNCH noon")),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|a| a["action"] == "mam-query"
            && a["actor"] == format!("xmpp:boss@{d}")
            && a["query"].as_str().unwrap().contains(&format!("bob@{d}"))),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .all(|a| a["actor"].as_str().unwrap().starts_with("cli:")
                || a["actor"].as_str().unwrap().starts_with("xmpp:")),
        "{audit:?}"
    );
    assert!(
        !audit
            .iter()
            .any(|a| a["query"].as_str().unwrap().contains("nope")),
        "a refused read reads nothing and is not a read"
    );

    // A hold keeps bob's archive through a purge of the domain; the others' go.
    postern(
        cfg,
        &[
            "logs",
            "hold",
            "add",
            &format!("bob@{d}"),
            "--reason",
            "case 42",
        ],
        "",
    );
    assert!(postern(cfg, &["logs", "hold", "list"], "").contains("case 42"));
    let typo = run(
        cfg,
        &["logs", "hold", "add", "bob@nowhere.test", "--reason", "x"],
        "",
    );
    assert!(
        !typo.status.success(),
        "a hold on an address of no served domain protects nothing"
    );
    let refused = run(
        cfg,
        &[
            "logs",
            "purge",
            "--before",
            "0s",
            "--account",
            &format!("bob@{d}"),
        ],
        "",
    );
    assert!(!refused.status.success(), "a held account is not purged");
    let dry = postern(
        cfg,
        &[
            "logs",
            "purge",
            "--before",
            "0s",
            "--domain",
            &d,
            "--dry-run",
        ],
        "",
    );
    // alice's 5 entries and carol's 2 (bob's 3 held): 7.
    assert!(dry.contains("would delete 7 archive entries"), "{dry}");
    assert_eq!(
        bodies(&postern(
            cfg,
            &["logs", "search", "--domain", &d, "--json"],
            ""
        ))
        .len(),
        5,
        "a dry run deletes nothing"
    );
    let purged = postern(
        cfg,
        &["logs", "purge", "--before", "0s", "--domain", &d],
        "",
    );
    assert!(
        purged.contains("deleted 7 archive entries (2 messages"),
        "{purged}"
    );
    assert!(
        bodies(&postern(
            cfg,
            &[
                "logs",
                "search",
                "--account",
                &format!("alice@{d}"),
                "--json"
            ],
            ""
        ))
        .is_empty()
    );
    assert_eq!(
        bodies(&postern(
            cfg,
            &["logs", "search", "--account", &format!("bob@{d}"), "--json"],
            ""
        ))
        .len(),
        3
    );
    assert!(
        bodies(&postern(
            cfg,
            &[
                "logs",
                "search",
                "--domain",
                &d,
                "--text",
                "quarterly",
                "--json"
            ],
            ""
        ))
        .is_empty()
    );
    let audit = postern(cfg, &["logs", "audit"], "");
    assert!(audit.contains("purge") && audit.contains("hold"), "{audit}");

    // Retention: the short domain keeps 2 s; the expiry task (every second) removes eve's
    // side, dave's stays while he is on hold.
    postern(
        cfg,
        &[
            "logs",
            "hold",
            "add",
            &format!("dave@{e}"),
            "--reason",
            "audit",
        ],
        "",
    );
    let (mut eve, _) = online(format!("eve@{e}"), "x", tls(&e)).await;
    say(&mut eve, format!("dave@{e}"), "short-lived words").await;
    eve.sync("e1").await.unwrap();
    let eve_count = |cfg: &Path, who: &str| {
        bodies(&postern(
            cfg,
            &[
                "logs",
                "search",
                "--account",
                &format!("{who}@{e}"),
                "--json",
            ],
            "",
        ))
        .len()
    };
    assert_eq!(eve_count(cfg, "eve"), 1);
    let t0 = Instant::now();
    while eve_count(cfg, "eve") > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "retention never expired eve's message"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(eve_count(cfg, "dave"), 1, "held: kept");

    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reader_on_sqlite() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reader_on_postgres() {
    if let Some(url) = postern_store::testing::postgres_url() {
        scenario(Some(url)).await;
    }
}
