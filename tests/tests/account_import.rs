//! `postern account import` of a Dovecot passwd-file whose hashes Dovecot itself made
//! (`doveadm pw`, Debian's dovecot-core, installed by `scripts/deps test`), then logins with
//! the real binary: PLAIN checks each scheme natively and replaces the hash with Postern's
//! own, so SCRAM works from then on; 10,000 lines import and log in.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::path::Path;
use std::sync::Arc;

use postern_tests::dovecot::doveadm_pw as doveadm;
use postern_tests::process::{postern, run, serve};
use postern_tests::scram::{Cb, Client as Scram, Hash};
use postern_tests::{Raw, trusting};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn config(dir: &Path, domain: &str) -> std::path::PathBuf {
    let config = dir.join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"{domain}\"\n\
             [xmpp]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = []\n[gateway]\nenabled = false\n[http]\nlisten = []\n[xmpp.proxy65]\nenabled = false\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

/// A secured stream with its features read, ready for SASL.
async fn secured(addr: std::net::SocketAddr, tls: &Arc<rustls::ClientConfig>, domain: &str) -> Raw {
    let mut raw = Raw::connect(addr).await.unwrap();
    raw.starttls(domain, tls.clone()).await.unwrap();
    raw.open(domain).await.unwrap();
    raw.read_until("</stream:features>").await.unwrap();
    raw
}

async fn plain(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    jid: &str,
    pw: &str,
) -> String {
    let domain = jid.split('@').nth(1).unwrap();
    secured(addr, tls, domain)
        .await
        .plain(jid, pw)
        .await
        .unwrap()
}

async fn scram(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    jid: &str,
    pw: &str,
) -> String {
    let (user, domain) = jid.split_once('@').unwrap();
    let mut raw = secured(addr, tls, domain).await;
    raw.scram(&mut Scram::new(Hash::Sha256, user, pw, Cb::None))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_hashes_log_in_and_are_upgraded_to_scram() {
    let dir = tempfile::tempdir().unwrap();
    let d = "mail.test";
    let cfg = config(dir.path(), d);
    let schemes = [
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "BLF-CRYPT",
        "ARGON2ID",
        "SSHA512",
    ];
    let mut file = String::from("# users moved from Dovecot\n");
    let mut users = Vec::new();
    for (i, scheme) in schemes.iter().enumerate() {
        let pw = format!("pw {scheme} ünï");
        file.push_str(&format!(
            "u{i}@{d}:{}:1000:1000::/home/u{i}::\n",
            doveadm(scheme, &pw)
        ));
        users.push((format!("u{i}@{d}"), pw));
    }
    // A bare crypt string and a local part without its domain (`--domain`), as a
    // per-domain passwd-file has them.
    let bare = doveadm("SHA512-CRYPT", "bare pw");
    file.push_str(&format!(
        "bare:{}\n",
        bare.trim_start_matches("{SHA512-CRYPT}")
    ));
    users.push((format!("bare@{d}"), "bare pw".into()));
    file.push_str(&format!("clear@{d}:{{PLAIN}}in the clear\n"));
    // Refused, with their line numbers: a scheme we do not read, a domain not served.
    file.push_str(&format!("md5@{d}:{}\n", doveadm("MD5-CRYPT", "x")));
    file.push_str("x@elsewhere.test:{PLAIN}x\n");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, &file).unwrap();

    let out = run(
        &cfg,
        &["account", "import", passwd.to_str().unwrap(), "--domain", d],
        "",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "refused lines fail the run: {stdout}"
    );
    assert!(
        stdout.contains("imported 7 accounts (6 with their password hash")
            && stdout.contains("2 lines refused"),
        "{stdout}"
    );
    assert!(
        stderr.contains("passwd:9: unsupported password scheme {MD5-CRYPT}")
            && stderr.contains("passwd:10: domain `elsewhere.test` is not served"),
        "{stderr}"
    );
    // Again: nothing is replaced.
    let again = dir.path().join("again.passwd");
    std::fs::write(&again, format!("u0@{d}:{{PLAIN}}something else\n")).unwrap();
    let out = postern(&cfg, &["account", "import", again.to_str().unwrap()], "");
    assert!(
        out.contains("imported 0 accounts") && out.contains("1 already existed"),
        "{out}"
    );

    let (mut server, addr, problems) = serve(&cfg);
    let tls = trusting(
        CertificateDer::from_pem_file(dir.path().join("data/certs").join(format!("{d}.crt")))
            .unwrap(),
    );
    let (u0, pw0) = &users[0];
    // Before its first login an imported hash has no SCRAM keys; a clear one has.
    assert!(scram(addr, &tls, u0, pw0).await.contains("not-authorized"));
    let clear = scram(addr, &tls, &format!("clear@{d}"), "in the clear").await;
    assert!(clear.contains("<success"), "{clear}");
    assert!(
        plain(addr, &tls, u0, "not it")
            .await
            .contains("not-authorized")
    );
    for (jid, pw) in &users {
        let answer = plain(addr, &tls, jid, pw).await;
        assert!(answer.contains("<success"), "{jid}: {answer}");
    }
    // Upgraded: SCRAM now, and PLAIN still.
    for (jid, pw) in &users {
        let answer = scram(addr, &tls, jid, pw).await;
        assert!(
            answer.contains("<success"),
            "{jid} over SCRAM after PLAIN: {answer}"
        );
    }
    assert!(plain(addr, &tls, u0, pw0).await.contains("<success"));
    let out = postern(&cfg, &["account", "list"], "");
    assert!(
        out.contains(&format!("bare@{d}")) && !out.contains("md5@"),
        "{out}"
    );
    server.kill().unwrap();
    let _ = server.wait();
    let problems = problems.lock().unwrap();
    assert!(
        !problems.iter().any(|l| l.contains("upgrading an imported")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_passwd_file_lines_import_and_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = "big.test";
    let cfg = config(dir.path(), d);
    let hash = doveadm("SHA512-CRYPT", "shared pw");
    let file: String = (0..10_000)
        .map(|i| format!("user{i}@{d}:{hash}:5000:5000::/var/mail/{i}::\n"))
        .collect();
    let passwd = dir.path().join("users.passwd");
    std::fs::write(&passwd, file).unwrap();
    let t = std::time::Instant::now();
    let out = postern(&cfg, &["account", "import", passwd.to_str().unwrap()], "");
    eprintln!(
        "imported 10,000 lines in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        out.contains("imported 10000 accounts (10000 with their password hash")
            && out.contains("0 lines refused"),
        "{out}"
    );
    let (mut server, addr, _) = serve(&cfg);
    let tls = trusting(
        CertificateDer::from_pem_file(dir.path().join("data/certs").join(format!("{d}.crt")))
            .unwrap(),
    );
    for i in [0, 4_999, 9_999] {
        let answer = plain(addr, &tls, &format!("user{i}@{d}"), "shared pw").await;
        assert!(answer.contains("<success"), "user{i}: {answer}");
    }
    server.kill().unwrap();
    let _ = server.wait();
}
