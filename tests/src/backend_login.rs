//! What the account-backend tests (`{imap,dovecot,sql,ldap}_backend.rs`) share: the
//! server's config for one domain `mail.test` with a backend, the accounts it lists, polling
//! for what the server's sync does, and logins against the real binary (each returns the
//! server's answer, so a test asserts success, `not-authorized` or
//! `temporary-auth-failure`).

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::process::postern;
use crate::scram::{Cb, Client as Scram, Hash};
use crate::{Raw, attr, trusting};

/// Writes `dir/postern.toml`: the domain `mail.test`, whose passwords `backend` checks with
/// `[accounts.BACKEND]` = `section` (plus short timeouts: `timeout` 5s, `scram_ttl` 3s,
/// `failure_cache` 1s, unless `section` sets them), STARTTLS on a free port, no gateway.
pub fn config(dir: &Path, backend: &str, section: &str) -> PathBuf {
    let mut section = section.to_owned();
    for (key, value) in [
        ("timeout", "5s"),
        ("scram_ttl", "3s"),
        ("failure_cache", "1s"),
    ] {
        if !section.lines().any(|l| l.starts_with(&format!("{key} ="))) {
            section.push_str(&format!("\n{key} = \"{value}\""));
        }
    }
    let path = dir.join("postern.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{data}\"\n[[domain]]\nname = \"mail.test\"\n\
             [accounts]\nbackend = \"{backend}\"\n[accounts.{backend}]\n{section}\n\
             [xmpp]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = []\n[gateway]\nenabled = false\n[http]\nlisten = []\n[xmpp.proxy65]\nenabled = false\n",
            data = dir.join("data").display(),
        ),
    )
    .unwrap();
    path
}

/// `postern account list mail.test`.
pub fn accounts(cfg: &Path) -> String {
    postern(cfg, &["account", "list", "mail.test"], "")
}

/// Polls until `check` holds (the server's sync runs on its own clock), at most 20 s.
pub fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const PHONE: &str = "9c3f3e2a-1111-4c1a-8f00-0000000000ab";

pub struct Login {
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
}

/// A backend server a test can stop and start again (Dovecot, slapd).
pub trait Outage {
    fn stop(&mut self);
    fn restart(&mut self);
}

impl Outage for crate::dovecot::Dovecot {
    fn stop(&mut self) {
        crate::dovecot::Dovecot::stop(self);
    }
    fn restart(&mut self) {
        crate::dovecot::Dovecot::restart(self);
    }
}

impl Outage for crate::slapd::Slapd {
    fn stop(&mut self) {
        crate::slapd::Slapd::stop(self);
    }
    fn restart(&mut self) {
        crate::slapd::Slapd::restart(self);
    }
}

/// The backend down, with `jid`'s password `pw` confirmed just before and a session of
/// its open: SCRAM within `scram_ttl` still works, PLAIN gets `temporary-auth-failure` (no
/// answer is no refusal), the failed listings of a second-long sync interval cut no
/// session; back up, PLAIN works again.
pub async fn outage(login: &Login, backend: &mut impl Outage, jid: &str, pw: &str) {
    let ok = login.plain(jid, pw).await;
    assert!(ok.contains("<success"), "{ok}");
    let mut held = login.bound(jid, pw, "laptop").await;
    backend.stop();
    let scram = login.scram(jid, pw).await;
    assert!(
        scram.contains("<success"),
        "SCRAM while the backend is down: {scram}"
    );
    let down = login.plain(jid, pw).await;
    assert!(down.contains("temporary-auth-failure"), "{down}");
    std::thread::sleep(Duration::from_millis(1500));
    let alive = held.sync("after-failed-sync").await.unwrap();
    assert!(
        alive.contains("after-failed-sync"),
        "the session survived: {alive}"
    );
    backend.restart();
    let back = login.plain(jid, pw).await;
    assert!(
        back.contains("<success"),
        "after the backend came back: {back}"
    );
}

impl Login {
    /// Logins to the server `config` started with its data in `dir`, trusting its
    /// `mail.test` certificate.
    pub fn to(dir: &Path, addr: SocketAddr) -> Login {
        Login {
            addr,
            tls: trusting(
                CertificateDer::from_pem_file(dir.join("data/certs/mail.test.crt")).unwrap(),
            ),
        }
    }

    /// Logged in with PLAIN and bound to `resource`.
    pub async fn bound(&self, jid: &str, pw: &str, resource: &str) -> Raw {
        let raw = Raw::connect(self.addr).await.unwrap();
        Raw::login_trusting(raw, self.tls.clone(), jid, pw, resource)
            .await
            .unwrap()
    }

    pub async fn secured(&self, domain: &str) -> Raw {
        let mut raw = Raw::connect(self.addr).await.unwrap();
        raw.starttls(domain, self.tls.clone()).await.unwrap();
        raw.open(domain).await.unwrap();
        raw.read_until("</stream:features>").await.unwrap();
        raw
    }

    pub async fn plain(&self, jid: &str, pw: &str) -> String {
        let domain = jid.split('@').nth(1).unwrap();
        self.secured(domain).await.plain(jid, pw).await.unwrap()
    }

    /// A SASL2 PLAIN login of a phone that asks for a FAST token; returns the token.
    pub async fn fast_token(&self, jid: &str, pw: &str) -> String {
        let domain = jid.split('@').nth(1).unwrap();
        let success = self
            .secured(domain)
            .await
            .request_token(jid, pw, PHONE)
            .await
            .unwrap();
        let token = &success[success.find("<token").expect("a token")..];
        attr(token, "token").unwrap()
    }

    /// An HT-SHA-256-NONE login of the phone with `token`; the answer.
    pub async fn fast(&self, jid: &str, token: &str) -> String {
        let domain = jid.split('@').nth(1).unwrap();
        self.secured(domain)
            .await
            .fast(jid, PHONE, token, "")
            .await
            .unwrap()
    }

    pub async fn scram(&self, jid: &str, pw: &str) -> String {
        let (user, domain) = jid.split_once('@').unwrap();
        let mut raw = self.secured(domain).await;
        raw.scram(&mut Scram::new(Hash::Sha256, user, pw, Cb::None))
            .await
            .unwrap()
    }
}
