//! The `imap` account backend against a real Dovecot on loopback (`postern_tests::dovecot`):
//! PLAIN checked by Dovecot over implicit TLS and over STARTTLS, the account created at its
//! first login, SCRAM-SHA-256 from then on; a wrong password refused; a password changed in
//! Dovecot refused at once over PLAIN and over SCRAM once `scram_ttl` has passed; Dovecot
//! stopped → `<temporary-auth-failure/>`, and logins again once it is back.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::path::Path;
use std::time::Duration;

use postern_tests::backend_login::Login;
use postern_tests::dovecot::Dovecot;
use postern_tests::process::{postern, serve};
use postern_tests::trusting;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn config(dir: &Path, url: &str, ca: &Path) -> std::path::PathBuf {
    let config = dir.join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n[[domain]]\nname = \"mail.test\"\n[[domain]]\nname = \"own.test\"\n\
             [accounts]\nbackend = \"internal\"\nby_domain = {{ \"mail.test\" = \"imap\" }}\n\
             [accounts.imap]\nurl = \"{url}\"\nca_file = \"{ca}\"\ntimeout = \"5s\"\n\
             scram_ttl = \"3s\"\nfailure_cache = \"1s\"\n\
             [xmpp]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = []\n[gateway]\nenabled = false\n[http]\nlisten = []\n[xmpp.proxy65]\nenabled = false\n",
            data = dir.join("data").display(),
            ca = ca.display(),
        ),
    )
    .unwrap();
    config
}

async fn scenario(starttls: bool) {
    let mut dovecot = Dovecot::start(&[("alice@mail.test", "alice's mail pw")]);
    let dir = tempfile::tempdir().unwrap();
    let url = if starttls {
        format!("imap://localhost:{}", dovecot.imap_port)
    } else {
        format!("imaps://localhost:{}", dovecot.imaps_port)
    };
    let cfg = config(dir.path(), &url, &dovecot.cert());
    // own.test keeps its passwords here.
    postern(
        &cfg,
        &["account", "add", "bob@own.test", "--password-stdin"],
        "bob pw\n",
    );
    let (mut server, addr, problems) = serve(&cfg);
    let tls = |d: &str| {
        trusting(
            CertificateDer::from_pem_file(dir.path().join("data/certs").join(format!("{d}.crt")))
                .unwrap(),
        )
    };
    let login = Login {
        addr,
        tls: tls("mail.test"),
    };
    let alice = "alice@mail.test";

    // Unknown here before its first login: SCRAM has nothing; PLAIN asks Dovecot.
    assert!(
        login
            .scram(alice, "alice's mail pw")
            .await
            .contains("not-authorized")
    );
    assert!(login.plain(alice, "wrong").await.contains("not-authorized"));
    // IMAP syntax in a password never becomes a second command: one with a line break is
    // refused before Dovecot, the rest goes there as data (base64 in AUTHENTICATE PLAIN).
    let injected = login
        .plain(
            alice,
            "x\" {5}\r\na2 LOGIN alice@mail.test \"alice's mail pw\"",
        )
        .await;
    assert!(injected.contains("not-authorized"), "{injected}");
    let quoted = login.plain(alice, "x\" {5} a2 LOGOUT \\").await;
    assert!(quoted.contains("not-authorized"), "{quoted}");
    let first = login.plain(alice, "alice's mail pw").await;
    assert!(first.contains("<success"), "{first}");
    let out = postern(&cfg, &["account", "list", "mail.test"], "");
    assert!(out.contains(alice), "created at its first login: {out}");
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(scram.contains("<success"), "SCRAM after PLAIN: {scram}");
    // A FAST token (XEP-0484) of a phone, good while the password is confirmed.
    let token = login.fast_token(alice, "alice's mail pw").await;
    assert!(login.fast(alice, &token).await.contains("<success"));
    // The internal domain next door is untouched.
    let own = Login {
        addr,
        tls: tls("own.test"),
    };
    assert!(
        own.plain("bob@own.test", "bob pw")
            .await
            .contains("<success")
    );

    // Changed on the mail server: PLAIN refuses the old one at once (a new pair, not in
    // the failure cache), SCRAM once scram_ttl has passed since the last confirmation.
    dovecot.set_password(alice, "new pw");
    let old = login.plain(alice, "alice's mail pw").await;
    assert!(old.contains("not-authorized"), "{old}");
    tokio::time::sleep(Duration::from_millis(3500)).await; // scram_ttl = 3s
    assert!(
        login
            .scram(alice, "alice's mail pw")
            .await
            .contains("not-authorized")
    );
    let fast = login.fast(alice, &token).await;
    assert!(
        fast.contains("not-authorized"),
        "FAST past scram_ttl: {fast}"
    );
    assert!(login.plain(alice, "new pw").await.contains("<success"));
    assert!(login.scram(alice, "new pw").await.contains("<success"));
    let fast = login.fast(alice, &token).await;
    assert!(
        fast.contains("not-authorized"),
        "the new password, confirmed, revoked the phone's old token: {fast}"
    );

    // Dovecot down: SCRAM within its ttl works (confirmed just before); PLAIN can get no
    // answer, which is not a refusal.
    assert!(login.plain(alice, "new pw").await.contains("<success"));
    dovecot.stop();
    let scram = login.scram(alice, "new pw").await;
    assert!(
        scram.contains("<success"),
        "SCRAM while Dovecot is down: {scram}"
    );
    let down = login.plain(alice, "new pw").await;
    assert!(down.contains("temporary-auth-failure"), "{down}");
    dovecot.restart();
    assert!(login.plain(alice, "new pw").await.contains("<success"));

    server.kill().unwrap();
    let _ = server.wait();
    let problems = problems.lock().unwrap();
    assert!(
        problems.iter().any(|l| l.contains("account backend IMAP")),
        "the outage is logged: {problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_backend_over_implicit_tls() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_backend_over_starttls() {
    scenario(true).await;
}
