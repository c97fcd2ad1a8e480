//! `[accounts]`: where each served domain's passwords are checked.
//!
//! ```toml
//! [accounts]
//! backend = "internal"          # internal (default) | imap | dovecot | sql | ldap
//! by_domain = { "example.org" = "imap" }
//!
//! [accounts.imap]               # for the domains whose backend is imap
//! url = "imaps://mail.example.org"   # imaps:// (TLS, port 993) or imap:// (STARTTLS, 143)
//! ca_file = "/etc/ssl/private-ca.pem" # default: the system's CAs
//! username = "address"          # what the server takes: address (default) | localpart
//! timeout = "10s"
//! scram_ttl = "1d"
//! failure_cache = "30s"
//!
//! [accounts.dovecot]            # for the domains whose backend is dovecot
//! auth_socket = "/run/dovecot/auth-postern"  # or "inet:127.0.0.1:12345"
//! userdb_socket = "/run/dovecot/auth-userdb" # optional: the accounts Dovecot knows
//! sync_interval = "5m"          # how often they are read (with userdb_socket)
//! service = "xmpp"              # the service name Dovecot's passdb and logs see
//! username = "address"
//! timeout = "10s"
//! scram_ttl = "1d"
//! failure_cache = "30s"
//!
//! [accounts.sql]                # for the domains whose backend is sql
//! # PostgreSQL; or mysql://… (MySQL, MariaDB) with `?` for the parameter
//! url = "postgres://postern:secret@db.example.org/postfix"
//! password_query = "SELECT password FROM mailbox WHERE username = $1 AND active"
//! list_query = "SELECT username FROM mailbox WHERE domain = $1 AND active"  # optional
//! sync_interval = "5m"
//! pool_size = 4
//! username = "address"
//! timeout = "10s"
//! scram_ttl = "1d"
//! failure_cache = "30s"
//!
//! [accounts.ldap]               # for the domains whose backend is ldap
//! url = "ldaps://ldap.example.org"     # or ldap:// (StartTLS, required)
//! ca_file = "/etc/ssl/private-ca.pem"
//! bind_dn = "cn=postern,ou=services,dc=example,dc=org"   # the service account
//! bind_password_file = "/etc/postern/ldap.secret"        # or bind_password
//! base_dn = "ou=people,dc=example,dc=org"
//! user_filter = "(&(objectClass=inetOrgPerson)(mail={address}))"
//! # dn_template = "uid={localpart},ou=people,dc=example,dc=org"  # instead of a search
//! list_filter = "(&(objectClass=inetOrgPerson)(mail=*@{domain}))"  # optional
//! address_attribute = "mail"
//! group_filter = "(objectClass=groupOfNames)"   # optional: groups follow the directory's
//! group_base_dn = "ou=groups,dc=example,dc=org"
//! group_name_attribute = "cn"
//! group_member_attribute = "member"
//! sync_interval = "5m"
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
    /// Dovecot's auth service, for the domains whose backend is `dovecot`.
    pub dovecot: Option<DovecotConfig>,
    /// The mail server's database, for the domains whose backend is `sql`.
    pub sql: Option<SqlConfig>,
    /// The directory, for the domains whose backend is `ldap`.
    pub ldap: Option<LdapConfig>,
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
    /// Dovecot's auth socket: each PLAIN login is checked as Postfix checks SMTP AUTH.
    Dovecot,
    /// The mail server's own table: the hash is read and checked here.
    Sql,
    /// The directory: each PLAIN login is checked by binding as the user.
    Ldap,
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
    pub username: Username,
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

/// `[accounts.dovecot]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DovecotConfig {
    /// Dovecot's auth client socket: a path (a `unix_listener` of `service auth`), or
    /// `inet:host:port` (an `inet_listener`; the protocol is not encrypted: loopback or a
    /// trusted network only).
    pub auth_socket: String,
    /// Dovecot's auth-userdb socket (the auth-master protocol), to list the accounts
    /// Dovecot knows: they exist here before their first login, and one that leaves
    /// Dovecot loses its SCRAM keys, FAST tokens and live sessions. Without it Postern
    /// learns of accounts at their first login.
    pub userdb_socket: Option<String>,
    /// How often the accounts are read from `userdb_socket`.
    #[serde(
        default = "default_sync_interval",
        deserialize_with = "postern_core::config::duration"
    )]
    pub sync_interval: Duration,
    /// The service name in each request (Dovecot's passdb rules and logs see it).
    #[serde(default = "default_service")]
    pub service: String,
    /// The user name Dovecot takes.
    #[serde(default)]
    pub username: Username,
    /// The longest a check may take; past it the login gets `<temporary-auth-failure/>`.
    #[serde(
        default = "default_timeout",
        deserialize_with = "postern_core::config::duration"
    )]
    pub timeout: Duration,
    /// As `[accounts.imap] scram_ttl`.
    #[serde(
        default = "default_scram_ttl",
        deserialize_with = "postern_core::config::duration"
    )]
    pub scram_ttl: Duration,
    /// As `[accounts.imap] failure_cache`.
    #[serde(
        default = "default_failure_cache",
        deserialize_with = "postern_core::config::duration"
    )]
    pub failure_cache: Duration,
}

/// `[accounts.sql]`. Its `Debug` leaves the URL's password out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `postgres://user:password@host[:port]/database` (PostgreSQL) or
    /// `mysql://…` / `mariadb://…` (MySQL, MariaDB).
    pub url: String,
    /// Takes the user name as `$1` (PostgreSQL) or `?` (MySQL/MariaDB); returns the
    /// password hash in its first column (no row: unknown or inactive).
    pub password_query: String,
    /// Takes the domain as its parameter (as `password_query`); returns user names in its
    /// first column: the accounts of that domain, which then exist here before their first
    /// login.
    pub list_query: Option<String>,
    /// How often `list_query` is read.
    #[serde(
        default = "default_sync_interval",
        deserialize_with = "postern_core::config::duration"
    )]
    pub sync_interval: Duration,
    /// Connections to the database at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// The user name the queries take.
    #[serde(default)]
    pub username: Username,
    /// The longest a check may take; past it the login gets `<temporary-auth-failure/>`.
    #[serde(
        default = "default_timeout",
        deserialize_with = "postern_core::config::duration"
    )]
    pub timeout: Duration,
    /// As `[accounts.imap] scram_ttl`; on top of it, SCRAM and FAST stop at once when the
    /// hash in the table changes.
    #[serde(
        default = "default_scram_ttl",
        deserialize_with = "postern_core::config::duration"
    )]
    pub scram_ttl: Duration,
    /// As `[accounts.imap] failure_cache`.
    #[serde(
        default = "default_failure_cache",
        deserialize_with = "postern_core::config::duration"
    )]
    pub failure_cache: Duration,
}

/// `[accounts.ldap]`. Its `Debug` leaves `bind_password` out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host[:port]` or `ldap://host[:port]` (StartTLS, required).
    pub url: String,
    /// PEM bundle of the CAs to trust; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// The service account the searches bind as; anonymous without one.
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    /// A file holding the service account's password (one line), instead of
    /// `bind_password` in the config.
    pub bind_password_file: Option<PathBuf>,
    /// Where the searches start.
    pub base_dn: String,
    /// The filter that finds the one entry of `{address}` (also `{localpart}`,
    /// `{domain}`; escaped per RFC 4515). Default `(mail={address})`.
    pub user_filter: Option<String>,
    /// The user's DN made from the address instead of a search (escaped per RFC 4514).
    pub dn_template: Option<String>,
    /// The filter of a domain's accounts (`{domain}`), whose `address_attribute` values
    /// then exist here before their first login.
    pub list_filter: Option<String>,
    /// The attribute holding an account's address, for `list_filter`.
    #[serde(default = "default_address_attribute")]
    pub address_attribute: String,
    /// The filter of the groups whose members (this domain's accounts) Postern's groups of
    /// the same name take, at each sync.
    pub group_filter: Option<String>,
    /// Where the group search starts; default `base_dn`.
    pub group_base_dn: Option<String>,
    /// The attribute holding a group's name.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: String,
    /// The attribute holding a group's members, as DNs of account entries.
    #[serde(default = "default_group_member_attribute")]
    pub group_member_attribute: String,
    /// How often `list_filter` is searched.
    #[serde(
        default = "default_sync_interval",
        deserialize_with = "postern_core::config::duration"
    )]
    pub sync_interval: Duration,
    /// The longest a check may take; past it the login gets `<temporary-auth-failure/>`.
    #[serde(
        default = "default_timeout",
        deserialize_with = "postern_core::config::duration"
    )]
    pub timeout: Duration,
    /// As `[accounts.imap] scram_ttl`.
    #[serde(
        default = "default_scram_ttl",
        deserialize_with = "postern_core::config::duration"
    )]
    pub scram_ttl: Duration,
    /// As `[accounts.imap] failure_cache`.
    #[serde(
        default = "default_failure_cache",
        deserialize_with = "postern_core::config::duration"
    )]
    pub failure_cache: Duration,
}

/// What every external backend's check is bounded by.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub scram_ttl: Duration,
    pub failure_cache: Duration,
}

impl std::fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConfig")
            .field("url", &postern_store::redact_url(&self.url))
            .field("password_query", &self.password_query)
            .field("list_query", &self.list_query)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .finish_non_exhaustive()
    }
}

/// Every external backend's section has `timeout`, `scram_ttl` and `failure_cache`.
macro_rules! limits {
    ($($section:ty),*) => {$(
        impl $section {
            pub fn limits(&self) -> Limits {
                Limits {
                    timeout: self.timeout,
                    scram_ttl: self.scram_ttl,
                    failure_cache: self.failure_cache,
                }
            }
        }
    )*};
}
limits!(ImapConfig, DovecotConfig, SqlConfig, LdapConfig);

/// What an external backend takes as user name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Username {
    /// `alice@example.org` (Dovecot with `%u`, most hosted mail).
    #[default]
    Address,
    /// `alice` (a server for one domain).
    Localpart,
}

impl Username {
    /// The user name for `address` (`localpart@domain`).
    pub fn of(self, address: &str) -> &str {
        match self {
            Username::Address => address,
            Username::Localpart => address.split('@').next().unwrap_or(address),
        }
    }

    /// The address in `domain` of a user name the backend listed, lowercase; `None` for
    /// one of another domain (or, with `address`, one without a domain).
    pub fn address_in(self, user: &str, domain: &str) -> Option<String> {
        let user = user.trim().to_lowercase();
        match self {
            Username::Address => {
                let (_, d) = user.rsplit_once('@')?;
                (d == domain).then_some(user)
            }
            Username::Localpart => {
                (!user.contains('@') && !user.is_empty()).then(|| format!("{user}@{domain}"))
            }
        }
    }
}

fn default_sync_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_group_name_attribute() -> String {
    "cn".to_owned()
}

fn default_group_member_attribute() -> String {
    "member".to_owned()
}

fn default_address_attribute() -> String {
    "mail".to_owned()
}

fn default_pool_size() -> u32 {
    4
}

fn default_service() -> String {
    "xmpp".to_owned()
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
        let uses = |kind| served.iter().any(|d| self.backend_of(d) == kind);
        let domains_of = |kind| served.iter().filter(|d| self.backend_of(d) == kind).count();
        if uses(BackendKind::Imap) && self.imap.is_none() {
            out.push(
                "[accounts] a domain's backend is imap, but there is no [accounts.imap]".into(),
            );
        }
        if uses(BackendKind::Dovecot) && self.dovecot.is_none() {
            out.push(
                "[accounts] a domain's backend is dovecot, but there is no [accounts.dovecot]"
                    .into(),
            );
        }
        if uses(BackendKind::Ldap) && self.ldap.is_none() {
            out.push(
                "[accounts] a domain's backend is ldap, but there is no [accounts.ldap]".into(),
            );
        }
        if let Some(ldap) = &self.ldap {
            out.extend(ldap_problems(ldap));
        }
        if uses(BackendKind::Sql) && self.sql.is_none() {
            out.push("[accounts] a domain's backend is sql, but there is no [accounts.sql]".into());
        }
        let shared_localpart = |section: &str, username: Username, kind| {
            (username == Username::Localpart && domains_of(kind) > 1).then(|| {
                format!(
                    "[accounts.{section}] username = \"localpart\" with several {section} \
                     domains: alice@a and alice@b would be the same user there"
                )
            })
        };
        if let Some(imap) = &self.imap {
            if let Err(e) = crate::backend::imap::Target::parse(&imap.url) {
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
            out.extend(shared_localpart("imap", imap.username, BackendKind::Imap));
        }
        if let Some(dovecot) = &self.dovecot {
            let sockets = std::iter::once(("auth_socket", &dovecot.auth_socket))
                .chain(dovecot.userdb_socket.iter().map(|s| ("userdb_socket", s)));
            for (key, socket) in sockets {
                if let Err(e) = crate::backend::dovecot::Socket::parse(socket) {
                    out.push(format!("[accounts.dovecot] {key}: {e}"));
                }
            }
            if dovecot.timeout.is_zero() {
                out.push("[accounts.dovecot] timeout must be more than 0".into());
            }
            if dovecot.sync_interval < Duration::from_secs(1) {
                out.push("[accounts.dovecot] sync_interval must be at least 1s".into());
            }
            if dovecot.service.is_empty()
                || dovecot.service.chars().any(|c| c.is_control() || c == '\t')
            {
                out.push("[accounts.dovecot] service must be a plain name".into());
            }
            out.extend(shared_localpart(
                "dovecot",
                dovecot.username,
                BackendKind::Dovecot,
            ));
        }
        if let Some(sql) = &self.sql {
            match crate::backend::sql::check_url(&sql.url) {
                Err(e) => out.push(format!("[accounts.sql] url: {e}")),
                Ok(dialect) => {
                    let p = dialect.placeholder();
                    let queries = std::iter::once(("password_query", &sql.password_query))
                        .chain(sql.list_query.iter().map(|q| ("list_query", q)));
                    for (key, query) in queries {
                        if !query.contains(p) {
                            out.push(format!(
                                "[accounts.sql] {key} must take its parameter as {p}"
                            ));
                        }
                    }
                }
            }
            if sql.timeout.is_zero() {
                out.push("[accounts.sql] timeout must be more than 0".into());
            }
            if sql.pool_size == 0 {
                out.push("[accounts.sql] pool_size must be at least 1".into());
            }
            if sql.sync_interval < Duration::from_secs(1) {
                out.push("[accounts.sql] sync_interval must be at least 1s".into());
            }
            out.extend(shared_localpart("sql", sql.username, BackendKind::Sql));
        }
        out
    }
}

fn ldap_problems(ldap: &LdapConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = crate::backend::ldap::check_url(&ldap.url) {
        out.push(format!("[accounts.ldap] url: {e}"));
    }
    if let Some(ca) = &ldap.ca_file
        && !ca.is_file()
    {
        out.push(format!(
            "[accounts.ldap] ca_file {} is not a file",
            ca.display()
        ));
    }
    if ldap.user_filter.is_some() && ldap.dn_template.is_some() {
        out.push("[accounts.ldap] user_filter and dn_template: set one".into());
    }
    let placeholders = ["{address}", "{localpart}", "{domain}"];
    for (key, value) in [
        ("user_filter", &ldap.user_filter),
        ("dn_template", &ldap.dn_template),
    ] {
        if let Some(v) = value
            && !v.contains("{address}")
            && !v.contains("{localpart}")
        {
            out.push(format!(
                "[accounts.ldap] {key} names no {{address}} or {{localpart}}: every user would \
                 be the same entry"
            ));
        }
    }
    if let Some(f) = &ldap.list_filter
        && !placeholders.iter().any(|p| f.contains(p))
    {
        out.push(
            "[accounts.ldap] list_filter names no {domain}: every domain would list the same \
             accounts"
                .into(),
        );
    }
    if ldap.group_filter.is_some() && ldap.list_filter.is_none() {
        out.push(
            "[accounts.ldap] group_filter needs list_filter: members are found among the listed \
             accounts"
                .into(),
        );
    }
    if ldap.bind_password.is_some() && ldap.bind_password_file.is_some() {
        out.push("[accounts.ldap] bind_password and bind_password_file: set one".into());
    }
    if ldap.bind_dn.is_some() && ldap.bind_password.is_none() && ldap.bind_password_file.is_none() {
        out.push("[accounts.ldap] bind_dn without bind_password or bind_password_file".into());
    }
    if let Some(file) = &ldap.bind_password_file
        && !file.is_file()
    {
        out.push(format!(
            "[accounts.ldap] bind_password_file {} is not a file",
            file.display()
        ));
    }
    if ldap.timeout.is_zero() {
        out.push("[accounts.ldap] timeout must be more than 0".into());
    }
    if ldap.sync_interval < Duration::from_secs(1) {
        out.push("[accounts.ldap] sync_interval must be at least 1s".into());
    }
    out
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
        assert!(p.iter().any(|m| m.contains("same user there")), "{p:?}");
        let one = config(
            "by_domain = { \"a.test\" = \"imap\" }\n[imap]\nurl = \"imaps://x\"\nusername = \"localpart\"",
        );
        assert!(one.problems(&served).is_empty());
        assert_eq!(one.backend_of("a.test"), BackendKind::Imap);
        assert_eq!(one.backend_of("b.test"), BackendKind::Internal);
        let p = config("backend = \"dovecot\"").problems(&served);
        assert!(p[0].contains("no [accounts.dovecot]"), "{p:?}");
        let p = config(
            "backend = \"dovecot\"\n[dovecot]\nauth_socket = \"auth\"\n\
             userdb_socket = \"inet:x\"\nservice = \"a\\tb\"\nsync_interval = \"0s\"",
        )
        .problems(&served);
        for key in ["auth_socket", "userdb_socket", "service", "sync_interval"] {
            assert!(p.iter().any(|m| m.contains(key)), "{key}: {p:?}");
        }
        let ok = config(
            "backend = \"dovecot\"\n[dovecot]\nauth_socket = \"inet:127.0.0.1:12345\"\n\
             userdb_socket = \"/run/dovecot/auth-userdb\"",
        );
        assert!(
            ok.problems(&served).is_empty(),
            "{:?}",
            ok.problems(&served)
        );
        assert_eq!(ok.backend_of("b.test"), BackendKind::Dovecot);
    }

    #[test]
    fn sql_problems() {
        let served = ["a.test".to_owned()];
        let p = config("backend = \"sql\"").problems(&served);
        assert!(p[0].contains("no [accounts.sql]"), "{p:?}");
        let p = config(
            "backend = \"sql\"\n[sql]\nurl = \"sqlite://db/mail\"\n\
             password_query = \"SELECT password FROM mailbox WHERE username = $1\"\npool_size = 0",
        )
        .problems(&served);
        for key in ["url", "pool_size"] {
            assert!(p.iter().any(|m| m.contains(key)), "{key}: {p:?}");
        }
        let p = config(
            "backend = \"sql\"\n[sql]\nurl = \"mysql://db/mail\"\n\
             password_query = \"SELECT password FROM mailbox WHERE username = $1\"",
        )
        .problems(&served);
        assert!(
            p.iter()
                .any(|m| m.contains("password_query must take its parameter as ?")),
            "{p:?}"
        );
        let ok = config(
            "backend = \"sql\"\n[sql]\nurl = \"postgres://u:p@db/mail\"\n\
             password_query = \"SELECT password FROM mailbox WHERE username = $1\"",
        );
        assert!(
            ok.problems(&served).is_empty(),
            "{:?}",
            ok.problems(&served)
        );
    }

    #[test]
    fn ldap_problems_are_reported() {
        let served = ["a.test".to_owned()];
        let p = config("backend = \"ldap\"").problems(&served);
        assert!(p[0].contains("no [accounts.ldap]"), "{p:?}");
        let p = config(
            "backend = \"ldap\"\n[ldap]\nurl = \"http://x\"\nbase_dn = \"dc=x\"\n\
             user_filter = \"(uid=alice)\"\ndn_template = \"uid=x\"\nlist_filter = \"(mail=*)\"\n\
             bind_dn = \"cn=p\"",
        )
        .problems(&served);
        for key in [
            "url",
            "set one",
            "user_filter names",
            "dn_template names",
            "list_filter",
            "bind_dn",
        ] {
            assert!(p.iter().any(|m| m.contains(key)), "{key}: {p:?}");
        }
        let ok = config(
            "backend = \"ldap\"\n[ldap]\nurl = \"ldaps://x\"\nbase_dn = \"dc=x\"\n\
             list_filter = \"(mail=*@{domain})\"",
        );
        assert!(
            ok.problems(&served).is_empty(),
            "{:?}",
            ok.problems(&served)
        );
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let c = config(
            "[sql]\nurl = \"postgres://u:s3cret@db/mail\"\npassword_query = \"SELECT $1\"\n\
             [ldap]\nurl = \"ldaps://x\"\nbase_dn = \"dc=x\"\nbind_dn = \"cn=p\"\nbind_password = \"s3cret\"",
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("cn=p"), "{shown}");
    }

    #[test]
    fn user_names() {
        assert_eq!(Username::Address.of("a@x.test"), "a@x.test");
        assert_eq!(Username::Localpart.of("a@x.test"), "a");
        assert_eq!(
            Username::Address
                .address_in("A@X.test", "x.test")
                .as_deref(),
            Some("a@x.test")
        );
        assert_eq!(Username::Address.address_in("a@y.test", "x.test"), None);
        assert_eq!(Username::Address.address_in("a", "x.test"), None);
        assert_eq!(
            Username::Localpart.address_in("a", "x.test").as_deref(),
            Some("a@x.test")
        );
        assert_eq!(Username::Localpart.address_in("a@x.test", "x.test"), None);
    }
}
