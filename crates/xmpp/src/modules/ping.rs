//! XEP-0199: XMPP Ping, to the server and to one's own account; and the server pings a
//! client that has been silent for the idle time (it must answer within a quarter of it).

use std::sync::atomic::{AtomicU64, Ordering};

use minidom::Element;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::ns;
use xmpp_parsers::ping::Ping;

use crate::router::{IqKind, RouterBuilder, Scope};
use crate::stanza::StanzaFault;

static PING_ID: AtomicU64 = AtomicU64::new(0);

pub fn register(r: &mut RouterBuilder) {
    r.on_idle(|_, session| {
        session.send(ping(&session.jid));
    });
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

/// A server-to-client ping.
fn ping(to: &FullJid) -> Element {
    let id = PING_ID.fetch_add(1, Ordering::Relaxed);
    Element::builder("iq", ns::JABBER_CLIENT)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), "get")
        .attr(
            minidom::rxml::xml_ncname!("id").to_owned(),
            format!("srv-ping-{id}"),
        )
        .attr(minidom::rxml::xml_ncname!("to").to_owned(), to.to_string())
        .append(Element::bare("ping", ns::PING))
        .build()
}
