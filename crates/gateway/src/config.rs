//! Typed `[gateway]` configuration. Every key is documented in `config/postern.toml`;
//! [`GatewayConfig::problems`] reports every semantic problem at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use postern_pgp::{KeyAlgorithm, KeyProfile};
use serde::{Deserialize, Deserializer};

use crate::access::Pattern;
use crate::trust::Network;

/// The `[gateway]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Run the SMTP content filter at all.
    pub enabled: bool,
    /// Where the MTA hands mail to us (Postfix `content_filter = smtp:[127.0.0.1]:10025`).
    pub listen: SocketAddr,
    /// Where processed mail goes: the MTA's re-injection listener. Contacted per mail only,
    /// so the gateway starts while it is down.
    pub next_hop: SocketAddr,
    /// Name in our greeting and EHLO; default: the first served domain.
    pub hostname: Option<String>,
    /// Largest message accepted (announced as SIZE); larger gets `552`.
    #[serde(deserialize_with = "postern_core::config::bytes")]
    pub max_message_size: u64,
    /// Recipients per message; more get `452` (the MTA sends the rest in another transaction).
    pub max_recipients: usize,
    /// Concurrent SMTP connections from the MTA; more are answered `421` and closed.
    pub max_connections: usize,
    /// Waiting for one command line (RFC 5321 §4.5.3.2 suggests 5 minutes).
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub command_timeout: Duration,
    /// Waiting for the next chunk of message data (RFC 5321: 3 minutes per block).
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub data_timeout: Duration,
    /// Connecting to the next hop and waiting for each of its replies. Past it the mail is
    /// answered `451` and the MTA retries.
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub next_hop_timeout: Duration,
    /// Messages being received are written here, never held whole in memory for
    /// pass-through. Default: `<data_dir>/gateway/spool`.
    pub spool_dir: Option<PathBuf>,
    /// Mail held by the `hold` missing-key policy, released with `postern quarantine`.
    /// Default: `<data_dir>/gateway/quarantine`.
    pub quarantine_dir: Option<PathBuf>,
    /// File holding the server key that seals users' secret keys (≥ 32 bytes; a trailing
    /// newline is ignored). Default, when `server_key_env` is not set either:
    /// `<data_dir>/gateway/server.key`, generated on first use with mode 0600.
    pub server_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the server key instead of a file.
    pub server_key_env: Option<String>,
    /// Who counts as a local sender (signing, the sender's own key).
    pub local_senders: LocalSenders,
    /// Networks whose clients are local senders under `local_senders = "authenticated"`,
    /// as reported by the MTA's XFORWARD ADDR.
    pub trusted_networks: Vec<Network>,
    /// What is done to mail.
    pub policy: PolicyConfig,
    /// Keys generated for local users (`postern pgp keygen` defaults and `auto_keygen`).
    pub keygen: KeygenConfig,
    /// Autocrypt headers: sent with local users' mail, learned from outside senders'.
    pub autocrypt: AutocryptConfig,
    /// Keys attached to mail (`application/pgp-keys`).
    pub attached_keys: AttachedKeysConfig,
    /// Answering key requests by mail.
    pub key_requests: KeyRequestsConfig,
    /// Publishing local users' keys by Web Key Directory.
    pub wkd: WkdConfig,
    /// Content-filter rules (`[[gateway.rules]]`), in evaluation order.
    pub rules: Vec<crate::rules::Rule>,
}

/// How the gateway decides that a sender is one of ours (never by the From header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalSenders {
    /// The envelope sender's domain is a served domain. Only safe where nobody but the
    /// local MTA can reach the listener with mail it did not check (the embedded default,
    /// loopback only, for an MTA that requires authentication to relay).
    EnvelopeDomain,
    /// The MTA's evidence of authentication: an `(Authenticated sender: …)` comment in the
    /// newest Received header (Postfix `smtpd_sasl_authenticated_header = yes`), or a client
    /// address from XFORWARD in `trusted_networks`; and the envelope sender's domain served.
    Authenticated,
}

/// What to do for an outside recipient who has no usable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingKey {
    /// Send the mail unencrypted (signed if signing applies).
    Plain,
    /// Refuse the whole mail with a `550 5.7.1` naming the recipient.
    Reject,
    /// Keep the copy in the quarantine folder until an admin releases or deletes it.
    Hold,
}

/// One override of the missing-key policy (`[[gateway.policy.missing_key_rules]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingKeyRule {
    /// Recipient address, `domain`, or `@group`.
    pub recipient: Pattern,
    /// What to do for matching recipients.
    pub action: MissingKey,
}

/// The `[gateway.policy]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Encrypt outbound mail when every recipient of a copy has a usable key.
    pub encrypt: bool,
    /// Sign outbound mail from local senders who have a server-held key.
    pub sign: bool,
    /// Decrypt inbound mail for local users with a server-held key, and verify signatures.
    pub decrypt: bool,
    /// Put the real Subject (and the other routing fields) inside the encrypted part and
    /// `...` outside (RFC 9788 protected headers).
    pub protected_headers: bool,
    /// Default for outside recipients without a key.
    pub missing_key: MissingKey,
    /// Per-recipient overrides of `missing_key`, first match wins.
    pub missing_key_rules: Vec<MissingKeyRule>,
    /// Who may have mail encrypted (sender or recipient matches); empty: everyone.
    pub encrypt_allow: Vec<Pattern>,
    /// Who never has mail encrypted (sender or recipient matches); wins over allow.
    pub encrypt_deny: Vec<Pattern>,
    /// Local recipients whose mail is decrypted; empty: everyone.
    pub decrypt_allow: Vec<Pattern>,
    /// Local recipients whose mail is never decrypted; wins over allow.
    pub decrypt_deny: Vec<Pattern>,
    /// Generate a key for a local user (an active account allowed to use encryption or
    /// decryption) who has none, when mail from or to them passes.
    pub auto_keygen: bool,
}

/// The `[gateway.autocrypt]` section (Autocrypt Level 1, see `autocrypt.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutocryptConfig {
    /// Add an `Autocrypt:` header with the sender's minimal key to outbound mail of local
    /// senders whose key is held here.
    pub send: bool,
    /// Import keys from `Autocrypt:` headers of outside senders (never for served
    /// domains, never over a newer key).
    pub learn: bool,
}

impl Default for AutocryptConfig {
    fn default() -> Self {
        Self {
            send: true,
            learn: true,
        }
    }
}

/// The `[gateway.attached_keys]` section (see `attached_keys.rs` and `learn.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachedKeysConfig {
    /// Import `application/pgp-keys` parts: every key from a local (authenticated)
    /// sender; from anyone else only a key whose user ID is their From address.
    pub import: bool,
}

impl Default for AttachedKeysConfig {
    fn default() -> Self {
        Self { import: true }
    }
}

/// The `[gateway.key_requests]` section (see `key_request.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyRequestsConfig {
    /// Answer key requests at all.
    pub enabled: bool,
    /// Text in the Subject that makes a mail to a local user a key request.
    pub subject_token: String,
    /// Answers per requesting address and window; more are not answered.
    pub per_sender: u32,
    /// The window for `per_sender`.
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub window: Duration,
}

impl Default for KeyRequestsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            subject_token: "[pgp-key-request]".into(),
            per_sender: 5,
            window: Duration::from_secs(3600),
        }
    }
}

/// The `[gateway.wkd]` section (see `wkd/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WkdConfig {
    /// Serve WKD on the HTTPS listener (`[http]`; off by default: it needs that listener
    /// reachable on port 443, directly or through a proxy, and DNS for
    /// `openpgpkey.<domain>` or the domain itself).
    pub enabled: bool,
    /// Look up outside recipients without a stored key by WKD.
    pub lookup: bool,
    /// Per method (advanced, then direct): connecting, TLS and the response.
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub lookup_timeout: Duration,
    /// An address is looked up at most once per this period, found or not.
    #[serde(deserialize_with = "postern_core::config::duration")]
    pub lookup_cache: Duration,
    /// PEM bundle of trusted CAs; default: the system's (`/etc/ssl/certs/ca-certificates.crt`).
    pub lookup_ca_file: Option<PathBuf>,
    /// Port of the servers asked (443; another only for tests and split setups).
    pub lookup_port: u16,
}

impl Default for WkdConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            lookup: false,
            lookup_timeout: Duration::from_secs(5),
            lookup_cache: Duration::from_secs(3600),
            lookup_ca_file: None,
            lookup_port: 443,
        }
    }
}

/// The `[gateway.keygen]` section: defaults for generated keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeygenConfig {
    /// `cv25519`, `rsa2048`, `rsa3072` or `rsa4096`.
    #[serde(deserialize_with = "from_str")]
    pub algorithm: KeyAlgorithm,
    /// `rfc4880` (v4, readable by every implementation) or `rfc9580` (v6).
    #[serde(deserialize_with = "from_str")]
    pub profile: KeyProfile,
    /// Validity after creation (`"2y"`); `"never"` for none.
    #[serde(deserialize_with = "validity")]
    pub expires: Option<Duration>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 10025)),
            next_hop: SocketAddr::from(([127, 0, 0, 1], 10026)),
            hostname: None,
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_connections: 100,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            next_hop_timeout: Duration::from_secs(60),
            spool_dir: None,
            quarantine_dir: None,
            server_key_file: None,
            server_key_env: None,
            local_senders: LocalSenders::EnvelopeDomain,
            trusted_networks: vec![Network::loopback_v4(), Network::loopback_v6()],
            policy: PolicyConfig::default(),
            keygen: KeygenConfig::default(),
            autocrypt: AutocryptConfig::default(),
            attached_keys: AttachedKeysConfig::default(),
            key_requests: KeyRequestsConfig::default(),
            wkd: WkdConfig::default(),
            rules: Vec::new(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            encrypt: true,
            sign: true,
            decrypt: true,
            protected_headers: false,
            missing_key: MissingKey::Plain,
            missing_key_rules: Vec::new(),
            encrypt_allow: Vec::new(),
            encrypt_deny: Vec::new(),
            decrypt_allow: Vec::new(),
            decrypt_deny: Vec::new(),
            auto_keygen: false,
        }
    }
}

impl Default for KeygenConfig {
    fn default() -> Self {
        Self {
            algorithm: KeyAlgorithm::Cv25519,
            profile: KeyProfile::Rfc4880,
            // "2y" as humantime reads it (a year is 365.25 days).
            expires: Some(Duration::from_secs(63_115_200)),
        }
    }
}

impl GatewayConfig {
    /// Every problem in the section, so the admin fixes them all at once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_message_size < 64 * 1024 {
            out.push("gateway.max_message_size: must be at least 64 KiB".into());
        }
        if self.max_recipients == 0 {
            out.push("gateway.max_recipients: must be at least 1".into());
        }
        if self.max_connections == 0 {
            out.push("gateway.max_connections: must be at least 1".into());
        }
        for (name, d) in [
            ("command_timeout", self.command_timeout),
            ("data_timeout", self.data_timeout),
            ("next_hop_timeout", self.next_hop_timeout),
        ] {
            if d < Duration::from_secs(1) {
                out.push(format!("gateway.{name}: must be at least 1s"));
            }
        }
        if self.enabled && self.listen == self.next_hop {
            out.push("gateway: `listen` and `next_hop` are the same address (a mail loop)".into());
        }
        if self.server_key_file.is_some() && self.server_key_env.is_some() {
            out.push("gateway: set `server_key_file` or `server_key_env`, not both".into());
        }
        if let Some(f) = &self.server_key_file
            && !f.is_file()
        {
            out.push(format!(
                "gateway.server_key_file: {} does not exist (generate one with \
                 `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)",
                f.display()
            ));
        }
        if let Some(var) = &self.server_key_env
            && std::env::var_os(var).is_none()
        {
            out.push(format!(
                "gateway.server_key_env: environment variable {var} is not set"
            ));
        }
        if self.enabled
            && self.local_senders == LocalSenders::EnvelopeDomain
            && !self.listen.ip().is_loopback()
        {
            out.push(
                "gateway.local_senders = \"envelope-domain\" trusts anyone who can connect: \
                 use a loopback `listen` address or `local_senders = \"authenticated\"`"
                    .into(),
            );
        }
        if self.key_requests.enabled && self.key_requests.subject_token.trim().is_empty() {
            out.push("gateway.key_requests.subject_token: must not be empty".into());
        }
        out.extend(crate::rules::problems(&self.rules));
        out
    }
}

/// A size in bytes written the human way: `"50 MiB"`, `"10 MB"`, `1000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<postern_core::ByteSize>().map(|b| b.0)
}

/// Parses a validity such as `"2y"`, `"90d"` or `"never"` (CLI `--expires` and config).
pub fn parse_validity(s: &str) -> Result<Option<Duration>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("never") || s == "0" {
        return Ok(None);
    }
    humantime::parse_duration(s)
        .map(Some)
        .map_err(|e| format!("`{s}` is not a validity such as \"2y\" or \"never\": {e}"))
}

fn validity<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    parse_validity(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = GatewayConfig::default();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert!(c.listen.ip().is_loopback() && c.next_hop.ip().is_loopback());
        assert_eq!(c.max_message_size, 52_428_800);
    }

    #[test]
    fn sections_parse_and_every_problem_is_reported() {
        let c: GatewayConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:10025"
            next_hop = "0.0.0.0:10025"
            max_message_size = "10 KiB"
            max_connections = 0
            server_key_env = "POSTERN_TEST_SURELY_UNSET_VARIABLE"
            [policy]
            missing_key = "hold"
            encrypt_deny = ["partner.example", "@legal", "boss@example.org"]
            [[policy.missing_key_rules]]
            recipient = "bank.example"
            action = "reject"
            [keygen]
            algorithm = "rsa3072"
            expires = "never"
            "#,
        )
        .expect("parses");
        assert_eq!(c.policy.missing_key, MissingKey::Hold);
        assert_eq!(c.policy.encrypt_deny.len(), 3);
        assert_eq!(c.keygen.algorithm, KeyAlgorithm::Rsa3072);
        assert_eq!(c.keygen.expires, None);
        let p = c.problems();
        assert_eq!(p.len(), 5, "{p:#?}");
    }

    #[test]
    fn sizes_and_validities() {
        assert_eq!(parse_size("50 MiB"), Ok(52_428_800));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("ten").is_err());
        assert_eq!(
            parse_validity("2y").ok().flatten(),
            humantime::parse_duration("2y").ok()
        );
        assert_eq!(parse_validity("never"), Ok(None));
        assert!(parse_validity("soon").is_err());
    }
}
