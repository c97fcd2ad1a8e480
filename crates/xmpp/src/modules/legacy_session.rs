//! RFC 3921 session establishment, kept as a no-op for old clients (RFC 6121 Appendix E):
//! advertised as optional and answered with an empty result.

use minidom::Element;

use crate::router::{IqKind, RouterBuilder, Scope};

const NS: &str = "urn:ietf:params:xml:ns:xmpp-session";

pub fn register(r: &mut RouterBuilder) {
    for scope in [Scope::Server, Scope::Account] {
        r.iq::<Element, _, _>(scope, IqKind::Set, NS, "session", |_, _| async { Ok(None) });
    }
    let feature = Element::builder("session", NS)
        .append(Element::bare("optional", NS))
        .build();
    r.stream_feature(crate::features::Stage::Authenticated, feature);
}
