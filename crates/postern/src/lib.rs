//! The `postern` binary's library half: config, certificates and the wiring of services,
//! so end-to-end tests start exactly what `postern serve` starts.

pub mod certs;
pub mod config;

use std::net::SocketAddr;

use std::os::unix::fs::DirBuilderExt;

use anyhow::Context;
use postern_accounts::Accounts;
use postern_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;

/// Opens the store named by the config (creating the data dir for SQLite).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    // The data dir holds credentials and keys: owner-only.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let url = config.database_url();
    Store::connect(&url)
        .await
        .with_context(|| format!("opening database {url}"))
}

/// Services started by [`start`]; dropping it does not stop them, [`Running::stop`] does.
pub struct Running {
    /// Bound STARTTLS addresses (real ports when the config said port 0).
    pub starttls: Vec<SocketAddr>,
    /// Bound direct-TLS addresses.
    pub direct_tls: Vec<SocketAddr>,
    /// Bound SMTP address of the OpenPGP gateway, when it is enabled.
    pub smtp: Option<SocketAddr>,
    /// The gateway handle (key store, quarantine), when it is enabled.
    pub gateway: Option<postern_gateway::Gateway>,
    pub accounts: Accounts,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    gateway_task: Option<JoinHandle<()>>,
    wkd_task: Option<JoinHandle<()>>,
    /// Bound WKD (HTTPS) address, when enabled.
    pub wkd: Option<SocketAddr>,
}

impl Running {
    /// Asks every service to stop and waits for the listeners to close.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Resolves when the services end (after a stop).
    pub async fn wait(self) {
        let _ = self.task.await;
        if let Some(g) = self.gateway_task {
            let _ = g.await;
        }
        if let Some(w) = self.wkd_task {
            let _ = w.await;
        }
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Binds every listener and starts every enabled service.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let store = open_store(config).await?;
    let accounts = Accounts::with_config(store.clone(), &config.accounts)?;
    let identities = certs::identities(config)?;
    let (shutdown, rx) = watch::channel(false);
    let mut starttls = Vec::new();
    let mut direct = Vec::new();
    let mut task: JoinHandle<()> = tokio::spawn(async {});
    if config.xmpp.enabled {
        let bind = |addrs: &[SocketAddr]| {
            let addrs = addrs.to_vec();
            async move {
                let mut out = Vec::new();
                for a in addrs {
                    out.push(
                        TcpListener::bind(a)
                            .await
                            .with_context(|| format!("binding {a}"))?,
                    );
                }
                anyhow::Ok(out)
            }
        };
        let s = bind(&config.xmpp.starttls).await?;
        let d = bind(&config.xmpp.direct_tls).await?;
        starttls = s.iter().filter_map(|l| l.local_addr().ok()).collect();
        direct = d.iter().filter_map(|l| l.local_addr().ok()).collect();
        let server = postern_xmpp::Server::new(
            config.xmpp.clone(),
            config.domain_names(),
            store.clone(),
            accounts.clone(),
            identities,
        )?;
        task = tokio::spawn(server.serve(s, d, rx.clone()));
    }
    let (mut smtp, mut gateway, mut gateway_task) = (None, None, None);
    let (mut wkd, mut wkd_task) = (None, None);
    if config.gateway.enabled {
        // The next hop is only contacted per mail: the gateway starts while it is down.
        let listener = TcpListener::bind(config.gateway.listen)
            .await
            .with_context(|| format!("binding gateway SMTP {}", config.gateway.listen))?;
        smtp = listener.local_addr().ok();
        let g = postern_gateway::Gateway::new(
            config.gateway.clone(),
            config.domain_names(),
            &config.data_dir,
            accounts.clone(),
        )
        .context("setting up the OpenPGP gateway")?;
        if config.gateway.wkd.enabled {
            let listen = config.gateway.wkd.listen;
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding WKD {listen}"))?;
            wkd = listener.local_addr().ok();
            let ids = certs::identities(config)?
                .into_iter()
                .map(|id| postern_gateway::wkd::tls::Identity {
                    domain: id.domain,
                    chain: id.chain,
                    key: id.key,
                })
                .collect();
            let tls = postern_gateway::wkd::tls::server_config(ids)?;
            wkd_task = Some(tokio::spawn(postern_gateway::wkd::server::serve(
                g.clone(),
                listener,
                tls,
                rx.clone(),
            )));
        }
        gateway_task = Some(tokio::spawn(g.clone().serve(listener, rx)));
        gateway = Some(g);
    }
    Ok(Running {
        starttls,
        direct_tls: direct,
        smtp,
        gateway,
        accounts,
        shutdown,
        task,
        gateway_task,
        wkd_task,
        wkd,
    })
}
