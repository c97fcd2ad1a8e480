//! Postern's OpenPGP mail gateway: an after-queue SMTP content filter (like amavis). The
//! MTA hands every mail to us; we encrypt, sign, decrypt or verify it with server-held
//! keys and hand it back to the MTA's re-injection listener (the next hop).
//!
//! # The path of a mail
//!
//! 1. [`smtp_in`]: the MTA connects (connection limit, timeouts), sends the envelope
//!    (ESMTP with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING, XFORWARD) and the data,
//!    which is written to the [`spool`] as it arrives.
//! 2. [`process`]: reads the header block, checks the [`trace`] header (a mail processed
//!    here before passes untouched; forged trace fields are removed), decides who is a
//!    local sender ([`trust`]), evaluates the content-filter [`rules`] once (which may
//!    edit the header, redirect, delete, or turn encryption/signing/decryption on, and add
//!    notes and copies that ride in the same relay transaction), gathers each recipient's keys from the [`keystore`] and
//!    groups from the account store, and asks [`policy`] for the copies. Only copies that
//!    are transformed load the message into memory; pass-through copies stream from disk.
//! 3. [`relay`]: every copy goes to the next hop; the MTA gets `250` only after the next
//!    hop accepted every copy, `4xx` when it is down or refuses temporarily, `5xx` when it
//!    refuses for good. Copies held by policy go to the [`quarantine`] first.
//!
//! # Throughput
//!
//! 10 KB mails to one keyed recipient, encrypted and signed, 4 concurrent SMTP clients,
//! 2 cores: about 800 mails/s, 3.5× one `gpg --encrypt --sign` subprocess per mail (about
//! 230/s) on the same machine (`cargo run --release -p postern-gateway --example bench`).
//! Both sockets set `TCP_NODELAY`: with Nagle, pipelined replies stall on delayed ACKs
//! (40 ms a mail: the same benchmark gave 84 mails/s against a sink without it).
//!
//! # Layout
//!
//! [`config`] (the `[gateway]` section), [`access`] (allow/deny lists), [`envelope`],
//! [`header`] (byte-exact header fields), [`reply`] (SMTP replies), [`serverkey`] (the
//! secret sealing users' keys), [`error`].

pub mod access;
pub mod attached_keys;
pub mod autocrypt;
pub mod config;
pub mod envelope;
pub mod error;
pub mod header;
pub mod key_request;
pub mod keystore;
pub mod learn;
pub mod policy;
pub mod process;
pub mod quarantine;
pub mod relay;
pub mod reply;
pub mod rules;
pub mod serverkey;
pub mod smtp_in;
pub mod spool;
pub mod trace;
pub mod trust;
pub mod wkd;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use postern_accounts::Accounts;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use config::{GatewayConfig, LocalSenders, MissingKey, PolicyConfig};
pub use error::GatewayError;
pub use keystore::{Imported, KeyInfo, KeyStore, Selector};
pub use quarantine::{Held, Quarantine};
pub use relay::NextHop;
pub use reply::Reply;

/// The gateway handle: cheap to clone, shared by every connection task.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

/// What every connection shares.
pub struct Inner {
    /// The `[gateway]` section.
    pub config: GatewayConfig,
    /// Served domains, lowercase: their users are local.
    pub domains: Vec<String>,
    /// Our name in greetings and trace headers.
    pub hostname: String,
    /// Certs and sealed secret keys.
    pub keys: KeyStore,
    /// Accounts (who is a local user) and groups (for allow/deny lists).
    pub accounts: Accounts,
    /// Key for the trace-header tags.
    pub trace_key: trace::TraceKey,
    /// Where incoming messages are written.
    pub spool: spool::Spool,
    /// Held copies.
    pub quarantine: Quarantine,
    /// Where processed mail goes.
    pub next_hop: NextHop,
    /// Caps concurrent SMTP connections.
    pub connections: Arc<Semaphore>,
    /// Addresses whose automatic key generation is under way (never two keys at once).
    pub keygen_in_flight: Mutex<HashSet<String>>,
    /// Key-request answers per sender (`[gateway.key_requests]`).
    pub key_requests: key_request::Limiter,
    /// WKD lookup of outside recipients' keys, when `[gateway.wkd] lookup` is on.
    pub wkd_lookup: Option<wkd::lookup::Lookup>,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Gateway {
    /// Sets the gateway up: loads (or generates) the server key, opens the spool and
    /// quarantine directories under `data_dir` unless configured elsewhere.
    pub fn new(
        config: GatewayConfig,
        domains: Vec<String>,
        data_dir: &Path,
        accounts: Accounts,
    ) -> Result<Gateway, GatewayError> {
        let keys = serverkey::load(&config, data_dir)?;
        let spool_dir = config
            .spool_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("gateway").join("spool"));
        let spool = spool::Spool::open(&spool_dir)
            .map_err(|e| GatewayError::io(format!("opening spool {}", spool_dir.display()), e))?;
        let quarantine = Quarantine::open(&quarantine_dir(&config, data_dir))?;
        let domains: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let hostname = config
            .hostname
            .clone()
            .or_else(|| domains.first().cloned())
            .unwrap_or_else(|| "localhost".into());
        let next_hop = next_hop(&config, &hostname);
        let wkd_lookup = match config.wkd.lookup {
            true => Some(wkd::lookup::Lookup::new(&config.wkd)?),
            false => None,
        };
        Ok(Gateway(Arc::new(Inner {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            keys: KeyStore::new(accounts.store().clone(), keys.seal),
            trace_key: keys.trace,
            accounts,
            domains,
            hostname,
            spool,
            quarantine,
            next_hop,
            config,
            keygen_in_flight: Mutex::new(HashSet::new()),
            key_requests: key_request::Limiter::default(),
            wkd_lookup,
        })))
    }

    /// Accepts connections from the MTA on an already bound listener until `shutdown`
    /// turns true; connections in progress finish their current mail.
    pub async fn serve(self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        smtp_in::accept_loop(self, listener, shutdown).await;
    }

    /// Whether `domain` is one of ours.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// The key store for admin commands (the same server key as `serve` uses).
pub fn open_keystore(
    config: &GatewayConfig,
    data_dir: &Path,
    store: postern_store::Store,
) -> Result<KeyStore, GatewayError> {
    let keys = serverkey::load(config, data_dir)?;
    Ok(KeyStore::new(store, keys.seal))
}

/// The quarantine directory per the config.
pub fn quarantine_dir(config: &GatewayConfig, data_dir: &Path) -> PathBuf {
    config
        .quarantine_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("gateway").join("quarantine"))
}

/// The next hop per the config.
pub fn next_hop(config: &GatewayConfig, hostname: &str) -> NextHop {
    NextHop {
        addr: config.next_hop,
        timeout: config.next_hop_timeout,
        helo: hostname.to_owned(),
    }
}
