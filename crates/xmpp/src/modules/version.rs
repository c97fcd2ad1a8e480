//! XEP-0092: Software Version of the server (name and version; the OS is not disclosed).

use xmpp_parsers::ns;
use xmpp_parsers::version::{VersionQuery, VersionResult};

use crate::router::{IqKind, RouterBuilder, Scope};

pub fn register(r: &mut RouterBuilder) {
    r.iq::<VersionQuery, _, _>(
        Scope::Server,
        IqKind::Get,
        ns::VERSION,
        "query",
        |_, _| async {
            let v = VersionResult {
                name: "Postern".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                os: None,
            };
            Ok(Some(v.into()))
        },
    );
    r.disco_feature(Scope::Server, ns::VERSION);
}
