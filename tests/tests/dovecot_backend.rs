//! The `dovecot` account backend against a real Dovecot on loopback
//! (`postern_tests::dovecot`): PLAIN checked on Dovecot's auth socket (Unix and TCP), as
//! Postfix checks SMTP AUTH; with the auth-userdb socket, the accounts Dovecot lists exist
//! before their first login, and one removed from Dovecot loses SCRAM and its live session
//! within the sync interval; a password changed in Dovecot refused at once over PLAIN and
//! over SCRAM once `scram_ttl` has passed; Dovecot stopped → `<temporary-auth-failure/>`,
//! and logins again once it is back.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::Duration;

use postern_tests::backend_login::{Login, accounts, config, outage, wait_until};
use postern_tests::dovecot::Dovecot;
use postern_tests::process::serve;

/// The auth socket with the userdb: accounts listed ahead, removal closes the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_backend_on_the_auth_socket_with_its_userdb() {
    let mut dovecot = Dovecot::start(&[
        ("alice@mail.test", "alice's mail pw"),
        ("bob@mail.test", "bob's mail pw"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "dovecot",
        &format!(
            "auth_socket = \"{}\"\nuserdb_socket = \"{}\"\nsync_interval = \"1s\"",
            dovecot.auth_socket().display(),
            dovecot.userdb_socket().display()
        ),
    );
    let (mut server, addr, problems) = serve(&cfg);
    let login = Login::to(dir.path(), addr);
    let (alice, bob) = ("alice@mail.test", "bob@mail.test");

    // Both exist before any login (offline messages and rosters can reach them) ...
    wait_until("Dovecot's users listed", || {
        let out = accounts(&cfg);
        out.contains(alice) && out.contains(bob)
    });
    // ... but SCRAM has no confirmed password yet; PLAIN asks Dovecot.
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(scram.contains("not-authorized"), "{scram}");
    assert!(login.plain(alice, "wrong").await.contains("not-authorized"));
    // Dovecot's protocol syntax in a password stays data (base64 in `resp=`); a line
    // break is refused before Dovecot.
    let injected = login
        .plain(alice, "x\tresp=AGFsaWNlAHg=\nAUTH\t9\tPLAIN")
        .await;
    assert!(injected.contains("not-authorized"), "{injected}");
    let tabbed = login.plain(alice, "x\tsecured\tresp=AA==").await;
    assert!(tabbed.contains("not-authorized"), "{tabbed}");
    // A NUL after the right password: SASL PLAIN's own syntax refuses it (the backend's
    // refusal of NULs is a unit test, backend/mod.rs).
    let nul = login.plain(alice, "alice's mail pw\0x").await;
    assert!(nul.contains("<failure"), "{nul}");
    // A mailbox the passdb marks nologin (Dovecot's way to disable one with a reason):
    // Dovecot's auth says OK, its login processes would refuse; so does Postern.
    dovecot.set_password_with("dora@mail.test", "dora pw", "nologin reason=moved");
    let nologin = login.plain("dora@mail.test", "dora pw").await;
    assert!(nologin.contains("not-authorized"), "nologin: {nologin}");
    let first = login.plain(alice, "alice's mail pw").await;
    assert!(first.contains("<success"), "{first}");
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(scram.contains("<success"), "SCRAM after PLAIN: {scram}");
    assert!(login.plain(bob, "bob's mail pw").await.contains("<success"));

    // Changed in Dovecot: PLAIN refuses the old one at once, SCRAM after scram_ttl.
    dovecot.set_password(alice, "new pw");
    let old = login.plain(alice, "alice's mail pw").await;
    assert!(old.contains("not-authorized"), "{old}");
    tokio::time::sleep(Duration::from_millis(3500)).await; // scram_ttl = 3s
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(scram.contains("not-authorized"), "{scram}");
    assert!(login.plain(alice, "new pw").await.contains("<success"));

    // Bob leaves the organisation: his live session is closed at the next sync, SCRAM
    // (confirmed a moment ago) stops working, PLAIN is refused by Dovecot.
    assert!(login.plain(bob, "bob's mail pw").await.contains("<success"));
    let mut session = login.bound(bob, "bob's mail pw", "desk").await;
    dovecot.remove_user(bob, "bob's mail pw");
    let closed = tokio::time::timeout(Duration::from_secs(15), session.read_to_close())
        .await
        .expect("the session is closed within a few sync intervals")
        .unwrap();
    assert!(closed.contains("<not-authorized"), "{closed}");
    let scram = login.scram(bob, "bob's mail pw").await;
    assert!(
        scram.contains("not-authorized"),
        "SCRAM after removal: {scram}"
    );
    assert!(
        login
            .plain(bob, "bob's mail pw")
            .await
            .contains("not-authorized")
    );
    assert!(accounts(&cfg).contains(bob), "the row (and its data) stays");

    // A new mailbox appears without a login.
    dovecot.set_password("carol@mail.test", "carol pw");
    wait_until("a new Dovecot user listed", || {
        accounts(&cfg).contains("carol@mail.test")
    });

    // Dovecot down and back.
    outage(&login, &mut dovecot, alice, "new pw").await;

    server.kill().unwrap();
    let _ = server.wait();
    let problems = problems.lock().unwrap();
    assert!(
        problems
            .iter()
            .any(|l| l.contains("account backend Dovecot auth")),
        "the outage is logged: {problems:?}"
    );
}

/// The auth service over TCP (`inet:`), no userdb: accounts at their first login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_backend_over_tcp() {
    let mut dovecot = Dovecot::start(&[("alice@mail.test", "alice's mail pw")]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "dovecot",
        &format!("auth_socket = \"inet:127.0.0.1:{}\"", dovecot.auth_port),
    );
    let (mut server, addr, _problems) = serve(&cfg);
    let login = Login::to(dir.path(), addr);
    let alice = "alice@mail.test";
    assert!(
        !accounts(&cfg).contains(alice),
        "no userdb: not listed ahead"
    );
    assert!(login.plain(alice, "wrong").await.contains("not-authorized"));
    // Several logins on the kept connections, then one after Dovecot restarted (the kept
    // ones are dead: a new one is opened).
    for _ in 0..3 {
        let ok = login.plain(alice, "alice's mail pw").await;
        assert!(ok.contains("<success"), "{ok}");
    }
    assert!(accounts(&cfg).contains(alice), "created at its first login");
    dovecot.restart();
    let ok = login.plain(alice, "alice's mail pw").await;
    assert!(ok.contains("<success"), "after Dovecot restarted: {ok}");
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(scram.contains("<success"), "{scram}");
    dovecot.stop();
    let down = login.plain(alice, "alice's mail pw").await;
    assert!(down.contains("temporary-auth-failure"), "{down}");
    server.kill().unwrap();
    let _ = server.wait();
}
