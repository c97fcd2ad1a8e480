//! The accept loop of every listener: accepts until shutdown, backs off when accepting fails
//! (`EMFILE` and friends) instead of spinning, and hands each connection to `on_conn` (which
//! applies the service's own limits and spawns its task).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Pause after a failed accept.
const BACKOFF: Duration = Duration::from_millis(100);

pub async fn accept_until_shutdown(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
    mut on_conn: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                on_conn(tcp, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_handed_over_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, mut shutdown) = watch::channel(false);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            accept_until_shutdown(&listener, &mut shutdown, |tcp, peer| {
                let _ = seen_tx.send((tcp.nodelay().unwrap_or(false), peer));
            })
            .await;
        });
        let client = TcpStream::connect(addr).await.expect("connect");
        let (nodelay, peer) = seen.recv().await.expect("handed over");
        assert!(nodelay);
        assert_eq!(peer, client.local_addr().expect("local"));
        stop.send(true).expect("stop");
        server.await.expect("loop ends at shutdown");
    }
}
