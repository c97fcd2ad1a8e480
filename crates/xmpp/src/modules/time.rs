//! XEP-0202: Entity Time of the server, in UTC.

use chrono::{Offset, Utc};
use xmpp_parsers::ns;
use xmpp_parsers::time::{TimeQuery, TimeResult};

use crate::router::{IqKind, RouterBuilder, Scope};

pub fn register(r: &mut RouterBuilder) {
    r.iq::<TimeQuery, _, _>(Scope::Server, IqKind::Get, ns::TIME, "time", |_, _| async {
        Ok(Some(
            TimeResult {
                tz_offset: Utc.fix(),
                utc: Utc::now(),
            }
            .into(),
        ))
    });
    r.disco_feature(Scope::Server, ns::TIME);
}
