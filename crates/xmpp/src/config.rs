//! Typed `[xmpp]` configuration. Every key is documented in `config/postern.toml`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// The `[xmpp]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XmppConfig {
    /// Run the XMPP service at all.
    pub enabled: bool,
    /// Listeners that offer STARTTLS (RFC 6120 §5).
    pub starttls: Vec<SocketAddr>,
    /// Listeners that speak TLS from the first byte (XEP-0368).
    pub direct_tls: Vec<SocketAddr>,
    /// Everything a client controls is bounded by these.
    pub limits: Limits,
    /// `[xmpp.offline]`: XEP-0160 offline storage (its module: `modules/offline.rs`).
    pub offline: crate::modules::offline::OfflineConfig,
    /// `[xmpp.csi]`: XEP-0352 client state indication (`modules/csi.rs`).
    pub csi: crate::modules::csi::CsiConfig,
    pub sm: crate::modules::sm::SmConfig,
    pub fast: crate::stream::fast::FastConfig,
    /// `[xmpp.archive]`: the message archive, XEP-0313 MAM (`modules/archive/`).
    pub archive: crate::modules::archive::ArchiveConfig,
    /// `[xmpp.upload]`: XEP-0363 HTTP File Upload (`modules/upload/`).
    pub upload: crate::modules::upload::UploadConfig,
    /// `[xmpp.proxy65]`: XEP-0065 SOCKS5 bytestreams proxy (`modules/proxy65/`).
    pub proxy65: crate::modules::proxy65::Proxy65Config,
}

impl Default for XmppConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            starttls: vec![SocketAddr::from(([127, 0, 0, 1], 5222))],
            direct_tls: vec![SocketAddr::from(([127, 0, 0, 1], 5223))],
            limits: Limits::default(),
            offline: Default::default(),
            csi: Default::default(),
            sm: Default::default(),
            fast: Default::default(),
            archive: Default::default(),
            upload: Default::default(),
            proxy65: Default::default(),
        }
    }
}

/// The `[xmpp.limits]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest top-level element a client may send; larger ends the stream with
    /// `policy-violation` (RFC 6120 §4.9.3.14).
    pub max_stanza_size: ByteSize,
    /// Deepest nesting of a top-level element (the stanza itself is level 1); deeper ends the
    /// stream with `policy-violation`, checked on the bytes before any tree is built.
    pub max_stanza_depth: usize,
    /// Concurrent client connections, all listeners together.
    pub max_connections: usize,
    /// New connections one IP address may open in a burst …
    pub connection_burst_per_ip: u32,
    /// … and per minute after the burst is spent.
    pub connections_per_minute_per_ip: u32,
    /// Time from TCP accept to a bound resource.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// Silence after which the server pings the client; the client then has
    /// `idle_timeout / 4` (at least 10 s) to answer before the stream is closed.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Wrong credentials (`not-authorized`) on one connection before it is closed. Other
    /// refusals (unknown mechanism, unsupported channel binding) are capped at 10.
    pub auth_attempts_per_connection: u32,
    /// Failures (per IP and per account, within `auth_failure_window`) after which each
    /// further failure answer is delayed. A correct login is never delayed.
    pub auth_failures_before_delay: u32,
    /// Window over which authentication failures are counted.
    #[serde(deserialize_with = "duration")]
    pub auth_failure_window: Duration,
    /// Ceiling of the delay added to a failure answer.
    #[serde(deserialize_with = "duration")]
    pub auth_failure_max_delay: Duration,
    /// Stanzas queued for one session before it is considered stuck and closed.
    pub session_queue: usize,
    /// Stream-level elements (SM acks, CSI states, …) a client may send per second; past it
    /// the stream ends with `policy-violation`.
    pub max_nonzas_per_second: u32,
    /// Longest wait for a client to take what is written to it (a client that stops
    /// reading); past it the connection counts as lost.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_size: ByteSize(256 * 1024),
            max_stanza_depth: 64,
            max_connections: 10_000,
            connection_burst_per_ip: 100,
            connections_per_minute_per_ip: 600,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            auth_attempts_per_connection: 3,
            auth_failures_before_delay: 3,
            auth_failure_window: Duration::from_secs(600),
            auth_failure_max_delay: Duration::from_secs(5),
            session_queue: 1024,
            max_nonzas_per_second: 200,
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Real stanzas nest about 8 deep (a MAM result carrying a forwarded message with a
/// payload); fewer than this would refuse legitimate traffic.
pub const MIN_STANZA_DEPTH: usize = 16;
/// The ceiling the worker threads' stacks are sized for (see the binary's runtime setup).
pub const MAX_STANZA_DEPTH: usize = 1024;

impl XmppConfig {
    /// Every problem in the section, so the admin can fix them all at once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.archive.problems();
        out.extend(self.upload.problems());
        out.extend(self.proxy65.problems());
        let l = &self.limits;
        if self.archive.enabled && self.archive.max_page + 1 > l.session_queue {
            out.push(format!(
                "xmpp.archive.max_page ({}) must be below xmpp.limits.session_queue ({}): a MAM \
                 page is queued to the session at once",
                self.archive.max_page, l.session_queue
            ));
        }
        if self.enabled && self.starttls.is_empty() && self.direct_tls.is_empty() {
            out.push(
                "xmpp: enabled but neither `starttls` nor `direct_tls` lists an address".into(),
            );
        }
        if l.max_stanza_size.0 < 10 * 1024 {
            out.push(
                "xmpp.limits.max_stanza_size: must be at least 10 KiB (RFC 6120 §13.12)".into(),
            );
        }
        if !(MIN_STANZA_DEPTH..=MAX_STANZA_DEPTH).contains(&l.max_stanza_depth) {
            out.push(format!(
                "xmpp.limits.max_stanza_depth: must be between {MIN_STANZA_DEPTH} and \
                 {MAX_STANZA_DEPTH} (element trees are walked recursively; the worker stacks \
                 are sized for {MAX_STANZA_DEPTH})"
            ));
        }
        if l.max_connections == 0 {
            out.push("xmpp.limits.max_connections: must be at least 1".into());
        }
        if l.connection_burst_per_ip == 0 {
            out.push("xmpp.limits.connection_burst_per_ip: must be at least 1".into());
        }
        if l.handshake_timeout < Duration::from_secs(1) {
            out.push("xmpp.limits.handshake_timeout: must be at least 1s".into());
        }
        if l.idle_timeout < Duration::from_secs(10) {
            out.push("xmpp.limits.idle_timeout: must be at least 10s".into());
        }
        if l.auth_attempts_per_connection == 0 {
            out.push("xmpp.limits.auth_attempts_per_connection: must be at least 1".into());
        }
        if self.offline.max_messages < 0 {
            out.push("xmpp.offline.max_messages: must not be negative".into());
        }
        if self.csi.max_held == 0 {
            out.push("xmpp.csi.max_held: must be at least 1".into());
        }
        if self.sm.max_unacked < 10 {
            out.push("xmpp.sm.max_unacked: must be at least 10".into());
        }
        if self.sm.resume_timeout > Duration::from_secs(86_400) {
            out.push("xmpp.sm.resume_timeout: must be at most 24h".into());
        }
        if self.fast.token_lifetime < Duration::from_secs(60) {
            out.push("xmpp.fast.token_lifetime: must be at least 1m".into());
        }
        if l.write_timeout < Duration::from_secs(1) {
            out.push("xmpp.limits.write_timeout: must be at least 1s".into());
        }
        if l.max_nonzas_per_second < 10 {
            out.push("xmpp.limits.max_nonzas_per_second: must be at least 10".into());
        }
        if l.session_queue < 16 {
            out.push("xmpp.limits.session_queue: must be at least 16".into());
        }
        out
    }
}

/// A size in bytes written the human way: `"256 KiB"`, `"50 MiB"`, `"1000"`.
pub use postern_core::ByteSize;
pub use postern_core::config::ByteLimit;
/// Durations are written as humantime strings: `"30s"`, `"5m"`, `"2h"`.
pub use postern_core::config::duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_have_no_problems_and_bad_values_are_all_reported() {
        assert!(XmppConfig::default().problems().is_empty());
        let mut c = XmppConfig::default();
        c.limits.max_stanza_size = ByteSize(10);
        c.limits.max_connections = 0;
        c.starttls.clear();
        c.direct_tls.clear();
        assert_eq!(c.problems().len(), 3);
    }
}
