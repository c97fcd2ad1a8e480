//! The one handle every task holds: config, store, accounts, sessions, router, TLS.

use std::sync::Arc;

use minidom::Element;
use postern_accounts::Accounts;
use postern_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};

use crate::config::XmppConfig;
use crate::hosts::{Host, Hosts};
use crate::limits::{AuthThrottle, ConnectionRate};
use crate::router::{Dest, RegistryError, Router, RouterBuilder};
use crate::sessions::Sessions;
use crate::tls::{DomainIdentity, Tls, TlsError};

/// Why the server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Cheap to clone; shared by every connection task and module handler.
#[derive(Clone)]
pub struct Server(Arc<Inner>);

pub struct Inner {
    pub config: XmppConfig,
    /// The served domains (lowercase; the first is the default) and their sub-services.
    pub hosts: Hosts,
    pub store: Store,
    pub accounts: Accounts,
    pub sessions: Sessions,
    pub router: Router,
    pub tls: Tls,
    pub connection_rate: ConnectionRate,
    pub auth_throttle: AuthThrottle,
    pub connections: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for Server {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Server {
    /// Builds the server with every module in [`crate::modules`] registered.
    pub fn new(
        config: XmppConfig,
        domains: Vec<String>,
        store: Store,
        accounts: Accounts,
        identities: Vec<DomainIdentity>,
    ) -> Result<Self, ServerError> {
        let mut builder = RouterBuilder::default();
        crate::stream::register(&mut builder);
        crate::modules::register_all(&mut builder, &config);
        let router = builder.build()?;
        let tls = Tls::new(identities)?;
        let hosts = Hosts::new(domains, router.offers().services().to_vec());
        Ok(Server(Arc::new(Inner {
            connection_rate: ConnectionRate::new(&config.limits),
            auth_throttle: AuthThrottle::new(&config.limits),
            connections: Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections)),
            hosts,
            config,
            store,
            accounts,
            sessions: Sessions::default(),
            router,
            tls,
        })))
    }

    /// Accepts on the given (already bound) listeners until `shutdown` turns true.
    pub async fn serve(
        self,
        starttls: Vec<TcpListener>,
        direct_tls: Vec<TcpListener>,
        shutdown: watch::Receiver<bool>,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        for task in self.router.tasks() {
            tasks.spawn(task(self.clone(), shutdown.clone()));
        }
        for l in starttls {
            tasks.spawn(crate::listener::accept_loop(
                self.clone(),
                l,
                false,
                shutdown.clone(),
            ));
        }
        for l in direct_tls {
            tasks.spawn(crate::listener::accept_loop(
                self.clone(),
                l,
                true,
                shutdown.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
        // Connections hold a permit each: once all are back, every session has closed with
        // `system-shutdown`. Stragglers are cut after a grace period.
        let all = u32::try_from(self.config.limits.max_connections).unwrap_or(u32::MAX);
        let grace = std::time::Duration::from_secs(5);
        if tokio::time::timeout(grace, self.connections.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        self.router.shut_down(&self).await;
    }

    /// The routes the modules serve over HTTPS, merged (empty when none does).
    pub fn http_routes(&self) -> axum::Router {
        self.router
            .http_routes()
            .iter()
            .fold(axum::Router::new(), |all, routes| {
                all.merge(routes(self.clone()))
            })
    }

    /// Client connections open now (each holds a permit until its task ends).
    pub fn open_connections(&self) -> usize {
        self.config
            .limits
            .max_connections
            .saturating_sub(self.connections.available_permits())
    }

    /// Whether `domain` is one we serve (not a sub-service).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.hosts.is_domain(domain)
    }

    /// The destination class of an address (see [`Dest`]).
    pub fn classify(&self, to: Option<&Jid>) -> Dest {
        let Some(to) = to else {
            return Dest::Unaddressed;
        };
        match self.hosts.host(to.domain().as_str()) {
            Host::Domain => {}
            Host::Service(s) => {
                return Dest::Service {
                    label: s.label,
                    to: to.clone(),
                };
            }
            Host::Foreign => return Dest::Remote(to.clone()),
        }
        match (to.node(), to.clone().try_into_full()) {
            (None, _) => Dest::Server(to.domain().to_string()),
            (Some(_), Ok(full)) => Dest::Full(full),
            (Some(_), Err(bare)) => Dest::Account(bare),
        }
    }

    /// Queues `el` for one bound resource; false when there is none (or it is stuck).
    pub fn send_to_full(&self, to: &FullJid, el: Element) -> bool {
        self.sessions.get(to).is_some_and(|s| s.send(el))
    }

    /// Whether `bare` is an active account here (online sessions prove it without a query).
    pub async fn account_exists(&self, bare: &BareJid) -> bool {
        if !self.is_local_domain(bare.domain().as_str()) || bare.node().is_none() {
            return false;
        }
        if self.sessions.has_resources(bare) {
            return true;
        }
        match self.accounts.is_active(bare.as_str()).await {
            Ok(active) => active,
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                false
            }
        }
    }
}
