//! XEP-0363 HTTP File Upload end to end: slots over a raw XMPP stream, PUT and GET with
//! `curl` (Debian: curl; a missing curl FAILS the test) against the real HTTPS listener with
//! the domain's generated certificate, and raw TLS sockets for the requests curl will not
//! send (a body shorter than its Content-Length, a stalled body).

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postern_tests::{Raw, TestServer, attr, has};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server(tweak: impl FnOnce(&mut postern_tests::Config)) -> TestServer {
    let server = TestServer::start_with(tweak).await.unwrap();
    for who in ["alice@localhost", "bob@localhost", "carol@example.org"] {
        server.add_account(who, "pw").await.unwrap();
    }
    server
}

/// Asks `to` for a slot; the IQ answer.
async fn slot(raw: &mut Raw, id: &str, to: &str, name: &str, size: u64, ctype: &str) -> String {
    raw.send(&format!(
        "<iq type='get' id='{id}' to='{to}'><request xmlns='urn:xmpp:http:upload:0' \
         filename='{name}' size='{size}' content-type='{ctype}'/></iq>"
    ))
    .await
    .unwrap();
    raw.read_element("iq").await.unwrap()
}

/// (PUT URL, GET URL) of a slot answer.
fn urls(answer: &str) -> (String, String) {
    let unescape = |s: String| s.replace("&amp;", "&");
    let put = &answer[answer
        .find("<put")
        .unwrap_or_else(|| panic!("no slot: {answer}"))..];
    let get = &answer[answer.find("<get").expect("get url")..];
    (
        unescape(attr(put, "url").expect("put url")),
        unescape(attr(get, "url").expect("get url")),
    )
}

/// What curl saw.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// `curl ARGS URL` trusting the server's certificate for `localhost`, resolved to loopback.
fn curl(server: &TestServer, url: &str, args: &[&str]) -> Reply {
    let dir = server.config.data_dir.join("curl");
    std::fs::create_dir_all(&dir).unwrap();
    let n = rand_name();
    let (body, head) = (dir.join(format!("{n}.body")), dir.join(format!("{n}.head")));
    let port = server.https.expect("an HTTPS listener").port();
    // Both domains' generated certificates.
    let ca = dir.join("ca.pem");
    if !ca.exists() {
        let mut pem = std::fs::read(server.config.data_dir.join("certs/localhost.crt")).unwrap();
        pem.extend(std::fs::read(server.config.data_dir.join("certs/example.org.crt")).unwrap());
        std::fs::write(&ca, pem).unwrap();
    }
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["--resolve", &format!("example.org:{port}:127.0.0.1")])
        .arg("-o")
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl must be installed (Debian: curl)");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if status == 0 {
        eprintln!(
            "curl {args:?} {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Reply {
        status,
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("r{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A file of `size` bytes that are not all alike.
fn file(dir: &Path, name: &str, size: usize) -> PathBuf {
    let mut data = Vec::with_capacity(size);
    let mut x: u32 = 0x1234_5678;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn put(server: &TestServer, url: &str, path: &Path, ctype: &str) -> Reply {
    let p = path.to_str().unwrap().to_owned();
    curl(
        server,
        url,
        &["-T", &p, "-H", &format!("Content-Type: {ctype}")],
    )
}

/// Files left half-written under the upload directory.
fn parts(server: &TestServer) -> Vec<PathBuf> {
    std::fs::read_dir(server.config.data_dir.join("uploads/tmp"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_up_once_and_comes_down_byte_identical() {
    let server = server(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();

    // Discovery: the domain lists the service, the service says what it takes.
    alice
        .send("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await
        .unwrap();
    let items = alice.read_element("iq").await.unwrap();
    assert!(
        items.contains("jid='upload.localhost'") || items.contains("jid=\"upload.localhost\""),
        "{items}"
    );
    alice
        .send("<iq type='get' id='d2' to='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await
        .unwrap();
    let info = alice.read_element("iq").await.unwrap();
    assert!(
        info.contains("urn:xmpp:http:upload:0") && has(&info, "identity"),
        "{info}"
    );
    assert!(
        info.contains("'store'") || info.contains("\"store\""),
        "{info}"
    );
    assert!(
        info.contains("max-file-size") && info.contains(&(100u64 * 1024 * 1024).to_string()),
        "{info}"
    );

    for (i, size) in [1usize << 20, 50 << 20].into_iter().enumerate() {
        let src = file(dir.path(), &format!("f{i}.bin"), size);
        let answer = slot(
            &mut alice,
            &format!("s{i}"),
            "upload.localhost",
            &format!("report {i}.bin"),
            size as u64,
            "application/octet-stream",
        )
        .await;
        assert!(
            answer.contains("type='result'") || answer.contains("type=\"result\""),
            "{answer}"
        );
        let (put_url, get_url) = urls(&answer);
        assert!(
            get_url.starts_with(&format!(
                "https://localhost:{}/upload/",
                server.https.unwrap().port()
            )),
            "{get_url}"
        );
        assert!(
            get_url.ends_with(&format!("/report%20{i}.bin")),
            "{get_url}"
        );
        let started = Instant::now();
        let r = put(&server, &put_url, &src, "application/octet-stream");
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        eprintln!("PUT {size} bytes in {:?}", started.elapsed());
        let g = curl(&server, &get_url, &[]);
        assert_eq!(g.status, 200);
        assert!(
            g.body == std::fs::read(&src).unwrap(),
            "GET differs from what was PUT ({} bytes)",
            g.body.len()
        );
        assert_eq!(g.header("content-length"), Some(size.to_string()));
        assert_eq!(
            g.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert!(
            g.header("content-disposition")
                .unwrap()
                .starts_with("attachment; filename*=UTF-8''report%20"),
            "{}",
            g.headers
        );
        // The URL is single use.
        let again = put(&server, &put_url, &src, "application/octet-stream");
        assert_eq!(again.status, 409);
        if i == 0 {
            // A range, a conditional GET, HEAD.
            let part = curl(&server, &get_url, &["-r", "1000-1999"]);
            assert_eq!(part.status, 206);
            assert_eq!(part.body, std::fs::read(&src).unwrap()[1000..2000]);
            assert_eq!(
                part.header("content-range").as_deref(),
                Some(format!("bytes 1000-1999/{size}").as_str())
            );
            let etag = g.header("etag").expect("an ETag");
            let cached = curl(
                &server,
                &get_url,
                &["-H", &format!("If-None-Match: {etag}")],
            );
            assert_eq!(cached.status, 304);
            let beyond = curl(&server, &get_url, &["-r", &format!("{size}-")]);
            assert_eq!(beyond.status, 416);
            let head = curl(&server, &get_url, &["-I"]);
            assert_eq!(head.status, 200);
            assert_eq!(head.header("content-length"), Some(size.to_string()));
            // HTTP/2 is not offered (see postern-http's server.rs): curl falls back.
            let h2 = curl(&server, &get_url, &["--http2"]);
            assert_eq!((h2.status, h2.body.len()), (200, size));
            assert!(h2.headers.starts_with("HTTP/1.1"), "{}", h2.headers);
        }
    }
    // Another user may fetch it (that is the point); a wrong name or id may not.
    let answer = slot(
        &mut alice,
        "s9",
        "upload.localhost",
        "page.html",
        20,
        "text/html",
    )
    .await;
    let (put_url, get_url) = urls(&answer);
    let html = dir.path().join("page.html");
    std::fs::write(&html, b"<script>x()</script>").unwrap();
    assert_eq!(put(&server, &put_url, &html, "text/html").status, 201);
    let g = curl(&server, &get_url, &[]);
    assert_eq!(g.status, 200);
    assert!(
        g.header("content-disposition")
            .unwrap()
            .starts_with("attachment"),
        "HTML is never shown inline"
    );
    assert!(
        g.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
    let wrong_name = get_url.replace("page.html", "other.html");
    assert_eq!(curl(&server, &wrong_name, &[]).status, 404);
    let traversal = format!(
        "https://localhost:{}/upload/../../certs/localhost.key",
        server.https.unwrap().port()
    );
    assert_eq!(curl(&server, &traversal, &["--path-as-is"]).status, 404);
    // A host that is not ours.
    let foreign = get_url.replace("https://localhost:", "https://127.0.0.1:");
    assert_eq!(curl(&server, &foreign, &["-k"]).status, 421);
    assert!(parts(&server).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_do_not_match_their_slot_are_refused() {
    let server = server(|c| {
        c.xmpp.upload.max_file_size = postern_core::ByteSize(4 << 20);
        c.xmpp.upload.quota_per_user =
            postern_xmpp::config::ByteLimit(Some(postern_core::ByteSize(5 << 20)));
        c.xmpp.upload.slot_lifetime = Duration::from_secs(10);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    // Requested first: it expires while the rest runs.
    let expiring = urls(
        &slot(
            &mut alice,
            "e",
            "upload.localhost",
            "late.txt",
            10,
            "text/plain",
        )
        .await,
    )
    .0;
    let granted = Instant::now();

    // Too large: the limit is in the error.
    let big = slot(
        &mut alice,
        "b",
        "upload.localhost",
        "big.bin",
        5 << 20,
        "application/octet-stream",
    )
    .await;
    assert!(
        has(&big, "not-acceptable") && has(&big, "file-too-large"),
        "{big}"
    );
    assert!(
        big.contains(&format!("<max-file-size>{}</max-file-size>", 4 << 20)),
        "{big}"
    );
    // Names that are paths, bad types, someone else's service, sizes that are not numbers.
    for (id, name, ctype) in [
        ("n1", "../../etc/passwd", "text/plain"),
        ("n2", "a/b", "text/plain"),
        ("n3", "ok.txt", "text"),
    ] {
        let a = slot(&mut alice, id, "upload.localhost", name, 10, ctype).await;
        assert!(has(&a, "bad-request"), "{name}: {a}");
    }
    let other = slot(
        &mut alice,
        "o",
        "upload.example.org",
        "x.txt",
        10,
        "text/plain",
    )
    .await;
    assert!(has(&other, "forbidden"), "{other}");
    alice
        .send("<iq type='get' id='nan' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='x' size='lots'/></iq>")
        .await
        .unwrap();
    let nan = alice.read_element("iq").await.unwrap();
    assert!(has(&nan, "bad-request"), "{nan}");

    // Quota: 3 MiB fits, another 3 MiB does not (slots count until they expire).
    let first = slot(
        &mut alice,
        "q1",
        "upload.localhost",
        "q1.bin",
        3 << 20,
        "application/octet-stream",
    )
    .await;
    let (q1_put, _) = urls(&first);
    let over = slot(
        &mut alice,
        "q2",
        "upload.localhost",
        "q2.bin",
        3 << 20,
        "application/octet-stream",
    )
    .await;
    assert!(
        has(&over, "resource-constraint") && has(&over, "retry"),
        "{over}"
    );
    // XEP-0363: when to retry (here: when the open 3 MiB slot expires).
    let stamp = attr(&over[over.find("<retry").unwrap()..], "stamp").expect("a stamp");
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{stamp}");
    // Bob's quota is his own.
    let mut bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    assert!(has(
        &slot(
            &mut bob,
            "q3",
            "upload.localhost",
            "q3.bin",
            3 << 20,
            "application/octet-stream"
        )
        .await,
        "slot"
    ));

    // PUTs that do not match the slot: nothing stored, the slot still usable afterwards.
    let three = file(dir.path(), "three.bin", 3 << 20);
    let short = file(dir.path(), "short.bin", 1 << 20);
    assert_eq!(
        put(&server, &q1_put, &short, "application/octet-stream").status,
        400
    );
    assert_eq!(put(&server, &q1_put, &three, "text/plain").status, 415);
    let unsigned = q1_put.split('?').next().unwrap().to_owned();
    assert_eq!(
        put(&server, &unsigned, &three, "application/octet-stream").status,
        403
    );
    let tampered = q1_put.replace("expires=", "expires=9");
    assert_eq!(
        put(&server, &tampered, &three, "application/octet-stream").status,
        403
    );
    let other_host = q1_put.replace("https://localhost:", "https://example.org:");
    assert_eq!(
        put(&server, &other_host, &three, "application/octet-stream").status,
        403
    );
    let port = server.https.unwrap().port();
    let fake = format!(
        "https://localhost:{port}/upload/00000000000000000000000000000000/x.bin?expires=1&sig=00"
    );
    assert_eq!(
        put(&server, &fake, &three, "application/octet-stream").status,
        403
    );
    assert_eq!(
        put(&server, &q1_put, &three, "application/octet-stream").status,
        201
    );
    assert!(parts(&server).is_empty());

    // The slot granted first has expired by now.
    let wait = Duration::from_secs(11).saturating_sub(granted.elapsed());
    tokio::time::sleep(wait).await;
    let late = dir.path().join("late.txt");
    std::fs::write(&late, b"0123456789").unwrap();
    let r = put(&server, &expiring, &late, "text/plain");
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("expired"));
    server.stop().await;
}

/// A TLS connection to the HTTPS listener, trusting the server's certificate.
async fn tls_to(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let port = server.https.unwrap().port();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(server.tls_config("localhost"));
    tls.connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// A raw HTTPS request over TLS trusting the server's certificate; what came back (the
/// server may close early).
async fn raw_put(server: &TestServer, request: &[u8], then_wait: Option<Duration>) -> String {
    let mut s = tls_to(server).await;
    s.write_all(request).await.unwrap();
    s.flush().await.unwrap();
    if then_wait.is_none() {
        // Close our side: the body ends before its Content-Length.
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let read = async {
        let _ = s.read_to_end(&mut out).await;
    };
    let _ = tokio::time::timeout(
        then_wait.unwrap_or(Duration::from_secs(5)) + Duration::from_secs(5),
        read,
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_or_stalled_body_leaves_nothing_behind() {
    let server = server(|c| {
        c.http.body_idle_timeout = Duration::from_secs(1);
        c.http.header_timeout = Duration::from_secs(1);
    })
    .await;
    // Slowloris before the body: a TLS handshake never started, a request head never ended.
    let port = server.https.unwrap().port();
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a handshake");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let half_head = raw_put(
        &server,
        b"PUT /upload/x/y HTTP/1.1\r\nHost: localhost\r\nX-Slow: a",
        Some(Duration::from_secs(3)),
    )
    .await;
    assert!(!half_head.contains(" 201 "), "{half_head}");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "a half-sent head held the connection: {:?}",
        started.elapsed()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let (put_url, get_url) = urls(
        &slot(
            &mut alice,
            "s",
            "upload.localhost",
            "x.bin",
            100_000,
            "application/octet-stream",
        )
        .await,
    );
    let path_q = &put_url[put_url.find("/upload/").unwrap()..];
    let head = format!(
        "PUT {path_q} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
    );
    let mut short = head.clone().into_bytes();
    short.extend(vec![b'a'; 40_000]);
    // Content-Length lies: the client closes after 40,000 bytes.
    let answer = raw_put(&server, &short, None).await;
    assert!(!answer.contains("201"), "{answer}");
    // The client vanishes mid-body (the socket closed both ways, no TLS close_notify), on a
    // slot of its own.
    let (gone_put, gone_get) = urls(
        &slot(
            &mut alice,
            "s2",
            "upload.localhost",
            "gone.bin",
            100_000,
            "application/octet-stream",
        )
        .await,
    );
    {
        let gone_path = &gone_put[gone_put.find("/upload/").unwrap()..];
        let mut request = format!(
            "PUT {gone_path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
        )
        .into_bytes();
        request.extend(vec![b'a'; 40_000]);
        let mut s = tls_to(&server).await;
        s.write_all(&request).await.unwrap();
        s.flush().await.unwrap();
        drop(s);
    }
    // The slot comes back (409 while the broken PUT still holds it): its partial file is gone
    // by then, and a complete PUT of the same slot succeeds.
    let whole = file(dir.path(), "gone.bin", 100_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = put(&server, &gone_put, &whole, "application/octet-stream");
        if r.status == 201 {
            break;
        }
        assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            Instant::now() < deadline,
            "the broken PUT never gave its slot back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        curl(&server, &gone_get, &[]).body,
        std::fs::read(&whole).unwrap()
    );
    assert!(parts(&server).is_empty(), "{:?}", parts(&server));
    // Slowloris: the client sends part of the body, then nothing; cut after the idle time.
    let started = Instant::now();
    let answer = raw_put(&server, &short, Some(Duration::from_secs(3))).await;
    assert!(!answer.contains(" 201 "), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "not cut: {:?}",
        started.elapsed()
    );
    assert!(parts(&server).is_empty(), "{:?}", parts(&server));
    assert_eq!(curl(&server, &get_url, &[]).status, 404);
    // The slot was given back each time: a complete PUT still works.
    let src = file(dir.path(), "x.bin", 100_000);
    assert_eq!(
        put(&server, &put_url, &src, "application/octet-stream").status,
        201
    );
    assert_eq!(
        curl(&server, &get_url, &[]).body,
        std::fs::read(&src).unwrap()
    );
    server.stop().await;
}

/// The admin CLI (the real binary, on the running server's store): `postern files list`
/// shows what was sent, `show` the checksum, URL and the message that carried the link (an
/// audited read of the chat log), `purge` keeps an account under legal hold, `delete` ends
/// the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_lists_shows_and_deletes_what_was_sent() {
    use postern_tests::process::postern;
    let server = server(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let port = server.https.unwrap().port();
    let cfg = dir.path().join("postern.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"localhost\"\n[[domain]]\nname = \"example.org\"\n\
             [http]\nlisten = [\"127.0.0.1:{port}\"]\n",
            server.config.data_dir.display()
        ),
    )
    .unwrap();
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let mut bob = Raw::online(&server, "bob@localhost", "pw", "b")
        .await
        .unwrap();
    let (put_url, get_url) = urls(
        &slot(
            &mut alice,
            "s",
            "upload.localhost",
            "minutes.pdf",
            4096,
            "application/pdf",
        )
        .await,
    );
    let src = file(dir.path(), "minutes.pdf", 4096);
    assert_eq!(put(&server, &put_url, &src, "application/pdf").status, 201);
    alice
        .send(&format!(
            "<message to='bob@localhost' type='chat' id='m1'><body>{get_url}</body></message>"
        ))
        .await
        .unwrap();
    let delivered = bob.read_element("message").await.unwrap();
    assert!(delivered.contains(&get_url), "{delivered}");
    let id = get_url.split('/').rev().nth(1).unwrap().to_owned();

    let list = postern(&cfg, &["files", "list", "--owner", "alice@localhost"], "");
    assert!(
        list.contains(&id) && list.contains("minutes.pdf") && list.contains("4096 bytes"),
        "{list}"
    );
    assert!(postern(&cfg, &["files", "list", "--owner", "bob@localhost"], "").is_empty());
    let sha = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(std::fs::read(&src).unwrap()))
    };
    // The archive writer commits in the background: ask until the message is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let show = loop {
        let show = postern(&cfg, &["files", "show", &id], "");
        if show.contains("linked in: 1 message") || Instant::now() > deadline {
            break show;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        show.contains("linked in: 1 message") && show.contains("alice@localhost -> bob@localhost"),
        "{show}"
    );
    assert!(show.contains(&format!("sha256:    {sha}")), "{show}");
    assert!(show.contains(&format!("url:       {get_url}")), "{show}");
    // The chat log shows the file beside the message that carried its URL.
    let log = postern(
        &cfg,
        &["logs", "search", "--account", "alice@localhost"],
        "",
    );
    assert!(
        log.contains(&get_url)
            && log.contains(
                "[file: minutes.pdf, 4096 bytes, application/pdf, uploaded by alice@localhost"
            ),
        "{log}"
    );
    let json = postern(
        &cfg,
        &["logs", "search", "--account", "alice@localhost", "--json"],
        "",
    );
    let line: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(line["files"][0]["id"], id.as_str(), "{json}");
    assert_eq!(line["files"][0]["sha256"], sha.as_str(), "{json}");
    let audit = postern(&cfg, &["logs", "audit"], "");
    assert!(
        audit.contains("files show") && audit.contains(&id),
        "{audit}"
    );

    postern(
        &cfg,
        &[
            "logs",
            "hold",
            "add",
            "alice@localhost",
            "--reason",
            "case 7",
        ],
        "",
    );
    let kept = postern(&cfg, &["files", "purge", "--owner", "alice@localhost"], "");
    assert!(
        kept.contains("legal hold") && kept.contains("deleted 0 upload"),
        "{kept}"
    );
    postern(&cfg, &["logs", "hold", "remove", "alice@localhost"], "");
    let dry = postern(
        &cfg,
        &["files", "purge", "--owner", "alice@localhost", "--dry-run"],
        "",
    );
    assert!(
        dry.contains("would delete 1 upload(s), 4096 bytes"),
        "{dry}"
    );
    assert_eq!(
        curl(&server, &get_url, &[]).status,
        200,
        "a dry run deletes nothing"
    );
    let deleted = postern(&cfg, &["files", "delete", &id], "");
    assert!(deleted.contains(&format!("deleted {id}")), "{deleted}");
    assert_eq!(curl(&server, &get_url, &[]).status, 404);
    assert!(
        !server
            .config
            .data_dir
            .join("uploads")
            .join(&id[..2])
            .join(&id)
            .exists()
    );
    server.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Files past `expire_after` are deleted by the expiry task (file and record), except those
/// of an account under legal hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_expire_unless_their_owner_is_on_hold() {
    let server = server(|c| {
        c.xmpp.upload.expire_after =
            postern_xmpp::modules::archive::retention::Retention::For(Duration::from_secs(1));
        c.xmpp.upload.expire_every = Duration::from_millis(300);
    })
    .await;
    server
        .accounts()
        .store()
        .hold_place(&postern_store::Hold {
            owner: "bob@localhost".into(),
            reason: "case 9".into(),
            actor: "test".into(),
            since_ms: 0,
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut urls_of = Vec::new();
    for who in ["alice", "bob"] {
        let mut raw = Raw::online(&server, &format!("{who}@localhost"), "pw", "r")
            .await
            .unwrap();
        let (put_url, get_url) = urls(
            &slot(
                &mut raw,
                "s",
                "upload.localhost",
                "old.txt",
                3,
                "text/plain",
            )
            .await,
        );
        let src = dir.path().join(format!("{who}.txt"));
        std::fs::write(&src, b"old").unwrap();
        assert_eq!(put(&server, &put_url, &src, "text/plain").status, 201);
        urls_of.push(get_url);
    }
    let id = |url: &str| url.split('/').rev().nth(1).unwrap().to_owned();
    let alice_file = {
        let i = id(&urls_of[0]);
        server
            .config
            .data_dir
            .join("uploads")
            .join(&i[..2])
            .join(&i)
    };
    assert!(alice_file.exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&server, &urls_of[0], &[]).status != 404 {
        assert!(Instant::now() < deadline, "alice's file never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!alice_file.exists(), "the file went with its record");
    assert_eq!(
        curl(&server, &urls_of[1], &[]).status,
        200,
        "bob is on hold"
    );
    server.stop().await;
}

/// Behind a reverse proxy: `public_url` names the URLs, the plain listener takes the proxy's
/// requests, and its `X-Forwarded-*` headers count because it is a trusted proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_work_behind_a_reverse_proxy() {
    let server = server(|c| {
        c.http.listen_plain = vec!["127.0.0.1:0".parse().unwrap()];
        c.http.public_url = Some("https://chat.example.com/files".into());
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Raw::online(&server, "alice@localhost", "pw", "a")
        .await
        .unwrap();
    let (put_url, get_url) = urls(
        &slot(
            &mut alice,
            "s",
            "upload.localhost",
            "p.bin",
            5000,
            "application/octet-stream",
        )
        .await,
    );
    assert!(
        get_url.starts_with("https://chat.example.com/files/upload/"),
        "{get_url}"
    );
    let plain = server.http_plain.unwrap();
    // What the proxy would send on: the same path, to the plain listener, with forwarded headers.
    let via_proxy = |url: &str| url.replace("https://chat.example.com", &format!("http://{plain}"));
    let forwarded = [
        "-H",
        "X-Forwarded-Host: chat.example.com",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-For: 198.51.100.7",
    ];
    let src = file(dir.path(), "p.bin", 5000);
    let p = src.to_str().unwrap().to_owned();
    let mut args: Vec<&str> = forwarded.to_vec();
    args.extend(["-T", &p, "-H", "Content-Type: application/octet-stream"]);
    let r = curl(&server, &via_proxy(&put_url), &args);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let g = curl(&server, &via_proxy(&get_url), &forwarded);
    assert_eq!(
        (g.status, g.body == std::fs::read(&src).unwrap()),
        (200, true)
    );
    // Without the forwarded host, the request names a host that is not ours.
    assert_eq!(curl(&server, &via_proxy(&get_url), &[]).status, 421);
    server.stop().await;
}
