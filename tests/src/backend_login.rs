//! Logins against the real binary for the account-backend tests (`imap_backend.rs`,
//! `dovecot_backend.rs`): each returns the server's answer, so a test asserts success,
//! `not-authorized` or `temporary-auth-failure`.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::net::SocketAddr;
use std::sync::Arc;

use crate::scram::{Cb, Client as Scram, Hash};
use crate::{Raw, attr};

const PHONE: &str = "9c3f3e2a-1111-4c1a-8f00-0000000000ab";

pub struct Login {
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Login {
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
