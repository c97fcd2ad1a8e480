//! Accounts that leave the organisation's directory leave the server: for every served
//! domain whose account backend lists accounts (`[accounts.dovecot] userdb_socket`), a task
//! reads the list at start and every `sync_interval` (`Accounts::sync`), and closes the
//! live sessions of each account that is no longer listed with a `<not-authorized/>`
//! stream error. Their SCRAM keys and FAST tokens stop working at the same sync; a PLAIN
//! login asks the backend, which refuses it.

use std::time::Duration;

use tokio::sync::watch;
use xmpp_parsers::jid::BareJid;

use crate::router::RouterBuilder;
use crate::server::Server;
use crate::sessions::Outbound;

pub fn register(r: &mut RouterBuilder) {
    r.task(|server, shutdown| Box::pin(run(server, shutdown)));
}

async fn run(server: Server, shutdown: watch::Receiver<bool>) {
    let domains: Vec<(String, Duration)> = server
        .hosts
        .domains()
        .iter()
        .filter_map(|d| Some((d.clone(), server.accounts.sync_interval(d)?)))
        .collect();
    let tasks = domains.into_iter().map(|(domain, every)| {
        let (server, mut shutdown) = (server.clone(), shutdown.clone());
        async move {
            loop {
                sync(&server, &domain).await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    });
    futures::future::join_all(tasks).await;
}

async fn sync(server: &Server, domain: &str) {
    let synced = match server.accounts.sync(domain).await {
        Ok(Some(synced)) => synced,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, %domain, "reading the backend's accounts failed; trying again at the next sync");
            return;
        }
    };
    for address in &synced.gone {
        let Ok(bare) = address.parse::<BareJid>() else {
            continue;
        };
        let sessions = server.sessions.resources(&bare);
        for session in &sessions {
            session.push(Outbound::Revoked);
        }
        if !sessions.is_empty() {
            tracing::info!(account = %address, sessions = sessions.len(), "sessions closed: the account left its backend");
        }
    }
    tracing::debug!(%domain, listed = synced.listed, added = synced.added.len(), gone = synced.gone.len(), "accounts synced with the backend");
}
