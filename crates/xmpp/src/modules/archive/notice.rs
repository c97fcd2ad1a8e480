//! `[xmpp.archive] notice`: a headline from the server to each new device of an account, the
//! first time it binds, saying (for instance) that messages are logged, as several
//! jurisdictions require. A device is its SASL2 user-agent id when the client sent one (Bind2
//! resources change at every login), else its resource.

use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};

use crate::router::{RouterBuilder, SessionEvent};
use crate::sessions::DeviceId;

pub fn register(r: &mut RouterBuilder) {
    r.on_event(|server, event| async move {
        let SessionEvent::Bound(session) = event else {
            return;
        };
        let Some(text) = server.config.archive.notice.clone() else {
            return;
        };
        let device = session
            .ext
            .with(|d: &mut DeviceId| d.0.clone())
            .unwrap_or_else(|| session.jid.resource().to_string());
        let owner = session.jid.to_bare();
        let now = chrono::Utc::now().timestamp_millis();
        match server
            .store
            .notice_first_seen(owner.as_str(), &device, now)
            .await
        {
            Ok(true) => {
                let mut m = Message::new(Some(Jid::from(session.jid.clone())));
                m.from = Some(Jid::from(owner.domain().to_owned()));
                m.type_ = MessageType::Headline;
                m.bodies
                    .insert(xmpp_parsers::message::Lang(String::new()), text);
                session.send(Element::from(m));
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "recording the archive notice failed"),
        }
    });
}
