//! The typed edge: every top-level element a client sends is decoded once, here.

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// A top-level element, classified. Decoded once and matched at once, so the size
/// difference between variants costs nothing worth a box per stanza.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    Stanza(Stanza),
    /// A stanza that does not parse; answered with `fault` (keeping its `id`): `jid-malformed`
    /// for an address that is none (RFC 6120 §8.3.3.8), else `bad-request`.
    BadStanza {
        element: Element,
        fault: StanzaFault,
    },
    StartTls,
    Sasl(Sasl),
    /// Any other top-level element (e.g. a future stream-management nonza).
    Other(Element),
}

/// SASL nonzas (RFC 6120 §6.4). Mechanism names are kept as strings: an unknown one must
/// get `invalid-mechanism`, not a parse error.
#[derive(Debug)]
pub enum Sasl {
    Auth {
        mechanism: String,
        data: Result<Vec<u8>, ()>,
    },
    Response(Result<Vec<u8>, ()>),
    Abort,
    /// XEP-0388 `<authenticate/>` (SASL2), whole: it carries more than the mechanism.
    Authenticate(Box<Element>),
}

/// The three stanza kinds, typed.
#[derive(Debug, Clone)]
pub enum Stanza {
    Iq(Iq),
    Message(Message),
    Presence(Presence),
}

impl Inbound {
    pub fn decode(el: Element) -> Inbound {
        let ns = el.ns();
        if ns == ns::JABBER_CLIENT {
            if matches!(el.name(), "iq" | "message" | "presence")
                && let Some(bad) = ["to", "from"]
                    .into_iter()
                    .find(|a| el.attr(*a).is_some_and(|v| Jid::new(v).is_err()))
            {
                return Inbound::BadStanza {
                    fault: StanzaFault::new(ErrorType::Modify, DefinedCondition::JidMalformed)
                        .with_text(format!("The '{bad}' address is not an XMPP address")),
                    element: without_addresses(el),
                };
            }
            if el.name() == "iq"
                && matches!(el.attr("type"), Some("get" | "set"))
                && el.children().count() != 1
            {
                return Inbound::BadStanza {
                    fault: StanzaFault::bad_request(
                        "An IQ get or set carries exactly one payload (RFC 6120 §8.2.3)",
                    ),
                    element: el,
                };
            }
            let parsed = match el.name() {
                "iq" => Iq::try_from(el.clone())
                    .map(Stanza::Iq)
                    .map_err(|e| e.to_string()),
                "message" => Message::try_from(el.clone())
                    .map(Stanza::Message)
                    .map_err(|e| e.to_string()),
                "presence" => Presence::try_from(el.clone())
                    .map(Stanza::Presence)
                    .map_err(|e| e.to_string()),
                _ => return Inbound::Other(el),
            };
            return match parsed {
                Ok(s) => Inbound::Stanza(s),
                Err(reason) => Inbound::BadStanza {
                    element: el,
                    fault: StanzaFault::bad_request(reason),
                },
            };
        }
        if ns == ns::TLS && el.name() == "starttls" {
            return Inbound::StartTls;
        }
        // RFC 6120 SASL and XEP-0388 SASL2 share `<response/>` and `<abort/>`.
        if ns == ns::SASL || ns == ns::SASL2 {
            match el.name() {
                "auth" if ns == ns::SASL => {
                    let mechanism = el.attr("mechanism").unwrap_or_default().to_owned();
                    return Inbound::Sasl(Sasl::Auth {
                        mechanism,
                        data: sasl_data(&el.text()),
                    });
                }
                "authenticate" if ns == ns::SASL2 => {
                    return Inbound::Sasl(Sasl::Authenticate(Box::new(el)));
                }
                "response" => return Inbound::Sasl(Sasl::Response(sasl_data(&el.text()))),
                "abort" => return Inbound::Sasl(Sasl::Abort),
                _ => {}
            }
        }
        Inbound::Other(el)
    }
}

/// The element without `to` and `from`, so an error about them does not echo them back.
fn without_addresses(mut el: Element) -> Element {
    el.attrs_mut().retain(|ns, name, _| {
        !(ns.is_none() && (name.as_str() == "to" || name.as_str() == "from"))
    });
    el
}

/// RFC 6120 §6.4.2: base64, with `=` meaning "empty", whitespace tolerated.
pub(crate) fn sasl_data(text: &str) -> Result<Vec<u8>, ()> {
    use base64::Engine;
    let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if t == "=" || t.is_empty() {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|_| ())
}

impl Stanza {
    pub fn to(&self) -> Option<&Jid> {
        match self {
            Stanza::Iq(s) => s.to(),
            Stanza::Message(s) => s.to.as_ref(),
            Stanza::Presence(s) => s.to.as_ref(),
        }
    }

    /// The server stamps `from` on everything a client sends (RFC 6120 §8.1.2.1).
    pub fn set_from(&mut self, from: Jid) {
        match self {
            Stanza::Iq(s) => *s.from_mut() = Some(from),
            Stanza::Message(s) => s.from = Some(from),
            Stanza::Presence(s) => s.from = Some(from),
        }
    }

    pub fn into_element(self) -> Element {
        match self {
            Stanza::Iq(s) => s.into(),
            Stanza::Message(s) => s.into(),
            Stanza::Presence(s) => s.into(),
        }
    }
}

/// A stanza error a handler wants returned to the sender.
#[derive(Debug, Clone)]
pub struct StanzaFault {
    pub kind: ErrorType,
    pub condition: DefinedCondition,
    pub text: Option<String>,
    /// An application-specific condition beside the defined one (RFC 6120 §8.3.3.4).
    pub app: Option<Box<Element>>,
}

impl StanzaFault {
    pub fn new(kind: ErrorType, condition: DefinedCondition) -> Self {
        Self {
            kind,
            condition,
            text: None,
            app: None,
        }
    }
    pub fn with_app(mut self, condition: Element) -> Self {
        self.app = Some(Box::new(condition));
        self
    }
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(text)
    }
    pub fn service_unavailable() -> Self {
        Self::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable)
    }
    pub fn forbidden() -> Self {
        Self::new(ErrorType::Auth, DefinedCondition::Forbidden)
    }
    pub fn item_not_found() -> Self {
        Self::new(ErrorType::Cancel, DefinedCondition::ItemNotFound)
    }
    pub fn remote_server_not_found() -> Self {
        Self::new(ErrorType::Cancel, DefinedCondition::RemoteServerNotFound)
            .with_text("This server does not federate with other domains")
    }
    pub fn internal() -> Self {
        Self::new(ErrorType::Wait, DefinedCondition::InternalServerError)
    }

    pub fn to_error(&self) -> StanzaError {
        let mut e = StanzaError::new(self.kind.clone(), self.condition.clone(), "en", "");
        e.texts.clear();
        if let Some(t) = &self.text {
            e.texts.insert("en".into(), t.clone());
        }
        e.other = self.app.as_deref().cloned();
        e
    }
}

/// The error reply to `original` (any stanza element, even one that did not parse): `to`
/// and `from` swapped, `type='error'`, `id` kept (RFC 6120 §8.3).
pub fn error_reply(original: &Element, fault: &StanzaFault, from: Option<&Jid>) -> Element {
    let mut b = Element::builder(original.name(), ns::JABBER_CLIENT)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), "error");
    if let Some(id) = original.attr("id") {
        b = b.attr(minidom::rxml::xml_ncname!("id").to_owned(), id);
    }
    if let Some(to) = original.attr("from") {
        b = b.attr(minidom::rxml::xml_ncname!("to").to_owned(), to);
    }
    let replier = from
        .map(|j| j.to_string())
        .or_else(|| original.attr("to").map(str::to_owned));
    if let Some(f) = replier {
        b = b.attr(minidom::rxml::xml_ncname!("from").to_owned(), f);
    }
    b.append(Element::from(fault.to_error())).build()
}

/// Error stanzas are never answered with errors (RFC 6120 §8.3.1).
pub fn is_error(stanza: &Stanza) -> bool {
    match stanza {
        Stanza::Iq(Iq::Error { .. }) => true,
        Stanza::Message(m) => m.type_ == MessageType::Error,
        Stanza::Presence(p) => p.type_ == xmpp_parsers::presence::Type::Error,
        Stanza::Iq(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().expect("test xml")
    }

    #[test]
    fn stanzas_sasl_and_unknown_elements_are_told_apart() {
        let m = el("<message xmlns='jabber:client' to='b@x' type='chat'><body>hi</body></message>");
        assert!(matches!(
            Inbound::decode(m),
            Inbound::Stanza(Stanza::Message(_))
        ));
        let a = el("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-UNKNOWN'>=</auth>");
        match Inbound::decode(a) {
            Inbound::Sasl(Sasl::Auth { mechanism, data }) => {
                assert_eq!(mechanism, "X-UNKNOWN");
                assert_eq!(data, Ok(vec![]));
            }
            other => panic!("{other:?}"),
        }
        let bad = el("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!</auth>");
        assert!(matches!(
            Inbound::decode(bad),
            Inbound::Sasl(Sasl::Auth { data: Err(()), .. })
        ));
        let sm = el("<enable xmlns='urn:xmpp:sm:3'/>");
        assert!(matches!(Inbound::decode(sm), Inbound::Other(_)));
    }

    #[test]
    fn a_stanza_that_does_not_parse_keeps_its_id_in_the_error() {
        let m = el("<message xmlns='jabber:client' id='m1' from='a@x/r' type='bogus'/>");
        let Inbound::BadStanza { element, .. } = Inbound::decode(m) else {
            panic!("not bad")
        };
        let reply = error_reply(&element, &StanzaFault::bad_request("no"), None);
        assert_eq!(reply.attr("id"), Some("m1"));
        assert_eq!(reply.attr("to"), Some("a@x/r"));
        assert_eq!(reply.attr("type"), Some("error"));
        let err = reply
            .get_child("error", ns::JABBER_CLIENT)
            .expect("error child");
        assert!(err.has_child("bad-request", ns::XMPP_STANZAS));
    }
}
