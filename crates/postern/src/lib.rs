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
    /// The XMPP server handle (sessions, connection count), when it is enabled.
    pub xmpp: Option<postern_xmpp::Server>,
    pub accounts: Accounts,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    gateway_task: Option<JoinHandle<()>>,
    http_task: Option<JoinHandle<()>>,
    /// Bound HTTPS addresses (WKD, uploads); empty when nothing is served over HTTP.
    pub https: Vec<SocketAddr>,
    /// Bound plain HTTP addresses (for a reverse proxy).
    pub http_plain: Vec<SocketAddr>,
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
        if let Some(h) = self.http_task {
            let _ = h.await;
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
    // The HTTPS listener is bound first: the services hand out URLs with its port.
    let wkd = config.gateway.enabled && config.gateway.wkd.enabled;
    let labels: Vec<String> = if wkd {
        vec![postern_gateway::wkd::server::WKD_LABEL.to_owned()]
    } else {
        Vec::new()
    };
    let http = match config.http.enabled() {
        true => {
            let listeners = postern_http::Listeners::bind(&config.http).await?;
            let sites = postern_http::Sites::from_config(
                &config.http,
                config.domain_names(),
                labels.clone(),
                &listeners,
            );
            Some((listeners, sites))
        }
        false => None,
    };
    let mut routes = postern_http::Router::new();
    let mut starttls = Vec::new();
    let mut direct = Vec::new();
    let mut task: JoinHandle<()> = tokio::spawn(async {});
    let mut xmpp_handle = None;
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
        let mut xmpp = config.xmpp.clone();
        if let Some((_, sites)) = &http {
            let dir = xmpp
                .upload
                .dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("uploads"));
            if xmpp.upload.enabled {
                postern_xmpp::modules::upload::expiry::recover(&store, &dir).await;
            }
            xmpp.upload.site = Some(postern_xmpp::modules::upload::Site {
                dir,
                sites: std::sync::Arc::new(sites.clone()),
            });
        }
        let server = postern_xmpp::Server::new(
            xmpp,
            config.domain_names(),
            store.clone(),
            accounts.clone(),
            identities.clone(),
        )?;
        routes = routes.merge(server.http_routes());
        xmpp_handle = Some(server.clone());
        task = tokio::spawn(server.serve(s, d, rx.clone()));
    }
    let (mut smtp, mut gateway, mut gateway_task) = (None, None, None);
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
        if wkd {
            routes = routes.merge(postern_gateway::wkd::server::router(g.clone()));
        }
        gateway_task = Some(tokio::spawn(g.clone().serve(listener, rx.clone())));
        gateway = Some(g);
    }
    let (mut https, mut http_plain, mut http_task) = (Vec::new(), Vec::new(), None);
    if let Some((listeners, sites)) = http {
        https = listeners.https_addrs();
        http_plain = listeners.plain_addrs();
        let tls = postern_http::tls::server_config(identities, &labels)?;
        http_task = Some(tokio::spawn(postern_http::serve(
            listeners,
            routes,
            sites,
            tls,
            config.http.clone(),
            rx,
        )));
    }
    Ok(Running {
        starttls,
        direct_tls: direct,
        smtp,
        gateway,
        xmpp: xmpp_handle,
        accounts,
        shutdown,
        task,
        gateway_task,
        http_task,
        https,
        http_plain,
    })
}
