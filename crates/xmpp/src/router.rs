//! The router: knows no XEP by name. It classifies a stanza's destination once and runs what
//! modules registered for it. An IQ nobody handles gets `service-unavailable`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::presence::Presence;

use crate::features::{Features, Mechanism, Stage};
use crate::server::Server;
use crate::sessions::Session;
use crate::stanza::{Stanza, StanzaFault, error_reply};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where a stanza is addressed, relative to this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// No `to`: for presence a broadcast, otherwise the sender's own account.
    Unaddressed,
    /// A served domain.
    Server(String),
    /// The bare JID of an address on a served domain (the sender's own included).
    Account(BareJid),
    /// A full JID on a served domain.
    Full(FullJid),
    /// A sub-service of a served domain (`upload.example.com`, a room at `conference.…`).
    Service { label: &'static str, to: Jid },
    /// Anything on a domain this server does not serve (no federation).
    Remote(Jid),
}

/// Who sent the stanza being routed.
#[derive(Clone)]
pub struct Ctx {
    pub server: Server,
    /// The sender's full JID (`session.jid`).
    pub from: FullJid,
    /// The sender's session: its queue and its modules' state.
    pub session: Arc<Session>,
}

impl Ctx {
    /// The sender's own account when `to` is it (or was left out): for what only the account
    /// itself may read or change (roster, blocklist, carbons, …); `forbidden` otherwise.
    pub fn own_account(&self, to: &Jid) -> Result<BareJid, StanzaFault> {
        let me = self.from.to_bare();
        if to.to_bare() == me {
            Ok(me)
        } else {
            Err(StanzaFault::forbidden())
        }
    }
}

/// Which addresses an IQ handler answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// IQs to a served domain.
    Server,
    /// IQs to an account's bare JID (or with no `to`: the sender's own account).
    Account,
    /// IQs to the sub-service with this label ([`RouterBuilder::service`]).
    Service(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqKind {
    Get,
    Set,
}

/// A typed IQ request. `to` is always filled in: the server or the target bare JID.
pub struct IqRequest<P> {
    pub from: FullJid,
    pub to: Jid,
    pub id: String,
    pub payload: P,
}

/// A handler's answer: the result payload (or none), or a stanza error.
pub type IqResult = Result<Option<Element>, StanzaFault>;

/// Events of a session's life that modules may act on.
#[derive(Clone)]
pub enum SessionEvent {
    /// The resource is bound; fired before the session's first stanza is routed.
    Bound(Arc<Session>),
    /// The first available presence of a session (RFC 6121 §4.2).
    InitialPresence(Arc<Session>),
    /// The connection is gone; the session is already unbound.
    Closed(Arc<Session>),
}

type IqFn = Arc<dyn Fn(Ctx, Jid, String, Element) -> BoxFuture<IqResult> + Send + Sync>;
type HookFn<T> = Arc<dyn Fn(Ctx, Dest, T) -> BoxFuture<Option<T>> + Send + Sync>;
type IdleFn = Arc<dyn Fn(&Server, &Arc<Session>) + Send + Sync>;
/// See [`RouterBuilder::outbound_filter`].
type FilterFn = Arc<dyn Fn(&Server, &Arc<Session>, Element) -> Filtered + Send + Sync>;
/// See [`RouterBuilder::nonza`].
type NonzaFn = Arc<dyn Fn(&Server, &Arc<Session>, Element) -> NonzaOutcome + Send + Sync>;

/// What an outbound filter did with an element.
pub enum Filtered {
    /// On to the next filter.
    Pass(Element),
    /// Dropped, or kept by the filter for later.
    Drop,
    /// These, in order (e.g. what the filter held, then this one), each on to the next filter.
    Many(Vec<Element>),
}

impl From<Option<Element>> for Filtered {
    fn from(el: Option<Element>) -> Self {
        el.map_or(Filtered::Drop, Filtered::Pass)
    }
}

/// What a nonza handler wants the session to do.
pub enum NonzaOutcome {
    Done,
    /// Write these now, through the outbound filters of priority above `after` (the
    /// module's own filter released them).
    Release {
        after: i32,
        elements: Vec<Element>,
    },
    /// End the stream with this error.
    Close(xmpp_parsers::stream_error::StreamError),
}
type EventFn = Arc<dyn Fn(Server, SessionEvent) -> BoxFuture<()> + Send + Sync>;
/// See [`RouterBuilder::keep_detached`].
type KeepFn = Arc<dyn Fn(&Server, &Arc<Session>) -> Option<Duration> + Send + Sync>;
/// See [`RouterBuilder::on_close`].
type CloseFn = Arc<dyn Fn(&Server, &Arc<Session>) -> Option<Element> + Send + Sync>;
/// See [`RouterBuilder::bind2_feature`].
type Bind2Fn = Arc<dyn Fn(&Server, &Arc<Session>, Element) -> Option<Element> + Send + Sync>;
/// See [`RouterBuilder::barrier`].
type BarrierFn = Arc<dyn Fn(&Server, &Arc<Session>) -> Option<BoxFuture<bool>> + Send + Sync>;
/// See [`RouterBuilder::on_shutdown`].
type ShutdownFn = Arc<dyn Fn(Server) -> BoxFuture<()> + Send + Sync>;
/// See [`RouterBuilder::task`].
pub type TaskFn =
    Arc<dyn Fn(Server, tokio::sync::watch::Receiver<bool>) -> BoxFuture<()> + Send + Sync>;
/// See [`RouterBuilder::http`].
pub type HttpFn = Arc<dyn Fn(Server) -> axum::Router + Send + Sync>;
/// See [`RouterBuilder::pre_bind_nonza`].
type PreBindFn = Arc<dyn Fn(&Server, &BareJid, Element) -> PreBind + Send + Sync>;

/// What a nonza sent after authentication but before binding leads to.
pub enum PreBind {
    /// Write this and go on negotiating (e.g. a `<failed/>`).
    Reply(Element),
    /// Nothing to say (the protocol defines no answer); go on negotiating.
    Ignore,
    /// Hand the connection to this existing session (stream resumption); if the session has
    /// ended by the time it would take the connection, write `too_late` instead and go on
    /// negotiating.
    Attach {
        session: Arc<Session>,
        greet: crate::sessions::Greet,
        too_late: Element,
    },
}

/// Collects module registrations; frozen into a [`Router`].
#[derive(Default)]
pub struct RouterBuilder {
    iq: HashMap<(Scope, IqKind, String, String), IqFn>,
    messages: Vec<(i32, HookFn<Message>)>,
    presences: Vec<(i32, HookFn<Presence>)>,
    iqs: Vec<(i32, HookFn<Iq>)>,
    filters: Vec<(i32, FilterFn)>,
    nonzas: HashMap<(String, String), NonzaFn>,
    idle: Vec<IdleFn>,
    events: Vec<EventFn>,
    keep: Vec<KeepFn>,
    closing: Vec<CloseFn>,
    pre_bind: HashMap<(String, String), PreBindFn>,
    bind2: Vec<(String, String, Bind2Fn)>,
    tasks: Vec<TaskFn>,
    barriers: Vec<BarrierFn>,
    shutdown: Vec<ShutdownFn>,
    http: Vec<HttpFn>,
    /// What clients are offered (stream features, mechanisms, inline features, disco).
    offers: Features,
    /// Registrations that clash, reported by [`RouterBuilder::build`].
    problems: Vec<String>,
}

/// The modules' registrations do not fit together (a start-up error, never a silent
/// replacement).
#[derive(Debug, thiserror::Error)]
#[error("module registrations clash: {}", .0.join("; "))]
pub struct RegistryError(pub Vec<String>);

impl RouterBuilder {
    /// Handles IQs of `kind` whose payload is `<name xmlns=ns>`, decoded as `P`; a payload that
    /// does not decode gets `bad-request`.
    pub fn iq<P, F, Fut>(&mut self, scope: Scope, kind: IqKind, ns: &str, name: &str, handler: F)
    where
        P: TryFrom<Element> + Send + 'static,
        P::Error: std::fmt::Display,
        F: Fn(Ctx, IqRequest<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f: IqFn = Arc::new(move |ctx: Ctx, to: Jid, id: String, payload: Element| {
            let handler = handler.clone();
            Box::pin(async move {
                let payload = P::try_from(payload)
                    .map_err(|e| StanzaFault::bad_request(format!("invalid payload: {e}")))?;
                let from = ctx.from.clone();
                handler(
                    ctx,
                    IqRequest {
                        from,
                        to,
                        id,
                        payload,
                    },
                )
                .await
            })
        });
        let key = (scope, kind, ns.to_owned(), name.to_owned());
        if self.iq.contains_key(&key) {
            self.problems.push(format!(
                "two handlers for {kind:?} <{name} xmlns='{ns}'/> IQs to the {scope:?}"
            ));
            return;
        }
        self.iq.insert(key, f);
    }

    /// Message hooks run by ascending `priority`; a hook returns the message to pass it on.
    pub fn message_hook<F, Fut>(&mut self, priority: i32, hook: F)
    where
        F: Fn(Ctx, Dest, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Message>> + Send + 'static,
    {
        self.messages
            .push((priority, Arc::new(move |c, d, m| Box::pin(hook(c, d, m)))));
    }

    /// Presence hooks, like message hooks.
    pub fn presence_hook<F, Fut>(&mut self, priority: i32, hook: F)
    where
        F: Fn(Ctx, Dest, Presence) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Presence>> + Send + 'static,
    {
        self.presences
            .push((priority, Arc::new(move |c, d, p| Box::pin(hook(c, d, p)))));
    }

    /// IQ hooks run by ascending `priority` before an IQ is dispatched to its handler or
    /// forwarded; a hook returns the IQ to pass it on (or answers or drops it itself).
    pub fn iq_hook<F, Fut>(&mut self, priority: i32, hook: F)
    where
        F: Fn(Ctx, Dest, Iq) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Iq>> + Send + 'static,
    {
        self.iqs
            .push((priority, Arc::new(move |c, d, i| Box::pin(hook(c, d, i)))));
    }

    /// The one delivery path: every element written to a session passes these filters, by
    /// ascending `priority`, in the session's own task right before the write. A filter
    /// returns the element to pass it on, or `None` when it dropped (or kept) it. Filters run
    /// for every stanza a client receives: they must not wait and should be cheap.
    pub fn outbound_filter(
        &mut self,
        priority: i32,
        filter: impl Fn(&Server, &Arc<Session>, Element) -> Filtered + Send + Sync + 'static,
    ) {
        self.filters.push((priority, Arc::new(filter)));
    }

    /// Handles the top-level element `<name xmlns=ns/>` of a bound session (a nonza: not a
    /// stanza, never routed), in the session's own task. An element no module registered ends
    /// the stream with `unsupported-stanza-type`.
    pub fn nonza(
        &mut self,
        ns: &str,
        name: &str,
        handler: impl Fn(&Server, &Arc<Session>, Element) -> NonzaOutcome + Send + Sync + 'static,
    ) {
        let key = (ns.to_owned(), name.to_owned());
        if self.nonzas.contains_key(&key) {
            self.problems
                .push(format!("two handlers for the <{name} xmlns='{ns}'/> nonza"));
            return;
        }
        self.nonzas.insert(key, Arc::new(handler));
    }

    /// Handles `<name xmlns=ns/>` sent after authentication and before resource binding
    /// (where anything but binding ends the stream otherwise).
    pub fn pre_bind_nonza(
        &mut self,
        ns: &str,
        name: &str,
        handler: impl Fn(&Server, &BareJid, Element) -> PreBind + Send + Sync + 'static,
    ) {
        let key = (ns.to_owned(), name.to_owned());
        if self.pre_bind.contains_key(&key) {
            self.problems.push(format!(
                "two handlers for the <{name} xmlns='{ns}'/> nonza before binding"
            ));
            return;
        }
        self.pre_bind.insert(key, Arc::new(handler));
    }

    /// A XEP-0386 Bind2 inline feature: advertised as `var` in SASL2's `<bind/>` offer;
    /// `<name xmlns=ns/>` inside a client's `<bind/>` runs `handler` on the new session before
    /// its first stanza, and what it returns goes into `<bound/>`.
    pub fn bind2_feature(
        &mut self,
        var: &str,
        ns: &str,
        name: &str,
        handler: impl Fn(&Server, &Arc<Session>, Element) -> Option<Element> + Send + Sync + 'static,
    ) {
        if self.bind2.iter().any(|(n, m, _)| n == ns && m == name) {
            self.problems
                .push(format!("two Bind2 handlers for <{name} xmlns='{ns}'/>"));
            return;
        }
        self.offers.add_bind2(var);
        self.bind2
            .push((ns.to_owned(), name.to_owned(), Arc::new(handler)));
    }

    /// An element offered in XEP-0388 SASL2's `<inline/>` (next to Bind2): something a
    /// client may put in `<authenticate/>`, handled by the [`RouterBuilder::pre_bind_nonza`]
    /// of its name (e.g. `<sm/>` for an inline `<resume/>`).
    pub fn sasl2_inline_feature(&mut self, feature: Element) {
        self.offers.add_sasl2_inline(feature);
    }

    /// A SASL mechanism the stream layer runs ([`crate::stream::sasl`]); offered in this
    /// order, each where the connection allows it.
    pub fn sasl_mechanism(&mut self, mechanism: Mechanism) {
        if let Err(problem) = self.offers.add_mechanism(mechanism) {
            self.problems.push(problem);
        }
    }

    /// When a session's connection is lost (not closed by its client, not ended by an error),
    /// the session is kept, detached, for the longest time a hook returns: what is sent to it
    /// meanwhile still passes the outbound filters, and a new connection may take it over
    /// ([`crate::sessions::Session::attach`]). With no hook returning a time it ends at once.
    pub fn keep_detached(
        &mut self,
        hook: impl Fn(&Server, &Arc<Session>) -> Option<Duration> + Send + Sync + 'static,
    ) {
        self.keep.push(Arc::new(hook));
    }

    /// A last element to write before the server closes a bound session's stream (not after
    /// a lost connection, nor before a stream error).
    pub fn on_close(
        &mut self,
        hook: impl Fn(&Server, &Arc<Session>) -> Option<Element> + Send + Sync + 'static,
    ) {
        self.closing.push(Arc::new(hook));
    }

    /// Runs when a bound client has been silent for the idle time (e.g. to ping it). What it
    /// sends goes through the session's queue like everything else.
    pub fn on_idle(&mut self, hook: impl Fn(&Server, &Arc<Session>) + Send + Sync + 'static) {
        self.idle.push(Arc::new(hook));
    }

    pub fn on_event<F, Fut>(&mut self, handler: F)
    where
        F: Fn(Server, SessionEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events
            .push(Arc::new(move |s, e| Box::pin(handler(s, e))));
    }

    /// Work a stanza's routing started and did not wait for (an archive write), that must be
    /// done before the session's handled count is read (an SM `<a/>`, `<enabled/>`,
    /// `<resumed/>`): the future resolves when it is, false when it failed (then the session
    /// ends with an error instead of acknowledging what was not done).
    pub fn barrier(
        &mut self,
        barrier: impl Fn(&Server, &Arc<Session>) -> Option<BoxFuture<bool>> + Send + Sync + 'static,
    ) {
        self.barriers.push(Arc::new(barrier));
    }

    /// Last work at shutdown, after every connection has closed (e.g. writing out what is
    /// queued); the server waits for it.
    pub fn on_shutdown(&mut self, hook: impl Fn(Server) -> BoxFuture<()> + Send + Sync + 'static) {
        self.shutdown.push(Arc::new(hook));
    }

    /// A background task of the module (e.g. expiry), started with the server's listeners;
    /// it ends when the shutdown signal turns true.
    pub fn task(
        &mut self,
        task: impl Fn(Server, tokio::sync::watch::Receiver<bool>) -> BoxFuture<()>
        + Send
        + Sync
        + 'static,
    ) {
        self.tasks.push(Arc::new(task));
    }

    /// Routes the module serves on Postern's HTTPS listener (`postern-http`; e.g. the PUT and
    /// GET of HTTP File Upload), built once the server exists.
    pub fn http(&mut self, routes: impl Fn(Server) -> axum::Router + Send + Sync + 'static) {
        self.http.push(Arc::new(routes));
    }

    /// A sub-service on every served domain at `label.domain` (its IQs reach handlers of
    /// [`Scope::Service`]`(label)`; disco#items on the domain lists it).
    pub fn service(&mut self, label: &'static str, name: &'static str) {
        if let Err(problem) = self
            .offers
            .add_service(crate::hosts::Service { label, name })
        {
            self.problems.push(problem);
        }
    }

    /// A start-up problem of the module (a listener it cannot bind): the server does not
    /// start, and says why.
    pub fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// A disco#info feature (XEP-0030) the module really implements.
    pub fn disco_feature(&mut self, scope: Scope, feature: &str) {
        self.offers.add_disco(scope, feature);
    }

    /// A stream feature offered at `stage` (e.g. after authentication, next to `<bind/>`).
    pub fn stream_feature(&mut self, stage: Stage, feature: Element) {
        self.offers.add_stream_feature(stage, feature);
    }

    pub fn build(mut self) -> Result<Router, RegistryError> {
        if !self.problems.is_empty() {
            return Err(RegistryError(self.problems));
        }
        self.messages.sort_by_key(|(p, _)| *p);
        self.presences.sort_by_key(|(p, _)| *p);
        self.iqs.sort_by_key(|(p, _)| *p);
        self.filters.sort_by_key(|(p, _)| *p);
        Ok(Router {
            iq: self.iq,
            messages: self.messages.into_iter().map(|(_, h)| h).collect(),
            presences: self.presences.into_iter().map(|(_, h)| h).collect(),
            iqs: self.iqs.into_iter().map(|(_, h)| h).collect(),
            filters: self.filters,
            nonzas: self.nonzas,
            idle: self.idle,
            events: self.events,
            keep: self.keep,
            closing: self.closing,
            pre_bind: self.pre_bind,
            bind2: self.bind2,
            tasks: self.tasks,
            barriers: self.barriers,
            shutdown: self.shutdown,
            http: self.http,
            offers: self.offers,
        })
    }
}

/// The frozen dispatch table.
pub struct Router {
    iq: HashMap<(Scope, IqKind, String, String), IqFn>,
    messages: Vec<HookFn<Message>>,
    presences: Vec<HookFn<Presence>>,
    iqs: Vec<HookFn<Iq>>,
    filters: Vec<(i32, FilterFn)>,
    nonzas: HashMap<(String, String), NonzaFn>,
    idle: Vec<IdleFn>,
    events: Vec<EventFn>,
    keep: Vec<KeepFn>,
    closing: Vec<CloseFn>,
    pre_bind: HashMap<(String, String), PreBindFn>,
    bind2: Vec<(String, String, Bind2Fn)>,
    tasks: Vec<TaskFn>,
    barriers: Vec<BarrierFn>,
    shutdown: Vec<ShutdownFn>,
    http: Vec<HttpFn>,
    offers: Features,
}

impl Router {
    /// Waits for the work the session's routings left running ([`RouterBuilder::barrier`]);
    /// false when some of it failed.
    pub async fn barriers(&self, server: &Server, session: &Arc<Session>) -> bool {
        for barrier in &self.barriers {
            if let Some(done) = barrier(server, session)
                && !done.await
            {
                return false;
            }
        }
        true
    }

    /// Runs the modules' shutdown work ([`RouterBuilder::on_shutdown`]).
    pub async fn shut_down(&self, server: &Server) {
        for hook in &self.shutdown {
            hook(server.clone()).await;
        }
    }

    /// The modules' background tasks ([`RouterBuilder::task`]).
    pub fn tasks(&self) -> &[TaskFn] {
        &self.tasks
    }

    /// The modules' HTTP routes ([`RouterBuilder::http`]).
    pub fn http_routes(&self) -> &[HttpFn] {
        &self.http
    }

    /// What clients are offered, at every stage.
    pub fn offers(&self) -> &Features {
        &self.offers
    }

    /// Routes a stanza a bound client sent (its `from` already stamped).
    pub async fn route(&self, ctx: Ctx, stanza: Stanza) {
        let dest = ctx.server.classify(stanza.to());
        match stanza {
            Stanza::Iq(iq) => {
                if let Some(iq) = run_hooks(&self.iqs, &ctx, &dest, iq).await {
                    self.route_iq(ctx, dest, iq).await;
                }
            }
            Stanza::Message(m) => {
                if let Some(m) = run_hooks(&self.messages, &ctx, &dest, m).await {
                    bounce(
                        &ctx,
                        &Stanza::Message(m),
                        &StanzaFault::service_unavailable(),
                    );
                }
            }
            Stanza::Presence(p) => {
                run_hooks(&self.presences, &ctx, &dest, p).await;
            }
        }
    }

    async fn route_iq(&self, ctx: Ctx, dest: Dest, iq: Iq) {
        let (kind, payload) = match &iq {
            Iq::Get { payload, .. } => (IqKind::Get, payload),
            Iq::Set { payload, .. } => (IqKind::Set, payload),
            Iq::Result { .. } | Iq::Error { .. } => {
                // Responses only travel to a full JID; anything else answers the server.
                if let Dest::Full(to) = &dest {
                    ctx.server.send_to_full(to, iq.into());
                }
                return;
            }
        };
        let (scope, to) = match &dest {
            Dest::Unaddressed => (Scope::Account, Jid::from(ctx.from.to_bare())),
            Dest::Account(b) => (Scope::Account, Jid::from(b.clone())),
            Dest::Server(d) => match d.parse::<Jid>() {
                Ok(j) => (Scope::Server, j),
                Err(_) => return,
            },
            Dest::Service { label, to } => (Scope::Service(label), to.clone()),
            Dest::Full(full) => {
                if !ctx.server.send_to_full(full, iq.clone().into()) {
                    bounce(&ctx, &Stanza::Iq(iq), &StanzaFault::service_unavailable());
                }
                return;
            }
            Dest::Remote(_) => {
                bounce(
                    &ctx,
                    &Stanza::Iq(iq),
                    &StanzaFault::remote_server_not_found(),
                );
                return;
            }
        };
        let key = (scope, kind, payload.ns(), payload.name().to_owned());
        let id = iq.id().to_owned();
        let result = match self.iq.get(&key) {
            Some(handler) => handler(ctx.clone(), to.clone(), id.clone(), payload.clone()).await,
            None => Err(StanzaFault::service_unavailable()),
        };
        let reply = match result {
            Ok(payload) => Iq::Result {
                from: Some(to),
                to: Some(ctx.from.clone().into()),
                id,
                payload,
            },
            Err(fault) => Iq::Error {
                from: Some(to),
                to: Some(ctx.from.clone().into()),
                id,
                payload: None,
                error: fault.to_error(),
            },
        };
        ctx.session.send(reply.into());
    }

    /// Passes `el` through the outbound filters for `session` of priority above `after` (all
    /// with `None`); what is left is appended to `out`, to be written in that order.
    pub fn filter_outbound(
        &self,
        server: &Server,
        session: &Arc<Session>,
        el: Element,
        after: Option<i32>,
        out: &mut Vec<Element>,
    ) {
        let start = match after {
            None => 0,
            Some(p) => self.filters.partition_point(|(q, _)| *q <= p),
        };
        self.filter_from(server, session, el, start, out);
    }

    fn filter_from(
        &self,
        server: &Server,
        session: &Arc<Session>,
        el: Element,
        index: usize,
        out: &mut Vec<Element>,
    ) {
        let Some((_, filter)) = self.filters.get(index) else {
            out.push(el);
            return;
        };
        match filter(server, session, el) {
            Filtered::Pass(el) => self.filter_from(server, session, el, index + 1, out),
            Filtered::Drop => {}
            Filtered::Many(els) => {
                for el in els {
                    self.filter_from(server, session, el, index + 1, out);
                }
            }
        }
    }

    /// The handler of a bound session's nonza, if a module registered one.
    pub fn nonza(
        &self,
        server: &Server,
        session: &Arc<Session>,
        el: Element,
    ) -> Option<NonzaOutcome> {
        let handler = self.nonzas.get(&(el.ns(), el.name().to_owned()))?;
        Some(handler(server, session, el))
    }

    /// The handler of a nonza sent before binding, if a module registered one.
    pub fn pre_bind_nonza(
        &self,
        server: &Server,
        account: &BareJid,
        el: Element,
    ) -> Option<PreBind> {
        let handler = self.pre_bind.get(&(el.ns(), el.name().to_owned()))?;
        Some(handler(server, account, el))
    }

    /// Runs the Bind2 inline feature `el` requests on a new session; `None` when no module
    /// offers it or it has nothing to say.
    pub fn bind2_inline(
        &self,
        server: &Server,
        session: &Arc<Session>,
        el: Element,
    ) -> Option<Element> {
        let (_, _, handler) = self
            .bind2
            .iter()
            .find(|(ns, name, _)| el.is(name.as_str(), ns.as_str()))?;
        handler(server, session, el)
    }

    /// How long to keep `session` after its connection was lost; `None`: end it now.
    pub fn keep_detached(&self, server: &Server, session: &Arc<Session>) -> Option<Duration> {
        self.keep.iter().filter_map(|k| k(server, session)).max()
    }

    /// What to write before closing `session`'s stream (see [`RouterBuilder::on_close`]).
    pub fn closing(&self, server: &Server, session: &Arc<Session>) -> Vec<Element> {
        self.closing
            .iter()
            .filter_map(|c| c(server, session))
            .collect()
    }

    /// The client of `session` has been silent for the idle time.
    pub fn idle(&self, server: &Server, session: &Arc<Session>) {
        for hook in &self.idle {
            hook(server, session);
        }
    }

    pub async fn fire(&self, server: &Server, event: SessionEvent) {
        for handler in &self.events {
            handler(server.clone(), event.clone()).await;
        }
    }
}

/// Runs `hooks` in order on `item`; what the last one passes on, if any.
async fn run_hooks<T>(hooks: &[HookFn<T>], ctx: &Ctx, dest: &Dest, item: T) -> Option<T> {
    let mut current = item;
    for hook in hooks {
        current = hook(ctx.clone(), dest.clone(), current).await?;
    }
    Some(current)
}

/// Returns an error for `stanza` to its sender, unless it is an error itself.
pub fn bounce(ctx: &Ctx, stanza: &Stanza, fault: &StanzaFault) {
    if crate::stanza::is_error(stanza) {
        return;
    }
    let original = stanza.clone().into_element();
    let reply = error_reply(&original, fault, None);
    ctx.session.send(reply);
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::ping::Ping;

    #[test]
    fn a_second_handler_for_the_same_iq_is_a_start_up_error() {
        let mut r = RouterBuilder::default();
        let handler = |_: Ctx, _: IqRequest<Ping>| async { Ok(None) };
        r.iq(Scope::Server, IqKind::Get, "urn:xmpp:ping", "ping", handler);
        r.iq(
            Scope::Account,
            IqKind::Get,
            "urn:xmpp:ping",
            "ping",
            handler,
        );
        assert!(RouterBuilder::default().build().is_ok());
        r.iq(Scope::Server, IqKind::Get, "urn:xmpp:ping", "ping", handler);
        let err = r.build().err().expect("a clash");
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.to_string().contains("urn:xmpp:ping"), "{err}");
    }
}
