//! `postern logs ...`: the admin's chat log reader, on the archive the XMPP server writes
//! (the same store `postern serve` uses; the server may be running).
//!
//! Every command that reads messages, and every purge and hold, is first written to the audit
//! trail (`postern logs audit`) with who ran it (`cli:<os user>`) and the query as given; a
//! read that cannot be recorded does not happen.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand, ValueEnum};
use postern::Config;
use postern_store::{ArchiveFilter, Archived, Hold, Page, Selection, Store, With};

#[derive(Subcommand)]
pub enum LogsCmd {
    /// Show messages, as a conversation view (or JSON lines): the newest `--limit` matching
    /// ones, oldest first.
    Search {
        #[command(flatten)]
        filter: Filter,
        /// Only messages holding every one of these words (any case).
        #[arg(long)]
        text: Option<String>,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of the conversation view.
        #[arg(long)]
        json: bool,
        /// After showing the matches, keep watching for new ones (until interrupted).
        #[arg(long)]
        follow: bool,
    },
    /// List conversations (two parties, how many messages, first and last), newest first.
    Conversations {
        #[command(flatten)]
        filter: Filter,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write every matching message to a file, oldest first.
    Export {
        #[command(flatten)]
        filter: Filter,
        #[arg(long)]
        text: Option<String>,
        /// mbox (one mail per message, for any mail client), json (lines) or html (a
        /// self-contained transcript).
        #[arg(long, value_enum)]
        format: Format,
        /// The file to write (it must not exist yet).
        #[arg(long, short)]
        output: std::path::PathBuf,
    },
    /// Show the audit trail: who read or exported whose messages, when, with what query.
    Audit {
        /// From this time on (RFC 3339, a date, or an age such as "7d").
        #[arg(long)]
        since: Option<String>,
        /// Only this actor (`cli:<user>` or `xmpp:<admin account>`).
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Delete archived messages older than a time (accounts under a legal hold excepted).
    Purge {
        /// Delete what is older than this (RFC 3339, a date, or an age such as "90d").
        #[arg(long)]
        before: String,
        /// Only this account's archive.
        #[arg(long, conflicts_with = "domain")]
        account: Option<String>,
        /// Only the archives of this domain's accounts.
        #[arg(long)]
        domain: Option<String>,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Legal holds: an account on hold is left alone by retention and purges.
    #[command(subcommand)]
    Hold(HoldCmd),
}

#[derive(Subcommand)]
pub enum HoldCmd {
    /// Place an account's archive on hold.
    Add {
        account: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift a hold.
    Remove { account: String },
    /// List the holds.
    List,
}

/// Which messages.
#[derive(Args, Clone, Debug)]
pub struct Filter {
    /// Messages of this account (sent or received).
    #[arg(long, conflicts_with = "domain")]
    account: Option<String>,
    /// Messages of this domain's accounts.
    #[arg(long)]
    domain: Option<String>,
    /// Only those exchanged with this address (a bare JID, or a full one for one resource).
    #[arg(long)]
    peer: Option<String>,
    /// From this time on: RFC 3339 ("2026-11-30T08:00:00Z"), a date ("2026-11-30", UTC) or an
    /// age ("2h", "7d").
    #[arg(long)]
    since: Option<String>,
    /// Up to this time (same forms).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Mbox,
    Json,
    Html,
}

pub async fn run(config: &Config, cmd: LogsCmd) -> anyhow::Result<()> {
    let store = postern::open_store(config).await?;
    match cmd {
        LogsCmd::Search {
            filter,
            text,
            limit,
            json,
            follow,
        } => {
            let (selection, mut f) = parse(&filter)?;
            f.words = text.clone();
            let action = if follow { "follow" } else { "search" };
            audit(&store, action, &describe(&filter, text.as_deref())).await?;
            let (page, complete) = store
                .archive_page(
                    &selection,
                    &f,
                    Page {
                        limit,
                        backwards: true,
                    },
                )
                .await?;
            let files = files_in(&store, &page).await?;
            let mut out = std::io::stdout().lock();
            let mut view = View::new(json);
            for m in &page {
                view.line(&mut out, m, &files)?;
            }
            if !complete && !json {
                writeln!(
                    out,
                    "(older matches left out: narrow with --since/--until or raise --limit)"
                )?;
            }
            out.flush()?;
            if follow {
                drop(out);
                let mut last = page.last().map(|m| m.id);
                if last.is_none() {
                    // Only what arrives from now on.
                    let (newest, _) = store
                        .archive_page(
                            &selection,
                            &ArchiveFilter::default(),
                            Page {
                                limit: 1,
                                backwards: true,
                            },
                        )
                        .await?;
                    last = Some(newest.first().map_or(0, |m| m.id));
                }
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let next = ArchiveFilter {
                        after: last,
                        ..f.clone()
                    };
                    let (page, _) = store
                        .archive_page(
                            &selection,
                            &next,
                            Page {
                                limit: 1000,
                                backwards: false,
                            },
                        )
                        .await?;
                    let files = files_in(&store, &page).await?;
                    let mut out = std::io::stdout().lock();
                    for m in &page {
                        view.line(&mut out, m, &files)?;
                    }
                    out.flush()?;
                    if let Some(m) = page.last() {
                        last = Some(m.id);
                    }
                }
            }
        }
        LogsCmd::Conversations {
            filter,
            limit,
            json,
        } => {
            let (selection, f) = parse(&filter)?;
            audit(&store, "conversations", &describe(&filter, None)).await?;
            for c in store.archive_conversations(&selection, &f, limit).await? {
                if json {
                    let line = serde_json::json!({
                        "a": c.a, "b": c.b, "messages": c.messages,
                        "first": rfc3339(c.first_us), "last": rfc3339(c.last_us),
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{} ⇄ {}\t{} messages\t{} … {}",
                        c.a,
                        c.b,
                        c.messages,
                        readable(c.first_us),
                        readable(c.last_us)
                    );
                }
            }
        }
        LogsCmd::Export {
            filter,
            text,
            format,
            output,
        } => {
            let (selection, mut f) = parse(&filter)?;
            f.words = text.clone();
            let detail = format!(
                "{} → {} ({format:?})",
                describe(&filter, text.as_deref()),
                output.display()
            );
            audit(&store, "export", &detail).await?;
            let n = export(&store, &selection, f, format, &output, &detail).await?;
            eprintln!("exported {n} messages to {}", output.display());
        }
        LogsCmd::Audit {
            since,
            actor,
            limit,
            json,
        } => {
            let since_ms = match since {
                Some(s) => when(&s)? / 1000,
                None => 0,
            };
            for e in store
                .audit_entries(since_ms, actor.as_deref(), limit)
                .await?
            {
                let at = readable(e.at_ms.saturating_mul(1000));
                if json {
                    let line = serde_json::json!({
                        "at": rfc3339(e.at_ms.saturating_mul(1000)), "actor": e.actor,
                        "action": e.action, "query": e.detail,
                    });
                    println!("{line}");
                } else {
                    println!("{at}\t{}\t{}\t{}", e.actor, e.action, e.detail);
                }
            }
        }
        LogsCmd::Purge {
            before,
            account,
            domain,
            dry_run,
        } => {
            let before_us = when(&before)?;
            let account = account.map(|a| a.trim().to_lowercase());
            let domain = domain.map(|d| d.trim().to_lowercase());
            if let Some(a) = &account
                && store.holds().await?.iter().any(|h| &h.owner == a)
            {
                bail!("{a} is under a legal hold: lift it first (postern logs hold remove {a})");
            }
            let scope = match (&account, &domain) {
                (Some(a), _) => format!("account {a}"),
                (_, Some(d)) => format!("domain {d}"),
                _ => "every archive".to_owned(),
            };
            let count = store
                .archive_expirable(domain.as_deref(), account.as_deref(), before_us)
                .await?;
            if dry_run {
                println!(
                    "would delete {count} archive entries of {scope} older than {} (accounts on hold excepted)",
                    readable(before_us)
                );
                return Ok(());
            }
            audit(
                &store,
                "purge",
                &format!("{scope}, before {}", rfc3339(before_us)),
            )
            .await?;
            let (mut entries, mut messages) = (0, 0);
            loop {
                let (e, m) = store
                    .archive_expire(domain.as_deref(), account.as_deref(), before_us, 1000)
                    .await?;
                if e == 0 && m == 0 {
                    break;
                }
                entries += e;
                messages += m;
                // A running server's archive writer gets the database between batches.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!(
                "deleted {entries} archive entries ({messages} messages no archive holds any more) of {scope}"
            );
        }
        LogsCmd::Hold(HoldCmd::Add { account, reason }) => {
            let account = served_address(config, &account)?;
            audit(&store, "hold", &format!("{account}: {reason}")).await?;
            store
                .hold_place(&Hold {
                    owner: account.clone(),
                    reason,
                    actor: actor(),
                    since_ms: Utc::now().timestamp_millis(),
                })
                .await?;
            println!("{account} is on hold");
        }
        LogsCmd::Hold(HoldCmd::Remove { account }) => {
            let account = account.trim().to_lowercase();
            audit(&store, "hold-lifted", &account).await?;
            if !store.hold_lift(&account).await? {
                bail!("{account} is not on hold");
            }
            println!("hold on {account} lifted");
        }
        LogsCmd::Hold(HoldCmd::List) => {
            for h in store.holds().await? {
                println!(
                    "{}\tsince {}\tby {}\t{}",
                    h.owner,
                    readable(h.since_ms.saturating_mul(1000)),
                    h.actor,
                    h.reason
                );
            }
        }
    }
    Ok(())
}

/// A bare address of a served domain (a hold on anything else would protect nothing).
pub(crate) fn served_address(config: &Config, address: &str) -> anyhow::Result<String> {
    let address = address.trim().to_lowercase();
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.contains('/') && config.serves(domain) =>
        {
            Ok(address)
        }
        _ => bail!(
            "`{address}` is not an account address of a served domain ({})",
            config.domain_names().join(", ")
        ),
    }
}

/// Who runs this command, for the audit trail.
fn actor() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("cli:{user}")
}

pub(crate) async fn audit(store: &Store, action: &str, detail: &str) -> anyhow::Result<()> {
    store
        .audit(Utc::now().timestamp_millis(), &actor(), action, detail)
        .await
        .context("recording the access in the audit trail (nothing was read)")
}

/// The query as the admin gave it, for the audit trail.
fn describe(f: &Filter, text: Option<&str>) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    };
    add("account", &f.account);
    add("domain", &f.domain);
    add("peer", &f.peer);
    add("since", &f.since);
    add("until", &f.until);
    add("text", &text.map(str::to_owned));
    if parts.is_empty() {
        "everything".to_owned()
    } else {
        parts.join(" ")
    }
}

fn parse(f: &Filter) -> anyhow::Result<(Selection, ArchiveFilter)> {
    let selection = match (&f.account, &f.domain) {
        (Some(a), _) => Selection::Account(a.trim().to_lowercase()),
        (None, Some(d)) => Selection::Domain(d.trim().to_lowercase()),
        (None, None) => Selection::Everyone,
    };
    let with = f.peer.as_ref().map(|p| {
        let p = p.trim();
        match p.split_once('/') {
            Some((bare, resource)) => With {
                bare: bare.to_lowercase(),
                resource: Some(resource.to_owned()),
            },
            None => With {
                bare: p.to_lowercase(),
                resource: None,
            },
        }
    });
    Ok((
        selection,
        ArchiveFilter {
            with,
            start_us: f.since.as_deref().map(when).transpose()?,
            end_us: f.until.as_deref().map(when).transpose()?,
            ..ArchiveFilter::default()
        },
    ))
}

/// A time given on the command line, as µs since the epoch.
pub(crate) fn when(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
        return Ok(t.timestamp_micros());
    }
    if let Ok(age) = humantime::parse_duration(s) {
        let age = chrono::Duration::from_std(age).context("age too large")?;
        let t = Utc::now()
            .checked_sub_signed(age)
            .context("age too large")?;
        return Ok(t.timestamp_micros());
    }
    bail!(
        "`{s}` is not a time: use RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30) or an age (7d)"
    )
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default()
}

fn rfc3339(us: i64) -> String {
    time(us).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn readable(us: i64) -> String {
    time(us).format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn full(bare: &str, resource: &str) -> String {
    if resource.is_empty() {
        bare.to_owned()
    } else {
        format!("{bare}/{resource}")
    }
}

fn json_line(m: &Archived) -> serde_json::Value {
    serde_json::json!({
        "id": m.uid,
        "time": rfc3339(m.stamp_us),
        "from": full(&m.sender, &m.sender_resource),
        "to": full(&m.recipient, &m.recipient_resource),
        "type": m.kind,
        "body": m.body,
    })
}

/// The ids of XEP-0363 uploads whose URL (`…/upload/<32 hex>/…`) a message body carries.
fn upload_ids(body: &str) -> impl Iterator<Item = &str> {
    body.match_indices("/upload/").filter_map(|(i, m)| {
        let id = body.get(i + m.len()..i + m.len() + 32)?;
        let next = body.as_bytes().get(i + m.len() + 32).copied();
        (id.bytes().all(|b| b.is_ascii_hexdigit()) && next == Some(b'/')).then_some(id)
    })
}

/// The uploads the messages of `page` link to, by id (those still known).
async fn files_in(
    store: &Store,
    page: &[Archived],
) -> anyhow::Result<HashMap<String, postern_store::Upload>> {
    let mut files = HashMap::new();
    for m in page {
        for id in upload_ids(&m.body) {
            if !files.contains_key(id)
                && let Some(u) = store.upload(id).await?
            {
                files.insert(id.to_owned(), u);
            }
        }
    }
    Ok(files)
}

/// The conversation view: a heading whenever the conversation changes, then one line per
/// message (continuation lines indented).
struct View {
    json: bool,
    current: Option<(String, String)>,
}

impl View {
    fn new(json: bool) -> Self {
        Self {
            json,
            current: None,
        }
    }

    fn line(
        &mut self,
        out: &mut impl Write,
        m: &Archived,
        files: &HashMap<String, postern_store::Upload>,
    ) -> std::io::Result<()> {
        let linked: Vec<&postern_store::Upload> =
            upload_ids(&m.body).filter_map(|id| files.get(id)).collect();
        if self.json {
            let mut line = json_line(m);
            if !linked.is_empty() {
                line["files"] = linked
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "id": u.id, "name": u.filename, "size": u.size,
                            "type": u.content_type, "sha256": u.sha256,
                        })
                    })
                    .collect();
            }
            return writeln!(out, "{line}");
        }
        let pair = if m.sender <= m.recipient {
            (m.sender.clone(), m.recipient.clone())
        } else {
            (m.recipient.clone(), m.sender.clone())
        };
        if self.current.as_ref() != Some(&pair) {
            writeln!(out, "── {} ⇄ {} ──", pair.0, pair.1)?;
            self.current = Some(pair);
        }
        let mut body = m.body.lines();
        writeln!(
            out,
            "{}  {} → {}: {}",
            readable(m.stamp_us),
            full(&m.sender, &m.sender_resource),
            full(&m.recipient, &m.recipient_resource),
            body.next().unwrap_or("")
        )?;
        for more in body {
            writeln!(out, "{:>25}{more}", "")?;
        }
        for u in linked {
            writeln!(
                out,
                "{:>25}[file: {}, {} bytes, {}, uploaded by {}; postern files show {}]",
                "", u.filename, u.size, u.content_type, u.owner, u.id
            )?;
        }
        Ok(())
    }
}

/// Writes every message `selection` and `filter` read to `path`, page by page (never all in
/// memory), with a progress bar on a terminal. Returns how many were written.
async fn export(
    store: &Store,
    selection: &Selection,
    mut filter: ArchiveFilter,
    format: Format,
    path: &std::path::Path,
    query: &str,
) -> anyhow::Result<u64> {
    let total = store.archive_count(selection, &filter).await?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} messages, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if let Format::Html = format {
        html_head(&mut out, query, total)?;
    }
    let mut written = 0;
    loop {
        let (page, complete) = store
            .archive_page(
                selection,
                &filter,
                Page {
                    limit: 1000,
                    backwards: false,
                },
            )
            .await?;
        for m in &page {
            match format {
                Format::Json => writeln!(out, "{}", json_line(m))?,
                Format::Mbox => mbox(&mut out, m)?,
                Format::Html => html_row(&mut out, m)?,
            }
        }
        written += page.len() as u64;
        bar.inc(page.len() as u64);
        match page.last() {
            Some(m) if !complete => filter.after = Some(m.id),
            _ => break,
        }
    }
    if let Format::Html = format {
        writeln!(out, "</tbody></table></body></html>")?;
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    bar.finish_and_clear();
    Ok(written)
}

/// One message as an mboxrd entry: a mail client opens the export as a folder.
fn mbox(out: &mut impl Write, m: &Archived) -> std::io::Result<()> {
    let t = time(m.stamp_us);
    writeln!(
        out,
        "From {} {}",
        m.sender,
        t.format("%a %b %e %H:%M:%S %Y")
    )?;
    writeln!(out, "From: {}", full(&m.sender, &m.sender_resource))?;
    writeln!(out, "To: {}", full(&m.recipient, &m.recipient_resource))?;
    writeln!(out, "Date: {}", t.to_rfc2822())?;
    writeln!(out, "Message-ID: <{}@postern.archive>", m.uid)?;
    writeln!(out, "Subject: {} chat message", m.kind)?;
    writeln!(out, "Content-Type: text/plain; charset=utf-8")?;
    writeln!(out, "Content-Transfer-Encoding: 8bit")?;
    writeln!(out)?;
    for line in m.body.lines() {
        // mboxrd: a line starting with ">*From " gets one more '>'.
        if line.trim_start_matches('>').starts_with("From ") {
            write!(out, ">")?;
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out)
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn html_head(out: &mut impl Write, query: &str, total: i64) -> std::io::Result<()> {
    write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>Chat log export</title><style>\
         body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}\
         td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}}\
         td.body{{white-space:pre-wrap}}th{{background:#f4f4f4}}</style></head><body>\
         <h1>Chat log export</h1><p>Query: {}<br>Exported {} by {}: {total} messages</p>\
         <table><thead><tr><th>Time (UTC)</th><th>From</th><th>To</th><th>Message</th></tr></thead><tbody>\n",
        escape(query),
        escape(&readable(Utc::now().timestamp_micros())),
        escape(&actor()),
    )
}

fn html_row(out: &mut impl Write, m: &Archived) -> std::io::Result<()> {
    writeln!(
        out,
        "<tr id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"body\">{}</td></tr>",
        escape(&m.uid),
        escape(&readable(m.stamp_us)),
        escape(&full(&m.sender, &m.sender_resource)),
        escape(&full(&m.recipient, &m.recipient_resource)),
        escape(&m.body)
    )
}
