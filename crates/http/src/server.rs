//! The listeners: accept, apply the connection limits, TLS (with the header timeout), then
//! hyper (HTTP/1.1 with keep-alive; upgrades kept for WebSocket) in front of the services'
//! router. Every request is given its [`Origin`](crate::Origin) first (`421` for a host that
//! is not ours) and a body that must keep moving ([`crate::body::IdleBody`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::body::IdleBody;
use crate::config::HttpConfig;
use crate::origin::Sites;

/// How long open requests may take to finish after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The bound listeners, before anything is served (the real ports are known from here, for
/// the URLs services hand out).
pub struct Listeners {
    https: Vec<TcpListener>,
    plain: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every listener of `config`.
    pub async fn bind(config: &HttpConfig) -> std::io::Result<Listeners> {
        let mut https = Vec::new();
        for a in &config.listen {
            https.push(bound(*a).await?);
        }
        let mut plain = Vec::new();
        for a in &config.listen_plain {
            plain.push(bound(*a).await?);
        }
        Ok(Listeners { https, plain })
    }

    /// Bound HTTPS addresses (real ports when the config said 0).
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Bound plain HTTP addresses.
    pub fn plain_addrs(&self) -> Vec<SocketAddr> {
        self.plain
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

async fn bound(a: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(a)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding HTTPS {a}: {e}")))
}

/// What every connection task shares.
struct Shared {
    app: Router,
    sites: Arc<Sites>,
    config: HttpConfig,
    connections: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Serves `app` on `listeners` until `shutdown` turns true, then lets open requests finish
/// (for a few seconds).
pub async fn serve(
    listeners: Listeners,
    app: Router,
    sites: Sites,
    tls: Arc<rustls::ServerConfig>,
    config: HttpConfig,
    shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        app,
        sites: Arc::new(sites),
        connections: Arc::new(Semaphore::new(config.max_connections)),
        per_ip: Mutex::new(HashMap::new()),
        config,
    });
    let acceptor = TlsAcceptor::from(tls);
    let mut loops = JoinSet::new();
    for (l, tls) in listeners
        .https
        .into_iter()
        .map(|l| (l, Some(acceptor.clone())))
        .chain(listeners.plain.into_iter().map(|l| (l, None)))
    {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        loops.spawn(async move {
            let mut conns = JoinSet::new();
            postern_core::listen::accept_until_shutdown(&l, &mut shutdown.clone(), |tcp, peer| {
                if let Some(guard) = admit(&shared, peer.ip()) {
                    conns.spawn(connection(
                        shared.clone(),
                        guard,
                        tcp,
                        peer,
                        tls.clone(),
                        shutdown.clone(),
                    ));
                }
                // Reap finished connections as we go, so the set stays small.
                while conns.try_join_next().is_some() {}
            })
            .await;
            drop(l);
            if tokio::time::timeout(SHUTDOWN_GRACE, async {
                while conns.join_next().await.is_some() {}
            })
            .await
            .is_err()
            {
                tracing::warn!("HTTP connections still open after the shutdown grace period");
                conns.abort_all();
            }
        });
    }
    while loops.join_next().await.is_some() {}
}

/// A connection's slots (global and per IP), given back on drop.
struct Admitted {
    shared: Arc<Shared>,
    ip: Option<IpAddr>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(ip) = self.ip
            && let Ok(mut per_ip) = self.shared.per_ip.lock()
            && let Some(n) = per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// Takes the connection's slots, or refuses it (closed at once) over either limit.
fn admit(shared: &Arc<Shared>, ip: IpAddr) -> Option<Admitted> {
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        tracing::warn!(%ip, "HTTP connection refused: max_connections reached");
        return None;
    };
    let counted = !shared.sites.trusts(ip);
    if counted {
        let mut per_ip = shared.per_ip.lock().ok()?;
        let n = per_ip.entry(ip).or_default();
        if *n >= shared.config.max_connections_per_ip {
            tracing::warn!(%ip, "HTTP connection refused: max_connections_per_ip reached");
            return None;
        }
        *n += 1;
    }
    Some(Admitted {
        shared: shared.clone(),
        ip: counted.then_some(ip),
        _permit: permit,
    })
}

async fn connection(
    shared: Arc<Shared>,
    guard: Admitted,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let _guard = guard;
    match tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(shared.config.header_timeout, acceptor.accept(tcp)).await;
            match handshake {
                Ok(Ok(stream)) => http(shared, stream, peer, true, shutdown).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
        }
        None => http(shared, tcp, peer, false, shutdown).await,
    }
}

async fn http<IO>(
    shared: Arc<Shared>,
    io: IO,
    peer: SocketAddr,
    secure: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/1.1 only, for now: over HTTP/2 a refusal sent before an upload's body is read
    // ends the stream with RST_STREAM, and curl 7.88 (Debian 12) then reports a framing
    // error instead of the status (tests/tests/upload.rs found it).
    let mut builder = hyper::server::conn::http1::Builder::new();
    let header_limit = usize::try_from(shared.config.max_header_size).unwrap_or(usize::MAX);
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_header_size(header_limit);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req, peer.ip(), secure).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    peer: IpAddr,
    secure: bool,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let Some(origin) = shared
        .sites
        .origin(&parts.uri, &parts.headers, peer, secure)
    else {
        return status(StatusCode::MISDIRECTED_REQUEST);
    };
    let prefix = shared.sites.path_prefix();
    if !prefix.is_empty()
        && let Some(stripped) = strip_prefix(&parts.uri, prefix)
    {
        parts.uri = stripped;
    }
    tracing::debug!(method = %parts.method, host = %origin.host, path = parts.uri.path(), client = %origin.client, "HTTP request");
    parts.extensions.insert(origin);
    let body = Body::new(IdleBody::new(body, shared.config.body_idle_timeout));
    match shared
        .app
        .clone()
        .oneshot(Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// `uri` without the leading `prefix` path, or `None` when it does not start with it.
fn strip_prefix(uri: &Uri, prefix: &str) -> Option<Uri> {
    let pq = uri.path_and_query()?.as_str();
    let rest = pq.strip_prefix(prefix)?;
    let rest = match rest.chars().next() {
        None => "/".to_owned(),
        Some('/') => rest.to_owned(),
        Some('?') => format!("/{rest}"),
        Some(_) => return None,
    };
    rest.parse().ok()
}

/// An empty response with `code`.
pub fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_path_prefix_is_stripped_only_at_a_segment_boundary() {
        let u = |s: &str| s.parse::<Uri>().expect("uri");
        assert_eq!(
            strip_prefix(&u("/postern/upload/a?x=1"), "/postern"),
            Some(u("/upload/a?x=1"))
        );
        assert_eq!(strip_prefix(&u("/postern"), "/postern"), Some(u("/")));
        assert_eq!(strip_prefix(&u("/posternx/a"), "/postern"), None);
        assert_eq!(strip_prefix(&u("/other"), "/postern"), None);
    }
}
