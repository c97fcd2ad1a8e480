//! XEP-0313 queries of one's own archive: the form, the query with XEP-0059 paging, and the
//! archive's metadata (`urn:xmpp:mam:2#extended`). Results go to the querying resource as
//! `<message><result/></message>` before the IQ result that carries `<fin/>`.
//!
//! Form fields: `with` (bare or full JID), `start`, `end`, `before-id`, `after-id`, `ids`
//! (#extended) and `{urn:xmpp:fulltext:0}fulltext` (XEP-0431, every word). Pages hold at most
//! `[xmpp.archive] max_page` messages whatever `max` asks for.
//!
//! An account with the admin flag may query another local account's archive (its whole
//! admin log, preferences notwithstanding); each such query is written to the audit trail
//! (`postern logs audit`) before it runs. Anyone else gets `forbidden`.

use chrono::{DateTime, Utc};
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::delay::Delay;
use xmpp_parsers::forwarding::Forwarded;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::mam::{End, Fin, MetadataQuery, MetadataResponse, Query, Result_, Start};
use xmpp_parsers::message::Message;
use xmpp_parsers::rsm::{First, SetQuery, SetResult};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use postern_store::{ArchiveFilter, Archived, Page, Selection, With};

use crate::router::{Ctx, IqRequest, IqResult};
use crate::stanza::StanzaFault;

/// XEP-0431's form field.
pub const FULLTEXT: &str = "{urn:xmpp:fulltext:0}fulltext";

/// The form a client fills in (IQ get).
pub async fn form(ctx: Ctx, req: IqRequest<Query>) -> IqResult {
    ctx.own_account(&req.to)?;
    let field = |var: &str, type_| Field::new(var, type_);
    let form = DataForm::new(
        DataFormType::Form,
        xmpp_parsers::ns::MAM,
        vec![
            field("with", FieldType::JidSingle),
            field("start", FieldType::TextSingle),
            field("end", FieldType::TextSingle),
            field("before-id", FieldType::TextSingle),
            field("after-id", FieldType::TextSingle),
            field("ids", FieldType::ListMulti),
            field(FULLTEXT, FieldType::TextSingle),
        ],
    );
    Ok(Some(
        Query {
            queryid: None,
            node: None,
            form: Some(form),
            set: None,
            flip_page: false,
        }
        .into(),
    ))
}

/// A query (IQ set): the results, then `<fin/>`.
pub async fn query(ctx: Ctx, req: IqRequest<Query>) -> IqResult {
    let (owner, admin) = reader(&ctx, &req.to).await?;
    let q = req.payload;
    if q.node.is_some() {
        return Err(StanzaFault::item_not_found().with_text("No archive at that node"));
    }
    let config = &ctx.server.config.archive;
    // An admin reads the account's whole log, also what its preferences keep out of its
    // own view.
    let selection = if admin.is_some() {
        Selection::Account(owner.to_string())
    } else {
        Selection::Own(owner.to_string())
    };
    let mut ask = Asked::default();
    if let Some(form) = q.form {
        ask.read_form(form, config.max_page)?;
    }
    let set = q.set.unwrap_or(SetQuery {
        max: None,
        after: None,
        before: None,
        index: None,
    });
    if set.index.is_some() {
        return Err(
            StanzaFault::new(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)
                .with_text("Paging by index is not supported; use after/before"),
        );
    }
    let limit = set.max.unwrap_or(config.default_page).min(config.max_page);
    let backwards = set.before.is_some();
    ask.after.extend(set.after.filter(|a| !a.is_empty()));
    ask.before.extend(set.before.filter(|b| !b.is_empty()));

    // Every id named must be one of this archive's.
    let named: Vec<String> = ask
        .after
        .iter()
        .chain(&ask.before)
        .chain(ask.ids.iter().flatten())
        .cloned()
        .collect();
    let store = &ctx.server.store;
    let known = if named.is_empty() {
        Vec::new()
    } else {
        store
            .archive_ids(&selection, &named)
            .await
            .map_err(internal)?
    };
    let id_of = |uid: &String| {
        known
            .iter()
            .find(|(u, _)| u == uid)
            .map(|(_, id)| *id)
            .ok_or_else(|| {
                StanzaFault::item_not_found().with_text(format!("No message {uid} in the archive"))
            })
    };
    let mut filter = ask.filter;
    let after = ask.after.iter().map(id_of).collect::<Result<Vec<_>, _>>()?;
    let before = ask
        .before
        .iter()
        .map(id_of)
        .collect::<Result<Vec<_>, _>>()?;
    filter.after = after.into_iter().max();
    filter.before = before.into_iter().min();
    if let Some(ids) = &ask.ids {
        // An id not in this archive is simply not in the result (it may have expired).
        let ids: Vec<i64> = ids.iter().filter_map(|u| id_of(u).ok()).collect();
        filter.ids = Some(ids);
    }

    if let Some(actor) = &admin {
        // Recorded before the read: a read that cannot be recorded does not happen.
        let detail = format!(
            "archive of {owner}: {filter:?}, max {limit}{}",
            if backwards { ", backwards" } else { "" }
        );
        let now = Utc::now().timestamp_millis();
        store
            .audit(now, actor, "mam-query", &detail)
            .await
            .map_err(internal)?;
        tracing::info!(%actor, %owner, "admin read of an archive");
    }
    if limit == 0 {
        // XEP-0059 §2.6: `max` 0 asks for the count alone.
        let count = store
            .archive_count(&selection, &filter)
            .await
            .map_err(internal)?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        return Ok(Some(
            Fin {
                complete: count == 0,
                set: SetResult {
                    first: None,
                    last: None,
                    count: Some(count),
                },
            }
            .into(),
        ));
    }
    let (mut page, complete) = store
        .archive_page(&selection, &filter, Page { limit, backwards })
        .await
        .map_err(internal)?;
    if q.flip_page {
        page.reverse();
    }
    for row in &page {
        let Some(result) = result_message(&ctx, &owner, row, q.queryid.as_ref()) else {
            tracing::warn!(uid = %row.uid, "unreadable archived message skipped");
            continue;
        };
        ctx.session.send(result);
    }
    Ok(Some(
        Fin {
            complete,
            set: SetResult {
                first: page.first().map(|r| First {
                    index: None,
                    item: r.uid.clone(),
                }),
                last: page.last().map(|r| r.uid.clone()),
                count: None,
            },
        }
        .into(),
    ))
}

/// Whose archive a query to `to` reads: the sender's own, or, for an admin account, another
/// local account's (then with the actor to record in the audit trail).
async fn reader(ctx: &Ctx, to: &Jid) -> Result<(BareJid, Option<String>), StanzaFault> {
    let refused = match ctx.own_account(to) {
        Ok(me) => return Ok((me, None)),
        Err(refused) => refused,
    };
    let target = to.to_bare();
    let me = ctx.from.to_bare();
    let admin = match ctx.server.accounts.is_admin(me.as_str()).await {
        Ok(admin) => admin,
        Err(e) => {
            tracing::error!(error = %e, "admin lookup failed");
            false
        }
    };
    if !admin || !ctx.server.account_exists(&target).await {
        return Err(refused);
    }
    Ok((target, Some(format!("xmpp:{me}"))))
}

/// The first and last message of one's archive (IQ get `<metadata/>`).
pub async fn metadata(ctx: Ctx, req: IqRequest<MetadataQuery>) -> IqResult {
    let owner = ctx.own_account(&req.to)?;
    let bounds = ctx
        .server
        .store
        .archive_bounds(&Selection::Own(owner.to_string()))
        .await
        .map_err(internal)?;
    let (start, end) = match bounds {
        Some((first, last)) => (
            Some(Start {
                id: first.uid.clone(),
                timestamp: stamp(&first),
            }),
            Some(End {
                id: last.uid.clone(),
                timestamp: stamp(&last),
            }),
        ),
        None => (None, None),
    };
    Ok(Some(MetadataResponse { start, end }.into()))
}

/// What the form asked for, before ids are resolved.
#[derive(Default)]
struct Asked {
    filter: ArchiveFilter,
    after: Vec<String>,
    before: Vec<String>,
    ids: Option<Vec<String>>,
}

impl Asked {
    fn read_form(&mut self, form: DataForm, max_ids: usize) -> Result<(), StanzaFault> {
        if form.type_ != DataFormType::Submit {
            return Err(StanzaFault::bad_request("The query form must be submitted"));
        }
        if form.form_type() != Some(xmpp_parsers::ns::MAM) {
            return Err(StanzaFault::bad_request("Not a urn:xmpp:mam:2 form"));
        }
        for field in form.fields {
            let var = field.var.as_deref().unwrap_or_default();
            let one = || single(&field, var);
            match var {
                "FORM_TYPE" => {}
                "with" => {
                    let jid: Jid = one()?
                        .parse()
                        .map_err(|e| StanzaFault::bad_request(format!("with: {e}")))?;
                    self.filter.with = Some(With {
                        bare: jid.to_bare().to_string(),
                        resource: jid.resource().map(|r| r.to_string()),
                    });
                }
                "start" => self.filter.start_us = Some(micros(one()?, var)?),
                "end" => self.filter.end_us = Some(micros(one()?, var)?),
                "after-id" => self.after.push(one()?.to_owned()),
                "before-id" => self.before.push(one()?.to_owned()),
                "ids" => {
                    if field.values.len() > max_ids {
                        return Err(StanzaFault::bad_request(format!(
                            "At most {max_ids} ids per query"
                        )));
                    }
                    self.ids = Some(field.values.clone());
                }
                FULLTEXT => {
                    let text = one()?;
                    if !text.trim().is_empty() {
                        self.filter.words = Some(text.to_owned());
                    }
                }
                other => {
                    return Err(StanzaFault::bad_request(format!(
                        "Unsupported field: {other}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn single<'a>(field: &'a Field, var: &str) -> Result<&'a str, StanzaFault> {
    match field.values.as_slice() {
        [v] => Ok(v),
        _ => Err(StanzaFault::bad_request(format!(
            "{var}: exactly one value expected"
        ))),
    }
}

/// An XEP-0082 date-time as µs since the epoch.
fn micros(value: &str, var: &str) -> Result<i64, StanzaFault> {
    let t: xmpp_parsers::date::DateTime = value
        .parse()
        .map_err(|_| StanzaFault::bad_request(format!("{var}: not an XEP-0082 date-time")))?;
    Ok(t.0.timestamp_micros())
}

fn stamp(row: &Archived) -> xmpp_parsers::date::DateTime {
    let t = DateTime::<Utc>::from_timestamp_micros(row.stamp_us).unwrap_or_default();
    xmpp_parsers::date::DateTime(t.fixed_offset())
}

/// One result of a query, for the querying resource.
fn result_message(
    ctx: &Ctx,
    owner: &BareJid,
    row: &Archived,
    queryid: Option<&xmpp_parsers::mam::QueryId>,
) -> Option<Element> {
    let message = Message::try_from(row.xml.parse::<Element>().ok()?).ok()?;
    let result = Result_ {
        id: row.uid.clone(),
        queryid: queryid.cloned(),
        forwarded: Forwarded {
            delay: Some(Delay {
                from: None,
                stamp: stamp(row),
                data: None,
            }),
            message,
        },
    };
    let mut m = Message::new(Some(Jid::from(ctx.from.clone())));
    m.from = Some(Jid::from(owner.clone()));
    m.payloads.push(result.into());
    Some(m.into())
}

fn internal(e: postern_store::StoreError) -> StanzaFault {
    tracing::error!(error = %e, "archive query failed");
    StanzaFault::internal()
}
