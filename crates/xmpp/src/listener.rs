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
    let conns = shutdown.clone();
    postern_core::listen::accept_until_shutdown(&listener, &mut shutdown, |tcp, peer| {
        if !server.connection_rate.admit(peer.ip()) {
            tracing::warn!(%peer, "connection rate exceeded; closing");
            return;
        }
        let Ok(permit) = server.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            return;
        };
        let span = tracing::info_span!("c2s", %peer, tls = direct_tls);
        let server = server.clone();
        let shutdown = conns.clone();
        tokio::spawn(
            async move {
                crate::stream::handle(server, tcp, peer, direct_tls, shutdown).await;
                drop(permit);
            }
            .instrument(span),
        );
    })
    .await;
}
