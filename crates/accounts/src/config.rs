//! `[accounts]`: where each served domain's passwords are checked.
//!
//! ```toml
//! [accounts]
//! backend = "internal"          # internal (default) | imap
//! by_domain = { "example.org" = "imap" }
//!
//! [accounts.imap]               # for the domains whose backend is imap
//! url = "imaps://mail.example.org"   # imaps:// (TLS, port 993) or imap:// (STARTTLS, 143)
//! ca_file = "/etc/ssl/private-ca.pem" # default: the system's CAs
//! username = "address"          # what the IMAP server takes: address (default) | localpart
//! timeout = "10s"
//! scram_ttl = "1d"
//! failure_cache = "30s"
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The `[accounts]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// The backend of every domain not named in `by_domain`.
    #[serde(default)]
    pub backend: BackendKind,
    /// Per-domain backends.
    #[serde(default)]
    pub by_domain: HashMap<String, BackendKind>,
    /// The IMAP server, for the domains whose backend is `imap`.
    pub imap: Option<ImapConfig>,
}

/// Where a domain's passwords are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Postern's own store (argon2id and SCRAM keys).
    #[default]
    Internal,
    /// The organisation's IMAP server: each PLAIN login is checked by logging in there.
    Imap,
}

/// `[accounts.imap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// `imaps://host[:port]` (implicit TLS, default port 993) or `imap://host[:port]`
    /// (STARTTLS required, default port 143). The certificate is always verified.
    pub url: String,
    /// PEM bundle of the CAs to trust (a private CA); default: the system's.
    pub ca_file: Option<PathBuf>,
    /// The user name the IMAP server takes.
    #[serde(default)]
    pub username: ImapUsername,
    /// The longest a check may take (connect, TLS, login); past it the login gets
    /// `<temporary-auth-failure/>`.
    #[serde(
        default = "default_timeout",
        deserialize_with = "postern_core::config::duration"
    )]
    pub timeout: Duration,
    /// How long after the IMAP server last confirmed a password its SCRAM keys are honoured:
    /// the bound on an old password working over SCRAM after it changed on the mail server.
    #[serde(
        default = "default_scram_ttl",
        deserialize_with = "postern_core::config::duration"
    )]
    pub scram_ttl: Duration,
    /// How long a refused address and password pair is refused again without asking the
    /// IMAP server (a password flood does not reach it).
    #[serde(
        default = "default_failure_cache",
        deserialize_with = "postern_core::config::duration"
    )]
    pub failure_cache: Duration,
}

/// What the IMAP server takes as user name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapUsername {
    /// `alice@example.org` (Dovecot with `%u`, most hosted mail).
    #[default]
    Address,
    /// `alice` (a server for one domain).
    Localpart,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_scram_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_failure_cache() -> Duration {
    Duration::from_secs(30)
}

impl AccountsConfig {
    /// The backend of `domain`.
    pub fn backend_of(&self, domain: &str) -> BackendKind {
        self.by_domain.get(domain).copied().unwrap_or(self.backend)
    }

    /// Every problem with the section, given the served domains.
    pub fn problems(&self, served: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for d in self.by_domain.keys() {
            if !served.iter().any(|s| s == d) {
                out.push(format!(
                    "[accounts] by_domain names `{d}`, which is not served"
                ));
            }
        }
        let uses_imap = served
            .iter()
            .any(|d| self.backend_of(d) == BackendKind::Imap);
        match &self.imap {
            None if uses_imap => out.push(
                "[accounts] a domain's backend is imap, but there is no [accounts.imap]".into(),
            ),
            Some(imap) => {
                if let Err(e) = crate::imap::Target::parse(&imap.url) {
                    out.push(format!("[accounts.imap] url: {e}"));
                }
                if let Some(ca) = &imap.ca_file
                    && !ca.is_file()
                {
                    out.push(format!(
                        "[accounts.imap] ca_file {} is not a file",
                        ca.display()
                    ));
                }
                if imap.timeout.is_zero() {
                    out.push("[accounts.imap] timeout must be more than 0".into());
                }
                let imap_domains = served
                    .iter()
                    .filter(|d| self.backend_of(d) == BackendKind::Imap)
                    .count();
                if imap.username == ImapUsername::Localpart && imap_domains > 1 {
                    out.push(
                        "[accounts.imap] username = \"localpart\" with several imap domains: \
                         alice@a and alice@b would be the same IMAP user"
                            .into(),
                    );
                }
            }
            None => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> AccountsConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn problems_are_reported() {
        let served = ["a.test".to_owned(), "b.test".to_owned()];
        assert!(AccountsConfig::default().problems(&served).is_empty());
        let p = config("backend = \"imap\"").problems(&served);
        assert!(p[0].contains("no [accounts.imap]"), "{p:?}");
        let p = config("by_domain = { \"c.test\" = \"imap\" }").problems(&served);
        assert!(p.iter().any(|m| m.contains("`c.test`")), "{p:?}");
        let p = config("backend = \"imap\"\n[imap]\nurl = \"pop3://x\"\nusername = \"localpart\"");
        let p = p.problems(&served);
        assert!(p.iter().any(|m| m.contains("url")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("same IMAP user")), "{p:?}");
        let one = config(
            "by_domain = { \"a.test\" = \"imap\" }\n[imap]\nurl = \"imaps://x\"\nusername = \"localpart\"",
        );
        assert!(one.problems(&served).is_empty());
        assert_eq!(one.backend_of("a.test"), BackendKind::Imap);
        assert_eq!(one.backend_of("b.test"), BackendKind::Internal);
    }
}
