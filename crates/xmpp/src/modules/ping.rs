//! XEP-0199: XMPP Ping, to the server and to one's own account.

use xmpp_parsers::ns;
use xmpp_parsers::ping::Ping;

use crate::router::{IqKind, RouterBuilder, Scope};
use crate::stanza::StanzaFault;

pub fn register(r: &mut RouterBuilder) {
    r.iq::<Ping, _, _>(Scope::Server, IqKind::Get, ns::PING, "ping", |_, _| async {
        Ok(None)
    });
    r.iq::<Ping, _, _>(
        Scope::Account,
        IqKind::Get,
        ns::PING,
        "ping",
        |ctx, req| async move {
            // A ping to someone else's bare JID is not answered on their behalf (XEP-0199 §4.3).
            if req.to == ctx.from.to_bare() {
                Ok(None)
            } else {
                Err(StanzaFault::service_unavailable())
            }
        },
    );
    r.disco_feature(Scope::Server, ns::PING);
}
