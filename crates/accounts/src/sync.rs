//! Keeping the accounts of a domain whose backend can list them (Dovecot's userdb, an SQL
//! `list_query`) in step
//! with it: an account the backend knows exists here before its first login (offline
//! messages, rosters and the gateway see it), and one that left the backend loses what
//! would let it in without asking the backend (SCRAM keys and FAST tokens, by clearing
//! its confirmation); the caller closes its live sessions.
//!
//! An LDAP backend with `group_filter` also brings Postern's groups of the same names in
//! step: their members in the domain are the directory's.
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
    /// Group memberships added and removed (directory groups).
    pub members_added: usize,
    pub members_removed: usize,
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
        if let Some(groups) = external.groups(domain).await {
            self.sync_groups(domain, groups?, &mut synced).await?;
        }
        if !synced.added.is_empty() {
            tracing::info!(domain, backend = %external, added = synced.added.len(), "accounts known to the backend created");
        }
        Ok(Some(synced))
    }

    /// Each directory group becomes (or stays) a Postern group whose members in `domain`
    /// are exactly the directory's; members of other domains are left to their own sync
    /// (or the admin). Groups the directory does not have are left alone.
    async fn sync_groups(
        &self,
        domain: &str,
        groups: Vec<(String, Vec<String>)>,
        synced: &mut Synced,
    ) -> Result<(), AccountError> {
        let in_domain = |a: &String| a.rsplit_once('@').is_some_and(|(_, d)| d == domain);
        for (name, members) in groups {
            let Ok(name) = crate::check_group(&name) else {
                tracing::warn!(group = %name, "a directory group's name cannot be a Postern group name: skipped");
                continue;
            };
            if self.store.group_create(name).await? {
                tracing::info!(group = %name, "group created from the directory");
            }
            let want: HashSet<&String> = members.iter().collect();
            let have: Vec<String> = self
                .store
                .group_members(name)
                .await?
                .unwrap_or_default()
                .into_iter()
                .filter(in_domain)
                .collect();
            for gone in have.iter().filter(|a| !want.contains(a)) {
                if self.store.group_remove_member(name, gone).await? {
                    synced.members_removed += 1;
                }
            }
            let have: HashSet<&String> = have.iter().collect();
            for new in members.iter().filter(|a| !have.contains(a)) {
                if self.store.group_add_member(name, new).await? {
                    synced.members_added += 1;
                }
            }
        }
        if synced.members_added + synced.members_removed > 0 {
            tracing::info!(
                domain,
                added = synced.members_added,
                removed = synced.members_removed,
                "group members synced with the directory"
            );
        }
        Ok(())
    }
}
