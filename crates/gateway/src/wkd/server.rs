//! The WKD listener: HTTPS/1.1, GET and HEAD, one request per connection (WKD clients
//! fetch one or two small files). The caller binds the listener and supplies the TLS
//! config (the domains' certificates), as with the SMTP listener.

use std::sync::Arc;
use std::time::Duration;

use sequoia_openpgp::serialize::SerializeInto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::{Route, hash, route};
use crate::Gateway;

/// Longest request head read (request line and header fields).
const HEAD_MAX: usize = 8 * 1024;
/// Concurrent WKD connections; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// A connection's whole life: TLS handshake, request, response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body (binary keys for a key request).
    pub body: Vec<u8>,
}

/// Serves WKD on `listener` until `shutdown` turns true.
pub async fn serve(
    gw: Gateway,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    // Its own cap, so web clients never take connection slots from the MTA.
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "WKD accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let gw = gw.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let work = async {
                let mut tls = acceptor.accept(tcp).await?;
                let head = read_head(&mut tls).await?;
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                let (head_only, resp) = answer(&gw, &head, sni.as_deref()).await;
                tls.write_all(&encode(&resp, head_only)).await?;
                tls.shutdown().await?;
                Ok::<_, std::io::Error>(())
            };
            match tokio::time::timeout(CONNECTION_TIMEOUT, work).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "WKD connection failed"),
                Err(_) => tracing::debug!(%peer, "WKD connection timed out"),
            }
        });
    }
}

/// Looks the request up. Returns whether it was HEAD, and the response.
pub async fn answer(gw: &Gateway, head: &str, sni: Option<&str>) -> (bool, Response) {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("/"),
    );
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (head_only, status(405));
    }
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned())
        .or_else(|| sni.map(str::to_owned))
        .unwrap_or_default();
    let resp = match route(&host, target) {
        Route::Policy { domain } if gw.is_local_domain(&domain) => Response {
            status: 200,
            body: Vec::new(),
        },
        Route::Key {
            domain,
            hash: wanted,
            local,
        } if gw.is_local_domain(&domain) => match keys(gw, &domain, &wanted, local).await {
            Some(body) => Response { status: 200, body },
            None => status(404),
        },
        _ => status(404),
    };
    tracing::info!(%host, target, status = resp.status, "WKD request");
    (head_only, resp)
}

/// The binary keys published for the address hashing to `wanted`, or `None`.
async fn keys(gw: &Gateway, domain: &str, wanted: &str, local: Option<String>) -> Option<Vec<u8>> {
    let address = match local {
        Some(l) if hash(&l) == wanted => format!("{}@{domain}", l.to_lowercase()),
        Some(_) => return None,
        None => gw
            .keys
            .list(Some(true))
            .await
            .ok()?
            .into_iter()
            .flat_map(|k| k.addresses)
            .find(|a| {
                a.rsplit_once('@')
                    .is_some_and(|(l, d)| d.eq_ignore_ascii_case(domain) && hash(l) == wanted)
            })?,
    };
    let now = std::time::SystemTime::now();
    let mut body = Vec::new();
    for cert in gw.keys.local_public_certs(&address).await.ok()? {
        if !postern_pgp::can_encrypt(&cert, now) {
            continue;
        }
        let only = cert.retain_userids(|u| {
            u.userid()
                .email_normalized()
                .ok()
                .flatten()
                .is_some_and(|e| e == address)
        });
        body.extend(only.to_vec().ok()?);
    }
    (!body.is_empty()).then_some(body)
}

fn status(code: u16) -> Response {
    Response {
        status: code,
        body: Vec::new(),
    }
}

fn encode(resp: &Response, head_only: bool) -> Vec<u8> {
    let reason = match resp.status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/octet-stream\r\n\
         Access-Control-Allow-Origin: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        resp.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    out
}

async fn read_head<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > HEAD_MAX {
            return Err(std::io::Error::other("request head too long"));
        }
    }
}
