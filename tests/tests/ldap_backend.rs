//! The `ldap` account backend against a real OpenLDAP `slapd` on loopback
//! (`postern_tests::slapd`): PLAIN checked by a bind as the user, found by a search with a
//! service account over StartTLS, or named by a DN template over `ldaps://`; the listed
//! accounts exist before their first login and a directory group's members become the
//! members of Postern's group of that name; LDAP filter syntax in a user name stays a
//! literal; an empty password never becomes an anonymous bind; a password changed in the
//! directory refused at once over PLAIN and over SCRAM after `scram_ttl`; a person deleted
//! loses the live session; slapd stopped → `<temporary-auth-failure/>`, then back.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::Duration;

use postern_tests::backend_login::{Login, accounts, config, outage, wait_until};
use postern_tests::process::{postern, run, serve};
use postern_tests::slapd::{GROUPS, PEOPLE, SERVICE_DN, Slapd};

/// A search with the service account over StartTLS, and the accounts listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_backend_with_a_service_account_over_starttls() {
    let mut slapd = Slapd::start(&[
        ("alice", "alice@mail.test", "alice's pw"),
        ("bob", "bob@mail.test", "bob's pw"),
        ("eve", "eve@other.test", "eve's pw"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "ldap",
        &format!(
            "url = \"ldap://localhost:{}\"\nca_file = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\n\
             bind_password_file = \"{}\"\nbase_dn = \"{PEOPLE}\"\n\
             user_filter = \"(&(objectClass=inetOrgPerson)(mail={{address}}))\"\n\
             list_filter = \"(&(objectClass=inetOrgPerson)(mail=*@{{domain}}))\"\n\
             group_filter = \"(objectClass=groupOfNames)\"\ngroup_base_dn = \"{GROUPS}\"\n\
             sync_interval = \"1s\"",
            slapd.ldap_port,
            slapd.cert().display(),
            slapd.service_password_file().display()
        ),
    );
    slapd.add_group("staff", &["alice", "bob", "eve"]);
    // A group of Postern's own is the admin's: the sync leaves it alone.
    postern(&cfg, &["group", "add", "local"], "");
    postern(
        &cfg,
        &["group", "add-member", "local", "alice@mail.test"],
        "",
    );
    let (mut server, addr, problems) = serve(&cfg);
    let login = Login::to(dir.path(), addr);
    let (alice, bob) = ("alice@mail.test", "bob@mail.test");

    wait_until("the directory's accounts listed", || {
        let out = accounts(&cfg);
        out.contains(alice) && out.contains(bob)
    });
    assert!(!accounts(&cfg).contains("eve"), "only mail.test's people");
    // The directory's group, with its members of this domain.
    // (Before the first sync `staff` does not exist: the command fails, prints nothing.)
    let members = |group: &str| {
        String::from_utf8_lossy(&run(&cfg, &["group", "members", group], "").stdout).into_owned()
    };
    wait_until("staff synced", || {
        members("staff") == "alice@mail.test\nbob@mail.test\n"
    });
    assert_eq!(members("local"), "alice@mail.test\n");
    slapd.set_group_members("staff", &["bob"]);
    wait_until("alice left staff", || members("staff") == "bob@mail.test\n");
    assert_eq!(
        members("local"),
        "alice@mail.test\n",
        "the admin's group untouched"
    );

    let scram = login.scram(alice, "alice's pw").await;
    assert!(
        scram.contains("not-authorized"),
        "no SCRAM before a PLAIN login: {scram}"
    );
    assert!(login.plain(alice, "wrong").await.contains("not-authorized"));
    // No anonymous bind in disguise (slapd would answer that with unwillingToPerform).
    let empty = login.plain(alice, "").await;
    assert!(empty.contains("not-authorized"), "empty password: {empty}");
    // Filter syntax in the user name is escaped: unescaped, `*)(mail=*` would make the
    // search match alice's (and bob's) entry.
    for injected in [
        "*)(mail=*@mail.test",
        "*@mail.test",
        "alice)(|(mail=*@mail.test",
    ] {
        let answer = login.plain(injected, "alice's pw").await;
        assert!(answer.contains("not-authorized"), "{injected}: {answer}");
    }
    let ok = login.plain(alice, "alice's pw").await;
    assert!(ok.contains("<success"), "{ok}");
    let scram = login.scram(alice, "alice's pw").await;
    assert!(scram.contains("<success"), "SCRAM after PLAIN: {scram}");

    // Changed in the directory: PLAIN refuses the old one at once, SCRAM after scram_ttl.
    slapd.set_password("alice", "new pw");
    assert!(
        login
            .plain(alice, "alice's pw")
            .await
            .contains("not-authorized")
    );
    tokio::time::sleep(Duration::from_millis(3500)).await; // scram_ttl = 3s
    assert!(
        login
            .scram(alice, "alice's pw")
            .await
            .contains("not-authorized")
    );
    assert!(login.plain(alice, "new pw").await.contains("<success"));

    // Bob deleted: his session closed at the next sync, SCRAM and PLAIN refused.
    assert!(login.plain(bob, "bob's pw").await.contains("<success"));
    let mut session = login.bound(bob, "bob's pw", "desk").await;
    slapd.delete("bob");
    let closed = tokio::time::timeout(Duration::from_secs(15), session.read_to_close())
        .await
        .expect("the session is closed within a few sync intervals")
        .unwrap();
    assert!(closed.contains("<not-authorized"), "{closed}");
    assert!(
        login
            .scram(bob, "bob's pw")
            .await
            .contains("not-authorized")
    );
    assert!(
        login
            .plain(bob, "bob's pw")
            .await
            .contains("not-authorized")
    );
    // A new person appears without a login.
    slapd.add("carol", "carol@mail.test", "carol's pw");
    wait_until("carol listed", || {
        accounts(&cfg).contains("carol@mail.test")
    });

    // slapd down and back.
    outage(&login, &mut slapd, alice, "new pw").await;

    server.kill().unwrap();
    let _ = server.wait();
    let problems = problems.lock().unwrap();
    assert!(
        problems
            .iter()
            .any(|l| l.contains("account backend LDAP ldap://localhost")),
        "the outage is logged: {problems:?}"
    );
}

/// A DN template over ldaps://, no service account, no listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_backend_with_a_dn_template_over_ldaps() {
    let slapd = Slapd::start(&[("alice", "alice@mail.test", "alice's pw")]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "ldap",
        &format!(
            "url = \"ldaps://localhost:{}\"\nca_file = \"{}\"\nbase_dn = \"{PEOPLE}\"\n\
             dn_template = \"uid={{localpart}},{PEOPLE}\"",
            slapd.ldaps_port,
            slapd.cert().display(),
        ),
    );
    let (mut server, addr, _problems) = serve(&cfg);
    let login = Login::to(dir.path(), addr);
    let alice = "alice@mail.test";
    assert!(
        !accounts(&cfg).contains(alice),
        "no listing: not there ahead"
    );
    assert!(login.plain(alice, "wrong").await.contains("not-authorized"));
    let empty = login.plain(alice, "").await;
    assert!(empty.contains("not-authorized"), "empty password: {empty}");
    let ok = login.plain(alice, "alice's pw").await;
    assert!(ok.contains("<success"), "{ok}");
    assert!(accounts(&cfg).contains(alice), "created at its first login");
    assert!(login.scram(alice, "alice's pw").await.contains("<success"));
    server.kill().unwrap();
    let _ = server.wait();
}
