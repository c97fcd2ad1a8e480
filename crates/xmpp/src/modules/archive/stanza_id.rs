//! XEP-0359 unique and stable stanza IDs: an archived message carries
//! `<stanza-id by='archive' id='…'/>` for each archive that holds it, the id its MAM results
//! use. Only the server says what its archives assigned: any `<stanza-id/>` a client put in
//! with a `by` of a served domain is removed first, and a session is shown only its own
//! archive's id ([`only_own`]).

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::ns;

use crate::server::Server;
use crate::sessions::Session;

/// A new archive id: 32 hex digits, the time (µs, 7 bytes) then 9 random bytes. Ids made
/// later sort later, so the archive's unique index on them grows at its end instead of
/// taking a write on a random page per message; the random part keeps them unguessable.
pub fn new_id(stamp_us: i64) -> String {
    use rand::RngExt;
    use std::fmt::Write as _;
    let random: [u8; 9] = rand::rng().random();
    let time = u64::try_from(stamp_us).unwrap_or(0) & 0x00ff_ffff_ffff_ffff;
    let mut id = String::with_capacity(32);
    let _ = write!(id, "{time:014x}");
    for b in random {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// Removes stanza-ids claiming to come from an archive of this server.
pub fn strip_forged(server: &Server, m: &mut Message) {
    m.payloads.retain(|p| {
        !(p.is("stanza-id", ns::SID)
            && p.attr("by")
                .and_then(|by| by.parse::<Jid>().ok())
                .is_some_and(|by| server.is_local_domain(by.domain().as_str())))
    });
}

/// Marks `m` as archived under `id` in `by`'s archive.
pub fn add(m: &mut Message, id: &str, by: &BareJid) {
    // Built directly: through `StanzaId`'s conversion it cost 3% of the server's CPU under
    // `bench/xmpp` messages.
    m.payloads.push(
        Element::builder("stanza-id", ns::SID)
            .attr(minidom::rxml::xml_ncname!("id").to_owned(), id)
            .attr(minidom::rxml::xml_ncname!("by").to_owned(), by.as_str())
            .build(),
    );
}

/// An archived message carries the id of each archive holding it; a session sees only its
/// own account's (slixmpp, for one, reads the first `<stanza-id/>` whatever its `by`). The
/// outbound filter: on a message, and on the message inside a carbon copy, the stanza-ids
/// of other local archives are removed.
pub fn only_own(server: &Server, session: &Session, mut el: Element) -> Element {
    if !el.is("message", ns::JABBER_CLIENT) {
        return el;
    }
    let me = session.jid.to_bare();
    strip_others(server, &mut el, &me);
    for child in el.children_mut() {
        if child.is("sent", ns::CARBONS) || child.is("received", ns::CARBONS) {
            for forwarded in child.children_mut() {
                for inner in forwarded.children_mut() {
                    if inner.name() == "message" {
                        strip_others(server, inner, &me);
                    }
                }
            }
        }
    }
    el
}

fn strip_others(server: &Server, message: &mut Element, me: &BareJid) {
    // The `by` of a local archive's id is the bare JID as [`add`] wrote it (forged ones are
    // gone), so comparing text is enough: no JID parsing per delivered message.
    let foreign = |c: &Element| {
        c.is("stanza-id", ns::SID)
            && c.attr("by").is_some_and(|by| {
                by != me.as_str()
                    && server.is_local_domain(by.rsplit_once('@').map_or(by, |(_, d)| d))
            })
    };
    if !message.children().any(foreign) {
        return;
    }
    for node in message.take_nodes() {
        match &node {
            minidom::Node::Element(c) if foreign(c) => {}
            _ => message.append_node(node),
        }
    }
}
