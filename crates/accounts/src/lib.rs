//! Accounts, groups and credentials for Postern.
//!
//! The JID *is* the mail address and the password is the mail password, so this crate is the
//! one place that knows how passwords are stored and checked:
//!
//! - [`Accounts`] (this file): add, change, disable, delete and list accounts; check a PLAIN
//!   password; hand out SCRAM keys; manage groups. Wraps a [`Store`].
//! - `password`: argon2id PHC strings plus SCRAM keys, derived from one password.
//! - [`scram`]: the server side of SCRAM-SHA-1/256/512(-PLUS), pure and I/O free.
//! - [`fast`]: XEP-0484 FAST tokens (HT-SHA-256-NONE): issued per device, checked, rotated.
//! - [`config`] and [`backend`]: `[accounts]`, where a domain's passwords are checked: here,
//!   or by the organisation's own servers (its IMAP server, Dovecot's auth socket); then the
//!   confirmed password's SCRAM keys are kept, honoured for `scram_ttl`.
//! - `sync`: the accounts a backend lists (Dovecot's userdb) exist here before their first
//!   login; one that leaves it loses SCRAM and FAST, and the server closes its sessions.
//! - [`legacy`]: hashes imported from Dovecot (`{SHA512-CRYPT}` …), checked at login and then
//!   replaced by our own; [`import`] reads the files they come in.
//!
//! A SASL login takes one of two paths: PLAIN calls [`Accounts::verify_password`]; SCRAM
//! calls [`scram::ScramServer::client_first`], then [`Accounts::scram_keys`] for the named
//! user, then `server_first` and `client_final`. Both treat unknown, disabled and
//! wrong-password logins alike, so an attacker cannot probe which accounts exist.

pub mod backend;
pub mod config;
pub mod fast;
mod hash_pool;
pub mod import;
pub mod legacy;
mod password;
pub mod scram;
mod sync;

use std::sync::Arc;

use postern_core::{Address, AsAddress};
use postern_store::{AccountRow, ScramCredential, Store, StoreError};

pub use config::{AccountsConfig, BackendKind};
pub use password::HashError;
pub use scram::{ChannelBindings, ClientFirst, ScramError, ScramHash, ScramKeys, ScramServer};
pub use sync::Synced;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The address is not `localpart@domain` (or has characters a JID cannot have).
    #[error("invalid address {0:?}: {1}")]
    InvalidAddress(String, &'static str),
    /// The password cannot be used (empty).
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    /// An account with this address already exists.
    #[error("account {0} already exists")]
    Exists(String),
    /// No account with this address.
    #[error("no account {0}")]
    NotFound(String),
    /// The group name is empty or has control characters.
    #[error("invalid group name {0:?}")]
    InvalidGroup(String),
    /// A group with this name already exists.
    #[error("group {0} already exists")]
    GroupExists(String),
    /// No group with this name.
    #[error("no group {0}")]
    NoSuchGroup(String),
    /// Hashing the password failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The hashing threads are gone.
    #[error(transparent)]
    Task(#[from] hash_pool::PoolGone),
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
    /// The external backend that checks this domain's passwords gave no answer.
    #[error(transparent)]
    Unavailable(#[from] backend::Unavailable),
    /// `[accounts]` cannot be used (a CA file that does not load, …).
    #[error("[accounts] {0}")]
    Config(String),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchGroup(name) => AccountError::NoSuchGroup(name),
            other => AccountError::Store(other),
        }
    }
}

/// What [`Accounts::import`] did with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// A new account.
    Added,
    /// An account with this address exists already: left as it is.
    Exists,
}

/// An account as listed for admins: no secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// `localpart@domain`, lowercase.
    pub address: String,
    /// Cannot log in.
    pub disabled: bool,
    /// May read chat logs and use the admin web.
    pub is_admin: bool,
}

/// The account service. Cheap to clone: a [`Store`] handle and the hashing pool.
#[derive(Clone, Debug)]
pub struct Accounts {
    store: Store,
    /// Where argon2id and PBKDF2 run: bounded, off the async workers.
    hashing: hash_pool::HashPool,
    /// Which domains' passwords the organisation's servers check, and those servers.
    backends: Arc<backend::Backends>,
}

impl Accounts {
    /// Wraps a store; every domain's passwords are checked here.
    pub fn new(store: Store) -> Self {
        Accounts {
            store,
            hashing: hash_pool::HashPool::new(),
            backends: Arc::default(),
        }
    }

    /// Wraps a store, with the backends `config` names (`postern serve`).
    pub fn with_config(store: Store, config: &AccountsConfig) -> Result<Self, AccountError> {
        let backends = backend::Backends::new(config).map_err(AccountError::Config)?;
        Ok(Accounts {
            store,
            hashing: hash_pool::HashPool::new(),
            backends: Arc::new(backends),
        })
    }

    /// Derives all credentials on the hashing pool: argon2id plus three PBKDF2 runs take tens
    /// of milliseconds, which must not stall the async workers.
    async fn hash(&self, password: &str) -> Result<postern_store::Credentials, AccountError> {
        let password = password.to_owned();
        Ok(self
            .hashing
            .run(move || password::credentials_for(&password))
            .await??)
    }

    /// The underlying store, for callers that also need rosters or offline messages.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates an account. The address is normalised to lowercase; the password is stored
    /// only as argon2id and SCRAM hashes.
    pub async fn add(
        &self,
        address: &(impl AsAddress + ?Sized),
        password: &str,
    ) -> Result<(), AccountError> {
        let addr = parse_address(address)?;
        check_password(password)?;
        if self
            .store
            .account_get(addr.localpart(), addr.domain())
            .await?
            .is_some()
        {
            return Err(AccountError::Exists(addr.to_string()));
        }
        let row = new_row(&addr, self.hash(password).await?);
        // The insert itself settles a race with a concurrent add of the same address.
        if !self.store.account_insert(&row).await? {
            return Err(AccountError::Exists(addr.to_string()));
        }
        tracing::info!(account = %addr, "account added");
        Ok(())
    }

    /// Creates an account from an import entry: a password in the clear gets Postern's own
    /// credentials, a hash (`legacy`) is kept until the first login with it succeeds. An
    /// existing account is left alone.
    pub async fn import(&self, entry: &import::Entry) -> Result<Imported, AccountError> {
        let addr = parse_address(entry.address.as_str())?;
        if self
            .store
            .account_get(addr.localpart(), addr.domain())
            .await?
            .is_some()
        {
            return Ok(Imported::Exists);
        }
        let credentials = match &entry.secret {
            import::Secret::Clear(password) => {
                check_password(password)?;
                self.hash(password).await?
            }
            import::Secret::Hashed(stored) => password::imported(stored),
        };
        if !self
            .store
            .account_insert(&new_row(&addr, credentials))
            .await?
        {
            return Ok(Imported::Exists);
        }
        Ok(Imported::Added)
    }

    /// Replaces an account's password (all hashes at once, with fresh salts).
    pub async fn set_password(
        &self,
        address: &(impl AsAddress + ?Sized),
        password: &str,
    ) -> Result<(), AccountError> {
        let addr = parse_address(address)?;
        check_password(password)?;
        if self
            .store
            .account_get(addr.localpart(), addr.domain())
            .await?
            .is_none()
        {
            return Err(AccountError::NotFound(addr.to_string()));
        }
        let credentials = self.hash(password).await?;
        if !self
            .store
            .account_set_credentials(addr.localpart(), addr.domain(), &credentials)
            .await?
        {
            return Err(AccountError::NotFound(addr.to_string()));
        }
        tracing::info!(account = %addr, "password changed");
        Ok(())
    }

    /// Deletes an account with its roster, pending subscriptions, offline messages and group
    /// memberships.
    pub async fn delete(&self, address: &(impl AsAddress + ?Sized)) -> Result<(), AccountError> {
        let addr = parse_address(address)?;
        if !self
            .store
            .account_delete(addr.localpart(), addr.domain())
            .await?
        {
            return Err(AccountError::NotFound(addr.to_string()));
        }
        tracing::info!(account = %addr, "account deleted");
        Ok(())
    }

    /// Lists accounts, all or of one domain, sorted by domain then localpart.
    pub async fn list(&self, domain: Option<&str>) -> Result<Vec<AccountInfo>, AccountError> {
        let domain = domain.map(str::to_lowercase);
        let rows = self.store.account_list(domain.as_deref()).await?;
        Ok(rows
            .into_iter()
            .map(|r| AccountInfo {
                address: format!("{}@{}", r.localpart, r.domain),
                disabled: r.disabled,
                is_admin: r.is_admin,
            })
            .collect())
    }

    /// Disables (or re-enables) an account. A disabled account keeps its data but cannot log
    /// in; existing sessions are the caller's to close.
    pub async fn set_disabled(
        &self,
        address: &(impl AsAddress + ?Sized),
        disabled: bool,
    ) -> Result<(), AccountError> {
        let addr = parse_address(address)?;
        if !self
            .store
            .account_set_disabled(addr.localpart(), addr.domain(), disabled)
            .await?
        {
            return Err(AccountError::NotFound(addr.to_string()));
        }
        tracing::info!(account = %addr, disabled, "account disabled flag changed");
        Ok(())
    }

    /// Grants or revokes admin rights.
    pub async fn set_admin(
        &self,
        address: &(impl AsAddress + ?Sized),
        is_admin: bool,
    ) -> Result<(), AccountError> {
        let addr = parse_address(address)?;
        if !self
            .store
            .account_set_admin(addr.localpart(), addr.domain(), is_admin)
            .await?
        {
            return Err(AccountError::NotFound(addr.to_string()));
        }
        tracing::info!(account = %addr, is_admin, "account admin flag changed");
        Ok(())
    }

    /// Whether the account exists and is enabled (e.g. to accept a message for it). An
    /// invalid address is simply not active.
    pub async fn is_active(
        &self,
        address: &(impl AsAddress + ?Sized),
    ) -> Result<bool, AccountError> {
        let Ok(addr) = parse_address(address) else {
            return Ok(false);
        };
        let row = self
            .store
            .account_get(addr.localpart(), addr.domain())
            .await?;
        Ok(row.is_some_and(|r| !r.disabled))
    }

    /// Whether the admin flag is set on an existing, enabled account.
    pub async fn is_admin(
        &self,
        address: &(impl AsAddress + ?Sized),
    ) -> Result<bool, AccountError> {
        let Ok(addr) = parse_address(address) else {
            return Ok(false);
        };
        let row = self
            .store
            .account_get(addr.localpart(), addr.domain())
            .await?;
        Ok(row.is_some_and(|r| !r.disabled && r.is_admin))
    }

    /// Checks a PLAIN password. `Ok(true)` only for an existing, enabled account with the
    /// right password. Unknown, disabled and malformed addresses are checked against a dummy
    /// hash, so every failure costs the same argon2id time and reveals nothing. Runs the
    /// hash on a blocking thread.
    pub async fn verify_password(
        &self,
        address: &(impl AsAddress + ?Sized),
        password: &str,
    ) -> Result<bool, AccountError> {
        let row = match parse_address(address) {
            Ok(addr) => {
                if let Some(external) = self.backends.of(addr.domain()) {
                    return self.verify_external(&addr, external, password).await;
                }
                self.store
                    .account_get(addr.localpart(), addr.domain())
                    .await?
            }
            Err(_) => None,
        };
        let (hash, active) = match &row {
            Some(r) if !r.disabled => (r.credentials.password_hash.clone(), true),
            _ => (password::DUMMY_HASH.to_owned(), false),
        };
        let imported = legacy::is_legacy(&hash);
        let (stored, given) = (hash.clone(), password.to_owned());
        let ok = self
            .hashing
            .run(move || password::matches(&stored, &given))
            .await?;
        if ok
            && active
            && imported
            && let Some(r) = &row
        {
            self.upgrade(&r.localpart, &r.domain, &hash, password).await;
        }
        Ok(ok && active)
    }

    /// A PLAIN login for a domain whose passwords an external backend checks. A password it
    /// confirms becomes (or refreshes) the account here, with credentials derived from it,
    /// so that SCRAM works for `scram_ttl`; one it refuses is refused. An account the admin
    /// disabled here stays refused whatever the server says.
    async fn verify_external(
        &self,
        addr: &Address,
        external: &backend::Backend,
        password: &str,
    ) -> Result<bool, AccountError> {
        let (localpart, domain) = (addr.localpart(), addr.domain());
        let Some(confirmed) = external
            .check(&addr.to_string(), password, &self.hashing)
            .await?
        else {
            return Ok(false);
        };
        // Read after the check: a disable while it ran counts, and a disabled account
        // takes as long to refuse as any other.
        let row = self.store.account_get(localpart, domain).await?;
        if row.as_ref().is_some_and(|r| r.disabled) {
            return Ok(false);
        }
        match row {
            None => {
                let row = new_row(addr, self.hash(password).await?);
                // A concurrent first login may have created it: either row will do.
                if self.store.account_insert(&row).await? {
                    tracing::info!(account = %addr, backend = %external, "account created at its first login");
                }
            }
            Some(r) => {
                // Only "did it change?": the SCRAM key answers in ~1 ms where argon2id
                // takes ~20 (bench/README.md, account backends).
                let (stored, given) = (r.credentials, password.to_owned());
                let same = self
                    .hashing
                    .run(move || password::same_as_scram(&stored, &given))
                    .await?;
                if !same {
                    // Changed on the mail server: new keys, and the FAST tokens of devices
                    // that knew the old password revoked (else a confirmation of the new
                    // one would make them good again). A mail server that takes several
                    // passwords for one account (app passwords) makes each PLAIN login with
                    // another one do this: docs/accounts.md.
                    let credentials = self.hash(password).await?;
                    self.store
                        .account_set_credentials(localpart, domain, &credentials)
                        .await?;
                }
            }
        }
        let confirmation = postern_store::Confirmation {
            at_ms: now_ms(),
            tag: confirmed.tag,
        };
        self.store
            .account_set_confirmation(localpart, domain, &confirmation)
            .await?;
        Ok(true)
    }

    /// For a domain whose passwords an external backend checks: whether it confirmed this
    /// account's password within `scram_ttl` (what SCRAM keys and FAST tokens are honoured
    /// for; past it only a PLAIN login, which asks the backend, gets in), and, for a backend
    /// that exposes the hash, whether the hash is still the one it confirmed. Always true
    /// for a domain whose passwords are kept here.
    pub(crate) async fn still_confirmed(&self, addr: &Address) -> Result<bool, AccountError> {
        let Some(external) = self.backends.of(addr.domain()) else {
            return Ok(true);
        };
        let confirmation = self
            .store
            .account_confirmation(addr.localpart(), addr.domain())
            .await?
            .unwrap_or_default();
        let ttl = i64::try_from(external.scram_ttl().as_millis()).unwrap_or(i64::MAX);
        if confirmation.at_ms <= 0 || now_ms().saturating_sub(confirmation.at_ms) > ttl {
            return Ok(false);
        }
        match external
            .still_stands(&addr.to_string(), confirmation.tag.as_deref())
            .await
        {
            Ok(stands) => Ok(stands),
            // The database cannot say: the confirmation stands for its ttl, as with the
            // backends that never expose the hash.
            Err(e) => {
                tracing::warn!(error = %e, account = %addr, "could not compare the password hash with the backend's; honoured within scram_ttl");
                Ok(true)
            }
        }
    }

    /// Replaces an imported hash that just matched with Postern's own credentials (so SCRAM
    /// works from now on), unless the password changed meanwhile. A failure is logged; the
    /// login it came from stands.
    async fn upgrade(&self, localpart: &str, domain: &str, from: &str, password: &str) {
        let result = match self.hash(password).await {
            Ok(credentials) => self
                .store
                .account_upgrade_credentials(localpart, domain, from, &credentials)
                .await
                .map_err(AccountError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(true) => {
                tracing::info!(account = %format!("{localpart}@{domain}"), "imported password hash replaced by argon2id and SCRAM keys");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, account = %format!("{localpart}@{domain}"), "upgrading an imported password hash failed");
            }
        }
    }

    /// SCRAM keys of an active account for `hash`, or `None` for unknown, disabled or
    /// malformed addresses (the SCRAM server then continues with fake keys).
    pub async fn scram_keys(
        &self,
        address: &(impl AsAddress + ?Sized),
        hash: ScramHash,
    ) -> Result<Option<ScramKeys>, AccountError> {
        let Ok(addr) = parse_address(address) else {
            return Ok(None);
        };
        let Some(row) = self
            .store
            .account_get(addr.localpart(), addr.domain())
            .await?
        else {
            return Ok(None);
        };
        // An imported hash has no SCRAM keys yet: SCRAM fails as for a wrong password.
        if row.disabled || legacy::is_legacy(&row.credentials.password_hash) {
            return Ok(None);
        }
        // An external backend's password: only as long after it last confirmed it as
        // `scram_ttl` says (then a PLAIN login asks it again).
        if !self.still_confirmed(&addr).await? {
            return Ok(None);
        }
        let c = row.credentials;
        let ScramCredential {
            salt,
            iterations,
            stored_key,
            server_key,
        } = match hash {
            ScramHash::Sha1 => c.scram_sha1,
            ScramHash::Sha256 => c.scram_sha256,
            ScramHash::Sha512 => c.scram_sha512,
        };
        Ok(Some(ScramKeys {
            salt,
            iterations,
            stored_key,
            server_key,
        }))
    }

    /// Creates a group (for the mail gateway's rules).
    pub async fn group_add(&self, name: &str) -> Result<(), AccountError> {
        let name = check_group(name)?;
        if !self.store.group_create(name).await? {
            return Err(AccountError::GroupExists(name.to_owned()));
        }
        Ok(())
    }

    /// Deletes a group and its memberships.
    pub async fn group_del(&self, name: &str) -> Result<(), AccountError> {
        if !self.store.group_delete(name).await? {
            return Err(AccountError::NoSuchGroup(name.to_owned()));
        }
        Ok(())
    }

    /// All group names, sorted.
    pub async fn group_list(&self) -> Result<Vec<String>, AccountError> {
        Ok(self.store.group_list().await?)
    }

    /// Members of a group (addresses, sorted).
    pub async fn group_members(&self, name: &str) -> Result<Vec<String>, AccountError> {
        self.store
            .group_members(name)
            .await?
            .ok_or_else(|| AccountError::NoSuchGroup(name.to_owned()))
    }

    /// Adds an address (need not be a local account) to a group. Returns `false` when it
    /// was already a member.
    pub async fn group_add_member(
        &self,
        name: &str,
        address: &(impl AsAddress + ?Sized),
    ) -> Result<bool, AccountError> {
        let addr = parse_address(address)?;
        Ok(self.store.group_add_member(name, &addr.to_string()).await?)
    }

    /// Removes an address from a group. Returns `false` when it was not a member.
    pub async fn group_remove_member(
        &self,
        name: &str,
        address: &(impl AsAddress + ?Sized),
    ) -> Result<bool, AccountError> {
        let addr = parse_address(address)?;
        Ok(self
            .store
            .group_remove_member(name, &addr.to_string())
            .await?)
    }

    /// Groups an address belongs to, sorted.
    pub async fn groups_of(
        &self,
        address: &(impl AsAddress + ?Sized),
    ) -> Result<Vec<String>, AccountError> {
        let addr = parse_address(address)?;
        Ok(self.store.groups_of(&addr.to_string()).await?)
    }
}

/// The address every account operation works on: as given when typed, parsed when text
/// (see [`postern_core::Address`]).
fn parse_address(
    address: &(impl AsAddress + ?Sized),
) -> Result<std::borrow::Cow<'_, Address>, AccountError> {
    address
        .as_address()
        .map_err(|e| AccountError::InvalidAddress(e.input, e.reason))
}

/// A new, enabled, ordinary account with these credentials.
fn new_row(addr: &Address, credentials: postern_store::Credentials) -> AccountRow {
    AccountRow {
        localpart: addr.localpart().to_owned(),
        domain: addr.domain().to_owned(),
        credentials,
        disabled: false,
        is_admin: false,
        created_at_ms: now_ms(),
    }
}

fn check_password(password: &str) -> Result<(), AccountError> {
    if password.is_empty() {
        return Err(AccountError::InvalidPassword("empty"));
    }
    Ok(())
}

fn check_group(name: &str) -> Result<&str, AccountError> {
    if name.trim().is_empty() || name.trim() != name || name.chars().any(char::is_control) {
        return Err(AccountError::InvalidGroup(name.to_owned()));
    }
    Ok(name)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_validated_and_lowercased() {
        let a = parse_address("Alice@Example.COM").expect("valid");
        assert_eq!(a.to_string(), "alice@example.com");
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "a b@x",
            "a@b@c",
            "a/b@x",
            "a@x..y",
            "a@.x",
            "a\n@x",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_address(&format!("{}@x", "a".repeat(1024))).is_err());
    }

    #[test]
    fn group_names_are_checked() {
        assert!(check_group("legal").is_ok());
        assert!(check_group("").is_err());
        assert!(check_group(" legal").is_err());
        assert!(check_group("le\u{7}gal").is_err());
    }
}
