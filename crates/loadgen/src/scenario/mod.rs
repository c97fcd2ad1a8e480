//! The scenarios, one per file. Each gets the shared [`Run`] and returns a [`Report`].

pub mod idle;
pub mod logins;
pub mod messages;

use std::sync::Arc;

use tokio::time::Instant;

use crate::client::Target;
use crate::metrics::Probe;

/// What every scenario of a run shares.
pub struct Run {
    pub target: Arc<Target>,
    /// Accounts are `{prefix}{n}@{domain}` for n in 1..=accounts, all with this password.
    pub prefix: String,
    pub accounts: u32,
    pub password: String,
    /// No new work starts after this; work in flight ends within its own timeouts.
    pub deadline: Instant,
    pub probe: Probe,
    /// Names the server in the report (`postern`, `prosody`, ...).
    pub label: String,
}

impl Run {
    /// The localpart of the account for the `i`-th piece of work (cycling through accounts).
    pub fn user(&self, i: u64) -> String {
        format!("{}{}", self.prefix, i % u64::from(self.accounts) + 1)
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}
