//! Accept loops. Listeners are bound by the caller (tests bind port 0) and passed in.

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::server::Server;

/// Accepts connections until shutdown; each runs in its own task and span.
pub async fn accept_loop(
    server: Server,
    listener: TcpListener,
    direct_tls: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, direct_tls, "xmpp listener ready");
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if !server.connection_rate.admit(peer.ip()) {
            tracing::warn!(%peer, "connection rate exceeded; closing");
            continue;
        }
        let Ok(permit) = server.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let span = tracing::info_span!("c2s", %peer, tls = direct_tls);
        let server = server.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                crate::stream::handle(server, tcp, peer, direct_tls, shutdown).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}
