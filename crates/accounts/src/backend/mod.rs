//! External account backends: the organisation's own servers check a domain's passwords.
//!
//! - [`imap`]: a login to the IMAP server (any mail server).
//! - [`dovecot`]: Dovecot's authentication protocol on its auth socket (what Postfix uses
//!   for SMTP AUTH), and its userdb iteration to know which accounts exist.
//! - [`ldap`]: a bind as the user (found by a search with a service account, or a DN
//!   template); a search lists the accounts.
//! - [`sql`]: the mail server's own table; the hash is read and checked here, and a SCRAM
//!   login is honoured only while it is unchanged.
//!
//! [`Backend`] (this file) holds what they share: the refusal of what no mail password
//! contains, the cache of recent refusals (a password flood does not reach the mail
//! server), the time limit on a check, and how long a confirmed password's SCRAM keys are
//! honoured. A check is a [`Confirmed`], `None` for a clear refusal, or [`Unavailable`]
//! for anything else, which the SASL step answers with `<temporary-auth-failure/>`: never a
//! false success.

pub mod dovecot;
pub mod imap;
pub mod ldap;
pub mod sql;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::config::{AccountsConfig, BackendKind, Limits, Username};
use crate::hash_pool::HashPool;
use crate::password;

/// The backend could not give an answer.
#[derive(Debug, thiserror::Error)]
#[error("account backend {target}: {reason}")]
pub struct Unavailable {
    target: String,
    reason: String,
}

impl Unavailable {
    pub(crate) fn new(target: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Unavailable {
            target: target.to_string(),
            reason: reason.into(),
        }
    }
}

/// What asks the organisation's server.
#[derive(Debug)]
enum Kind {
    Imap(imap::ImapBackend),
    Dovecot(dovecot::DovecotBackend),
    Sql(sql::SqlBackend),
    Ldap(ldap::LdapBackend),
}

/// A password the backend took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Confirmed {
    /// For backends that expose the hash: its tag, to tell later whether it changed.
    pub(crate) tag: Option<String>,
}

/// One configured external backend with its limits and its memory of refusals.
#[derive(Debug)]
pub(crate) struct Backend {
    kind: Kind,
    limits: Limits,
    username: Username,
    refused: Mutex<HashMap<(String, [u8; 32]), Instant>>,
    /// The last hash a backend that exposes them returned: an unknown account's password
    /// is checked against it (the result ignored), so that it costs what a known account's
    /// costs in the scheme the backend uses.
    decoy: Mutex<Option<String>>,
}

/// Refusals remembered at most; past it the expired ones go, then all.
const REFUSED_MAX: usize = 10_000;

impl Backend {
    fn new(kind: Kind, limits: Limits, username: Username) -> Backend {
        Backend {
            kind,
            limits,
            username,
            refused: Mutex::new(HashMap::new()),
            decoy: Mutex::new(None),
        }
    }

    /// How long after the backend last confirmed a password its SCRAM keys and FAST tokens
    /// are honoured.
    pub(crate) fn scram_ttl(&self) -> Duration {
        self.limits.scram_ttl
    }

    /// Whether the backend takes `password` for `address` (`localpart@domain`): what it
    /// confirmed, or `None`. Hashes read from the backend are checked on `hashing`.
    pub(crate) async fn check(
        &self,
        address: &str,
        password: &str,
        hashing: &HashPool,
    ) -> Result<Option<Confirmed>, Unavailable> {
        // No mail password holds a line break or a NUL, and no address does: refused here,
        // never sent (each protocol would need them escaped, and some servers answer them
        // with an error rather than a refusal).
        if [address, password]
            .iter()
            .any(|s| s.contains(['\r', '\n', '\0']))
        {
            return Ok(None);
        }
        let key = (
            address.to_owned(),
            Sha256::digest(password.as_bytes()).into(),
        );
        if self.recently_refused(&key) {
            return Ok(None);
        }
        let user = self.username.of(address);
        let timeout = self.limits.timeout;
        let check = async {
            let untagged = |ok: bool| ok.then_some(Confirmed { tag: None });
            match &self.kind {
                Kind::Imap(b) => b.check(user, password).await.map(untagged),
                Kind::Dovecot(b) => b.check(user, password).await.map(untagged),
                // The filter or template chooses the parts of the address it needs.
                Kind::Ldap(b) => b.check(address, password).await.map(untagged),
                Kind::Sql(b) => {
                    let hash = b.hash_of(user).await?;
                    self.verify_hash(hash, password, hashing).await
                }
            }
        };
        let confirmed = tokio::time::timeout(timeout, check)
            .await
            .map_err(|_| Unavailable::new(self, format!("no answer within {timeout:?}")))??;
        if confirmed.is_none() {
            self.remember_refusal(key);
        }
        Ok(confirmed)
    }

    /// Checks `password` against a hash the backend returned. `None` (no such account) is
    /// checked against the last hash the backend returned, or a dummy argon2id one before
    /// there is any, the result ignored: an unknown account takes as long as a known one.
    async fn verify_hash(
        &self,
        hash: Option<String>,
        password: &str,
        hashing: &HashPool,
    ) -> Result<Option<Confirmed>, Unavailable> {
        let stored = match hash.as_deref().map(crate::legacy::normalise) {
            Some(Ok(stored)) => Some(stored),
            Some(Err(e)) => {
                tracing::error!(error = %e, backend = %self, "a password hash from the backend cannot be read: login refused");
                None
            }
            None => None,
        };
        let check = {
            let mut decoy = self
                .decoy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &stored {
                Some(s) => {
                    *decoy = Some(s.clone());
                    Some(s.clone())
                }
                None => decoy.clone(),
            }
        };
        let given = password.to_owned();
        let ok = hashing
            .run(move || match &check {
                Some(h) => crate::legacy::verify(h, &given),
                None => password::verify(password::DUMMY_HASH, &given),
            })
            .await
            .map_err(|e| Unavailable::new(self, e.to_string()))?;
        Ok((ok && stored.is_some()).then(|| Confirmed {
            tag: hash.as_deref().map(sql::tag),
        }))
    }

    /// Whether what the backend confirmed (`tag`) still stands, for the backends that
    /// expose the hash (always true for the others: their bound is `scram_ttl`).
    pub(crate) async fn still_stands(
        &self,
        address: &str,
        tag: Option<&str>,
    ) -> Result<bool, Unavailable> {
        let Kind::Sql(b) = &self.kind else {
            return Ok(true);
        };
        let timeout = self.limits.timeout;
        let hash = tokio::time::timeout(timeout, b.hash_of(self.username.of(address)))
            .await
            .map_err(|_| Unavailable::new(self, format!("no answer within {timeout:?}")))??;
        Ok(hash.is_some_and(|h| tag == Some(sql::tag(&h).as_str())))
    }

    /// Every account the backend knows (addresses, lowercase), for the backends that can
    /// list them; `None` for the others.
    pub(crate) async fn accounts(&self, domain: &str) -> Option<Result<Vec<String>, Unavailable>> {
        let timeout = self.limits.timeout.max(Duration::from_secs(60));
        let listing = match &self.kind {
            Kind::Imap(_) => return None,
            Kind::Dovecot(b) => tokio::time::timeout(timeout, b.list()?).await,
            Kind::Sql(b) => tokio::time::timeout(timeout, b.list(domain)?).await,
            Kind::Ldap(b) => tokio::time::timeout(timeout, b.list(domain)?).await,
        };
        let users = match listing {
            Ok(Ok(users)) => users,
            Ok(Err(e)) => return Some(Err(e)),
            Err(_) => {
                return Some(Err(Unavailable::new(
                    self,
                    format!("listing took over {timeout:?}"),
                )));
            }
        };
        Some(Ok(users
            .into_iter()
            .filter_map(|u| self.username.address_in(&u, domain))
            .collect()))
    }

    /// The directory's groups with their members in `domain`, for the backends that have
    /// them (LDAP with `group_filter`); `None` for the others.
    pub(crate) async fn groups(
        &self,
        domain: &str,
    ) -> Option<Result<Vec<ldap::Group>, Unavailable>> {
        let Kind::Ldap(b) = &self.kind else {
            return None;
        };
        let timeout = self.limits.timeout.max(Duration::from_secs(60));
        Some(
            match tokio::time::timeout(timeout, b.groups(domain)?).await {
                Ok(groups) => groups,
                Err(_) => Err(Unavailable::new(
                    self,
                    format!("listing groups took over {timeout:?}"),
                )),
            },
        )
    }

    /// How often [`Backend::accounts`] is read again, for the backends that list.
    pub(crate) fn sync_interval(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Imap(_) => None,
            Kind::Dovecot(b) => b.sync_interval(),
            Kind::Sql(b) => b.sync_interval(),
            Kind::Ldap(b) => b.sync_interval(),
        }
    }

    fn recently_refused(&self, key: &(String, [u8; 32])) -> bool {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        refused
            .get(key)
            .is_some_and(|at| at.elapsed() < self.limits.failure_cache)
    }

    fn remember_refusal(&self, key: (String, [u8; 32])) {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if refused.len() >= REFUSED_MAX {
            let cache = self.limits.failure_cache;
            refused.retain(|_, at| at.elapsed() < cache);
            if refused.len() >= REFUSED_MAX {
                refused.clear();
            }
        }
        refused.insert(key, Instant::now());
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Imap(b) => b.fmt(f),
            Kind::Dovecot(b) => b.fmt(f),
            Kind::Sql(b) => b.fmt(f),
            Kind::Ldap(b) => b.fmt(f),
        }
    }
}

/// The external backends `config` names, one per kind in use.
#[derive(Debug, Default)]
pub(crate) struct Backends {
    config: AccountsConfig,
    imap: Option<Backend>,
    dovecot: Option<Backend>,
    sql: Option<Backend>,
    ldap: Option<Backend>,
}

impl Backends {
    pub(crate) fn new(config: &AccountsConfig) -> Result<Backends, String> {
        let imap = config.imap.as_ref().map(|c| {
            let kind = Kind::Imap(imap::ImapBackend::new(c)?);
            Ok::<_, String>(Backend::new(kind, c.limits(), c.username))
        });
        let dovecot = config.dovecot.as_ref().map(|c| {
            let kind = Kind::Dovecot(dovecot::DovecotBackend::new(c)?);
            Ok::<_, String>(Backend::new(kind, c.limits(), c.username))
        });
        let sql = config.sql.as_ref().map(|c| {
            let kind = Kind::Sql(sql::SqlBackend::new(c)?);
            Ok::<_, String>(Backend::new(kind, c.limits(), c.username))
        });
        // Listed LDAP addresses come from `address_attribute`: whole addresses.
        let ldap = config.ldap.as_ref().map(|c| {
            let kind = Kind::Ldap(ldap::LdapBackend::new(c)?);
            Ok::<_, String>(Backend::new(kind, c.limits(), Username::Address))
        });
        let (imap, dovecot, sql, ldap) = (
            imap.transpose()?,
            dovecot.transpose()?,
            sql.transpose()?,
            ldap.transpose()?,
        );
        Ok(Backends {
            config: config.clone(),
            imap,
            dovecot,
            sql,
            ldap,
        })
    }

    /// The backend that checks `domain`'s passwords, if one outside Postern does.
    pub(crate) fn of(&self, domain: &str) -> Option<&Backend> {
        match self.config.backend_of(domain) {
            BackendKind::Internal => None,
            BackendKind::Imap => self.imap.as_ref(),
            BackendKind::Dovecot => self.dovecot.as_ref(),
            BackendKind::Sql => self.sql.as_ref(),
            BackendKind::Ldap => self.ldap.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DovecotConfig;

    /// What no mail password holds is refused before any backend is asked: here one that
    /// cannot be reached, which would otherwise answer `Unavailable`.
    #[tokio::test]
    async fn line_breaks_and_nuls_never_reach_a_backend() {
        let cfg: DovecotConfig =
            toml::from_str("auth_socket = \"/nonexistent/auth-client\"").expect("config");
        let backend = Backend::new(
            Kind::Dovecot(dovecot::DovecotBackend::new(&cfg).expect("backend")),
            cfg.limits(),
            cfg.username,
        );
        let hashing = HashPool::new();
        for (address, password) in [
            ("a@x.test", "pw\0AUTH"),
            ("a@x.test", "pw\nAUTH\t2"),
            ("a@x.test", "pw\r"),
            ("a\n@x.test", "pw"),
        ] {
            let answer = backend.check(address, password, &hashing).await;
            assert!(
                matches!(answer, Ok(None)),
                "{address:?} {password:?}: {answer:?}"
            );
        }
        // And an ordinary one does try (and finds no socket).
        assert!(backend.check("a@x.test", "pw", &hashing).await.is_err());
    }
}
