//! Postern's XMPP server (RFC 6120/6121 client-to-server).
//!
//! # Layout
//!
//! - [`listener`]: accept loops for STARTTLS (5222) and direct TLS (5223, XEP-0368); the
//!   connection semaphore and per-IP connection rate live there.
//! - [`tls`]: rustls configuration with one certificate per served domain, chosen by SNI, and
//!   the channel-binding data SCRAM-PLUS needs.
//! - [`stream`]: one task per connection. Negotiation is a chain of typestates
//!   ([`stream::negotiate`]): plaintext → TLS → SASL ([`stream::sasl`]) → resource binding
//!   ([`stream::bind`]). Only a bound session can hand stanzas to the router: the type that
//!   routes does not exist before. A session may outlive its connection ([`stream::session`]):
//!   kept detached after a drop, it is taken over by a later connection that resumes it
//!   instead of binding (XEP-0198 in [`modules::sm`]).
//! - [`stanza`]: every top-level element is decoded once into [`stanza::Inbound`]; stanzas
//!   become typed [`stanza::Stanza`] values (xmpp-parsers `Iq`, `Message`, `Presence`).
//! - [`router`]: knows no XEP by name. It computes the destination class of a stanza once
//!   (server, own account, other local account, full JID, remote) and runs what modules
//!   registered: IQ handlers by payload namespace, ordered message/presence hooks, session
//!   events, and the stream/disco features they declare.
//! - [`sessions`]: the registry of bound resources (bare JID → resources), each with a bounded
//!   outbound queue drained by its connection task, and [`extensions`]: the typed per-session
//!   state modules keep there (the core keeps none of theirs).
//! - [`features`]: the one registry of what clients are offered (stream features per stage,
//!   SASL mechanisms, SASL2/Bind2 inline features, disco features), filled by the code that
//!   implements each.
//! - [`hosts`]: the served domains and their sub-services (`upload.`, `conference.`), which
//!   `classify` routes to and disco#items lists.
//! - [`modules`]: one file per RFC section or XEP, each with `register(&mut RouterBuilder)`.
//! - [`server`]: the [`Server`] handle (config, store, accounts, sessions, router) cloned into
//!   every task.
//!
//! # Path of a stanza
//!
//! bytes → `stream::io::Io` (buffering, stanza size cap) → tokio-xmpp `XmlStream<_, Element>` →
//! [`stanza::Inbound::decode`] → the bound session stamps `from` with its full JID →
//! [`router::Router::route`] → destination class → module handlers/hooks → for delivery,
//! [`sessions::Sessions`] → the recipient's outbound queue → its connection task writes it.

pub mod config;
pub mod extensions;
pub mod features;
pub mod hosts;
pub mod limits;
pub mod listener;
pub mod modules;
pub mod router;
pub mod server;
pub mod sessions;
pub mod stanza;
pub mod stream;
pub mod tls;

pub use config::XmppConfig;
pub use server::Server;
pub use tls::DomainIdentity;
