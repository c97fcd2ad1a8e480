//! XEP-0065's `http://jabber.org/protocol/bytestreams` payloads (xmpp-parsers has none):
//! the `<query/>` a client sends the proxy (empty to learn its address, with `<activate/>`
//! to start a relay) and the `<streamhost/>` it answers with.

use xso::{AsXml, FromXml};

pub const NS: &str = "http://jabber.org/protocol/bytestreams";

/// `<query xmlns='http://jabber.org/protocol/bytestreams'/>`.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS, name = "query")]
pub struct Query {
    /// The stream id (an activation names it).
    #[xml(attribute(default))]
    pub sid: Option<String>,
    /// `tcp` (the default) or `udp`, which this proxy does not relay.
    #[xml(attribute(default))]
    pub mode: Option<String>,
    #[xml(child(n = ..))]
    pub streamhosts: Vec<StreamHost>,
    #[xml(child(default))]
    pub activate: Option<Activate>,
}

/// Where the proxy is reached.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS, name = "streamhost")]
pub struct StreamHost {
    #[xml(attribute)]
    pub jid: String,
    #[xml(attribute)]
    pub host: String,
    #[xml(attribute)]
    pub port: u16,
}

/// `<activate>target full JID</activate>`.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS, name = "activate")]
pub struct Activate {
    #[xml(text)]
    pub jid: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    #[test]
    fn queries_round_trip() {
        let el: Element = "<query xmlns='http://jabber.org/protocol/bytestreams' sid='s1'>\
                           <activate>bob@example.org/phone</activate></query>"
            .parse()
            .expect("xml");
        let q = Query::try_from(el).expect("a query");
        assert_eq!(q.sid.as_deref(), Some("s1"));
        assert_eq!(
            q.activate.map(|a| a.jid).as_deref(),
            Some("bob@example.org/phone")
        );
        let answer: Element = Query {
            sid: None,
            mode: None,
            streamhosts: vec![StreamHost {
                jid: "proxy.example.org".into(),
                host: "192.0.2.1".into(),
                port: 7777,
            }],
            activate: None,
        }
        .into();
        let host = answer.get_child("streamhost", NS).expect("a streamhost");
        assert_eq!(
            (host.attr("jid"), host.attr("host"), host.attr("port")),
            (Some("proxy.example.org"), Some("192.0.2.1"), Some("7777"))
        );
        let empty: Element = "<query xmlns='http://jabber.org/protocol/bytestreams'/>"
            .parse()
            .expect("xml");
        assert!(Query::try_from(empty).is_ok());
    }
}
