//! Every feature beyond the core lives in one file here and registers what it handles.
//! Adding a XEP is adding a file and a line in [`register_all`].

pub mod account_sync;
pub mod archive;
pub mod blocking;
pub mod carbons;
pub mod csi;
pub mod disco;
pub mod legacy_session;
pub mod message;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod proxy65;
pub mod roster;
pub mod sm;
pub mod time;
pub mod upload;
pub mod version;

use crate::config::XmppConfig;
use crate::router::RouterBuilder;

/// Registers every module; the order of hooks is fixed by their priorities, not by this list.
pub fn register_all(r: &mut RouterBuilder, config: &XmppConfig) {
    disco::register(r);
    ping::register(r);
    version::register(r);
    time::register(r);
    legacy_session::register(r);
    roster::register(r);
    presence::register(r);
    blocking::register(r);
    archive::register(r, &config.archive);
    account_sync::register(r);
    carbons::register(r);
    csi::register(r);
    sm::register(r);
    message::register(r);
    offline::register(r);
    upload::register(r, &config.upload);
    proxy65::register(r, &config.proxy65);
}
