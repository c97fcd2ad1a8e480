//! Keeping the accounts of a domain whose backend can list them (Dovecot's userdb, an SQL
//! `list_query`) in step
//! with it: an account the backend knows exists here before its first login (offline
//! messages, rosters and the gateway see it), and one that left the backend loses what
//! would let it in without asking the backend (SCRAM keys and FAST tokens, by clearing
//! its confirmation); the caller closes its live sessions.
//!
//! Rows stay when an account leaves the backend (its roster, archive and offline messages
//! are the admin's to delete with `postern account del`): a mailbox removed by mistake and
//! restored comes back whole.

use std::collections::HashSet;
use std::time::Duration;

use crate::{AccountError, Accounts, new_row, parse_address, password};

/// What one sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Accounts the backend listed.
    pub listed: usize,
    /// Accounts created here (addresses).
    pub added: Vec<String>,
    /// Accounts the backend no longer lists that it had confirmed: their live sessions
    /// are to be closed.
    pub gone: Vec<String>,
}

impl Accounts {
    /// How often `domain`'s accounts are read from its backend; `None` when its backend
    /// does not list accounts (or is Postern's own store).
    pub fn sync_interval(&self, domain: &str) -> Option<Duration> {
        self.backends.of(domain)?.sync_interval()
    }

    /// Reads `domain`'s accounts from its backend and brings the store in step. `Ok(None)`
    /// when the backend does not list accounts. An empty listing while accounts here are
    /// confirmed is refused as an error: a broken userdb must not look like everyone left.
    pub async fn sync(&self, domain: &str) -> Result<Option<Synced>, AccountError> {
        let Some(external) = self.backends.of(domain) else {
            return Ok(None);
        };
        let Some(listed) = external.accounts(domain).await else {
            return Ok(None);
        };
        let listed: HashSet<String> = listed?
            .into_iter()
            .filter(|a| parse_address(a.as_str()).is_ok())
            .collect();
        let here = self.store.account_list(Some(domain)).await?;
        let mut synced = Synced {
            listed: listed.len(),
            ..Synced::default()
        };
        let mut confirmed_here = Vec::new();
        for row in &here {
            let address = format!("{}@{}", row.localpart, row.domain);
            if listed.contains(&address) || row.disabled {
                continue;
            }
            let confirmed = self
                .store
                .account_confirmation(&row.localpart, &row.domain)
                .await?
                .unwrap_or_default();
            if confirmed.at_ms > 0 {
                confirmed_here.push((row.localpart.clone(), address));
            }
        }
        if listed.is_empty() && !confirmed_here.is_empty() {
            return Err(AccountError::Config(format!(
                "{external} lists no account of {domain}, while {} here were confirmed by it: \
                 nothing changed (check its userdb)",
                confirmed_here.len()
            )));
        }
        for (localpart, address) in confirmed_here {
            self.store
                .account_set_confirmation(&localpart, domain, &Default::default())
                .await?;
            tracing::info!(account = %address, backend = %external, "account no longer listed by its backend: SCRAM and FAST refused, sessions closed");
            synced.gone.push(address);
        }
        let known: HashSet<String> = here
            .iter()
            .map(|r| format!("{}@{}", r.localpart, r.domain))
            .collect();
        for address in listed.difference(&known) {
            let addr = parse_address(address.as_str())?;
            // A hash no password matches and no confirmation: SCRAM and FAST fail until a
            // PLAIN login the backend confirms sets real credentials.
            let row = new_row(&addr, password::imported(password::DUMMY_HASH));
            if self.store.account_insert(&row).await? {
                synced.added.push(address.clone());
            }
        }
        synced.added.sort();
        if !synced.added.is_empty() {
            tracing::info!(domain, backend = %external, added = synced.added.len(), "accounts known to the backend created");
        }
        Ok(Some(synced))
    }
}
