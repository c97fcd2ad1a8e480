//! What Postern's XMPP server and mail gateway share, below both (they never depend on each
//! other):
//!
//! - [`address`]: the mail address, which is also the account's bare JID: parsed and
//!   normalised once ([`Address`]), then carried typed.
//! - [`config`]: sizes (`"50 MiB"`) and durations (`"30s"`) as config files write them.
//! - [`tls`]: the certificate resolver that picks a served domain's certificate by SNI.
//! - [`listen`]: the accept loop every listener runs (shutdown, back-off on `EMFILE`).

pub mod address;
pub mod config;
pub mod listen;
pub mod tls;

pub use address::{Address, AddressError, AsAddress};
pub use config::ByteSize;
