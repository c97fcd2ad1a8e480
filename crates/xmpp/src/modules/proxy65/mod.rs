//! XEP-0065 SOCKS5 Bytestreams: a proxy at `proxy.<domain>` for clients that cannot reach each
//! other directly (most, behind NAT), so Jingle file transfer and XEP-0065 itself have a
//! relay on the server.
//!
//! - [`stanza`]: the `bytestreams` payloads (xmpp-parsers has none).
//! - [`socks`]: the SOCKS5 handshake on the proxy's own listener (default `127.0.0.1:7777`).
//! - [`relay`]: copying both ways within the byte, rate and idle limits.
//!
//! Both parties connect to the listener naming the stream's hash, SHA-1(sid + initiator's
//! full JID + target's full JID); the connections wait, unread, until the initiator
//! activates the stream with an IQ, then the proxy relays. The hash contains the initiator's
//! full JID, stamped by the server on the activating IQ: nobody else can activate someone's
//! stream. Unactivated connections are closed after `activation_timeout`, a third
//! connection for one stream is refused, and at most `max_streams` are open at once.

pub mod relay;
pub mod socks;
pub mod stanza;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_core::ByteSize;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use xmpp_parsers::disco::Identity;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::ByteLimit;
use crate::router::{IqKind, IqRequest, IqResult, RouterBuilder, Scope};
use crate::stanza::StanzaFault;
use stanza::{NS, Query, StreamHost};

/// The service's label: `proxy.<domain>`.
pub const LABEL: &str = "proxy";

/// The `[xmpp.proxy65]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy65Config {
    /// Offer the proxy.
    pub enabled: bool,
    /// Its SOCKS5 listeners.
    pub listen: Vec<SocketAddr>,
    /// `host:port` clients are told to connect to; default: the first listener's address
    /// (required when that is a wildcard such as 0.0.0.0).
    pub advertise: Option<String>,
    /// Streams open at once (each is two connections), waiting or relaying.
    pub max_streams: usize,
    /// Connections from one client address, waiting or relaying.
    pub max_connections_per_ip: usize,
    /// Bytes one stream may carry, both directions together.
    pub max_bytes: ByteSize,
    /// Bytes per second per direction of one stream; "unlimited" for no limit.
    pub rate: ByteLimit,
    /// How long a connection waits for its stream to be activated.
    #[serde(deserialize_with = "crate::config::duration")]
    pub activation_timeout: Duration,
    /// A relayed stream idle this long (no byte either way) is closed.
    #[serde(deserialize_with = "crate::config::duration")]
    pub idle_timeout: Duration,
}

impl Default for Proxy65Config {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7777))],
            advertise: None,
            max_streams: 64,
            max_connections_per_ip: 8,
            max_bytes: ByteSize(4 * 1024 * 1024 * 1024),
            rate: ByteLimit(None),
            activation_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl Proxy65Config {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        if self.max_streams == 0 {
            out.push("xmpp.proxy65.max_streams: must be at least 1".into());
        }
        if self.max_connections_per_ip == 0 {
            out.push("xmpp.proxy65.max_connections_per_ip: must be at least 1".into());
        }
        if let Some(a) = &self.advertise
            && split_host_port(a).is_none()
        {
            out.push(format!("xmpp.proxy65.advertise: `{a}` is not host:port"));
        }
        if self.advertise.is_none() && self.listen.first().is_some_and(|a| a.ip().is_unspecified())
        {
            out.push(
                "xmpp.proxy65.advertise: required when the first listener is a wildcard address \
                 (clients must be told where to connect)"
                    .into(),
            );
        }
        out
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| Some((host.to_owned(), port.parse().ok()?)))?
}

/// A connection waiting for its stream's activation.
struct Waiting {
    conn: TcpStream,
    permit: (OwnedSemaphorePermit, PerIp),
    /// Tells this connection's expiry timer apart from a later one's.
    token: u64,
}

/// The connections of one stream hash: `accepted` counts those told yes (a place is taken
/// before the reply is written, so a third is refused even while the second is replied to).
#[derive(Default)]
struct Stream {
    conns: Vec<Waiting>,
    accepted: usize,
}

/// The proxy's state, shared by its listener tasks and IQ handlers.
pub struct Proxy {
    config: Proxy65Config,
    host: String,
    port: u16,
    /// Stream hash → the connections that named it (at most two).
    waiting: Mutex<HashMap<String, Stream>>,
    /// Connections per client address (waiting or relaying).
    per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Two permits per stream: one per connection.
    connections: Arc<Semaphore>,
    next_token: std::sync::atomic::AtomicU64,
}

/// Registers the proxy when enabled; its listeners are bound here, so a port in use is a
/// start-up error.
pub fn register(r: &mut RouterBuilder, config: &Proxy65Config) {
    if !config.enabled || config.listen.is_empty() {
        return;
    }
    let mut listeners = Vec::new();
    for a in &config.listen {
        match std::net::TcpListener::bind(a).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                r.problem(format!("xmpp.proxy65: binding {a}: {e}"));
                return;
            }
        }
    }
    let Some(first) = listeners.first().and_then(|l| l.local_addr().ok()) else {
        return;
    };
    let (host, port) = match config.advertise.as_deref().and_then(split_host_port) {
        Some(hp) => hp,
        None => (first.ip().to_string(), first.port()),
    };
    let proxy = Arc::new(Proxy {
        config: config.clone(),
        host,
        port,
        waiting: Mutex::new(HashMap::new()),
        per_ip: Mutex::new(HashMap::new()),
        connections: Arc::new(Semaphore::new(config.max_streams.saturating_mul(2))),
        next_token: std::sync::atomic::AtomicU64::new(0),
    });
    r.service(LABEL, "SOCKS5 Bytestreams Proxy");
    let scope = Scope::Service(LABEL);
    r.disco_feature(scope, NS);
    crate::modules::disco::service(
        r,
        LABEL,
        Identity::new("proxy", "bytestreams", "en", "SOCKS5 Bytestreams Proxy"),
        vec![],
    );
    r.iq(scope, IqKind::Get, NS, "query", {
        let proxy = proxy.clone();
        move |_, req: IqRequest<Query>| {
            let proxy = proxy.clone();
            async move { address(&proxy, req) }
        }
    });
    r.iq(scope, IqKind::Set, NS, "query", {
        let proxy = proxy.clone();
        move |_, req: IqRequest<Query>| {
            let proxy = proxy.clone();
            async move { activate(&proxy, req) }
        }
    });
    let listeners = Arc::new(Mutex::new(listeners));
    r.task(move |_, shutdown| {
        let proxy = proxy.clone();
        let taken: Vec<_> = listeners
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        Box::pin(async move {
            let mut loops = tokio::task::JoinSet::new();
            for l in taken {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => {
                        loops.spawn(accept_loop(proxy.clone(), l, shutdown.clone()));
                    }
                    Err(e) => tracing::error!(error = %e, "proxy65 listener"),
                }
            }
            while loops.join_next().await.is_some() {}
        })
    });
}

/// The answer to "where are you": one streamhost.
fn address(proxy: &Proxy, req: IqRequest<Query>) -> IqResult {
    if req.to.node().is_some() {
        return Err(StanzaFault::item_not_found());
    }
    Ok(Some(
        Query {
            sid: None,
            mode: None,
            streamhosts: vec![StreamHost {
                jid: req.to.to_string(),
                host: proxy.host.clone(),
                port: proxy.port,
            }],
            activate: None,
        }
        .into(),
    ))
}

/// The initiator's `<activate/>`: both connections of its stream start relaying.
fn activate(proxy: &Arc<Proxy>, req: IqRequest<Query>) -> IqResult {
    let Some(sid) = req.payload.sid.filter(|s| !s.is_empty()) else {
        return Err(StanzaFault::bad_request("the query has no sid"));
    };
    let Some(target) = req.payload.activate else {
        return Err(StanzaFault::bad_request("nothing to activate"));
    };
    let target: FullJid = target
        .jid
        .trim()
        .parse()
        .map_err(|_| StanzaFault::new(ErrorType::Modify, DefinedCondition::JidMalformed))?;
    let hash = socks::stream_hash(&sid, req.from.as_str(), target.as_str());
    let pair = {
        let Ok(mut waiting) = proxy.waiting.lock() else {
            return Err(StanzaFault::internal());
        };
        match waiting.get(&hash).map(|s| s.conns.len()) {
            None => None,
            Some(2) => waiting.remove(&hash).map(|s| s.conns),
            Some(_) => {
                return Err(
                    StanzaFault::new(ErrorType::Cancel, DefinedCondition::NotAcceptable)
                        .with_text("only one side has connected to the proxy"),
                );
            }
        }
    };
    let Some(mut pair) = pair else {
        // No stream with this hash: wrong sid or target, or not the initiator.
        return Err(StanzaFault::item_not_found()
            .with_text("no stream with this sid from you to that target is waiting"));
    };
    let (b, a) = match (pair.pop(), pair.pop()) {
        (Some(b), Some(a)) => (b, a),
        _ => return Err(StanzaFault::internal()),
    };
    let limits = relay::Limits {
        max_bytes: proxy.config.max_bytes.0,
        rate: proxy.config.rate.0.map(|r| r.0),
        idle: proxy.config.idle_timeout,
    };
    let (initiator, to) = (req.from.to_string(), target.to_string());
    tracing::info!(%initiator, target = %to, %sid, "bytestream activated");
    tokio::spawn(async move {
        let _permits = (a.permit, b.permit);
        let (bytes, ended) = relay::relay(a.conn, b.conn, limits).await;
        tracing::info!(%initiator, target = %to, %sid, bytes, ended = ?ended, "bytestream ended");
    });
    Ok(None)
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    postern_core::listen::accept_until_shutdown(&listener, &mut shutdown, |tcp, peer| {
        let Ok(permit) = proxy.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "proxy65 connection refused: max_streams reached");
            return;
        };
        let Some(ip) = PerIp::take(&proxy, peer.ip()) else {
            tracing::warn!(%peer, "proxy65 connection refused: max_connections_per_ip reached");
            return;
        };
        tokio::spawn(connection(proxy.clone(), tcp, peer, (permit, ip)));
    })
    .await;
}

/// One connection counted against its client address, given back on drop.
struct PerIp {
    proxy: Arc<Proxy>,
    ip: std::net::IpAddr,
}

impl PerIp {
    fn take(proxy: &Arc<Proxy>, ip: std::net::IpAddr) -> Option<PerIp> {
        let mut per_ip = proxy.per_ip.lock().ok()?;
        let n = per_ip.entry(ip).or_default();
        if *n >= proxy.config.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(PerIp {
            proxy: proxy.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        if let Ok(mut per_ip) = self.proxy.per_ip.lock()
            && let Some(n) = per_ip.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// How long a client may take for the SOCKS5 handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

async fn connection(
    proxy: Arc<Proxy>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    permit: (OwnedSemaphorePermit, PerIp),
) {
    let hash = match tokio::time::timeout(HANDSHAKE, socks::handshake(&mut tcp)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "proxy65 handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "proxy65 handshake timed out");
            return;
        }
    };
    // Take a place for this stream before saying yes.
    let placed = proxy.waiting.lock().is_ok_and(|mut w| {
        let stream = w.entry(hash.clone()).or_default();
        if stream.accepted >= 2 {
            return false;
        }
        stream.accepted += 1;
        true
    });
    if !placed {
        let _ = socks::refuse(&mut tcp).await;
        tracing::info!(%peer, "proxy65: a third connection for one stream refused");
        return;
    }
    let token = proxy
        .next_token
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let replied = socks::accept(&mut tcp, &hash).await.is_ok();
    if let Ok(mut w) = proxy.waiting.lock()
        && let Some(stream) = w.get_mut(&hash)
    {
        if !replied {
            stream.accepted -= 1;
            if stream.accepted == 0 {
                w.remove(&hash);
            }
            return;
        }
        stream.conns.push(Waiting {
            conn: tcp,
            permit,
            token,
        });
    }
    // Not activated in time: closed (dropping the connection and its permits).
    tokio::time::sleep(proxy.config.activation_timeout).await;
    if let Ok(mut w) = proxy.waiting.lock()
        && let Some(stream) = w.get_mut(&hash)
        && let Some(i) = stream.conns.iter().position(|c| c.token == token)
    {
        stream.conns.remove(i);
        stream.accepted -= 1;
        if stream.accepted == 0 {
            w.remove(&hash);
        }
    }
}
