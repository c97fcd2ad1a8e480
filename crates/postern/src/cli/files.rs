//! `postern files ...`: what users uploaded (XEP-0363): list, show (with the messages that
//! carried the link: a read of the chat log, so it is audited), delete, purge. Works on the
//! store and the upload directory, with the server running or not.

use anyhow::{Context, bail};
use clap::Subcommand;
use postern::Config;
use postern_store::{ArchiveFilter, Page, Selection, Store, Upload, UploadFilter, UploadState};
use postern_xmpp::modules::upload::stored_path;

use super::logs::{audit, readable, served_address, when};

#[derive(Subcommand)]
pub enum FilesCmd {
    /// List uploads, newest first: id, when, owner, size, type, name.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Also slots granted but not (yet) used.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One upload in full: its URL, file, checksum, and the messages that linked it.
    Show { id: String },
    /// Delete one upload (its file and its record; the link stops working).
    Delete { id: String },
    /// Delete every stored upload matching the filter (at least one filter is required).
    Purge {
        #[command(flatten)]
        filter: Filter,
        /// Only uploads older than this (an age such as 90d, a date, or RFC 3339).
        #[arg(long)]
        before: Option<String>,
        /// Show what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args)]
pub struct Filter {
    /// Uploads of this account.
    #[arg(long)]
    owner: Option<String>,
    /// Uploads of this domain's accounts.
    #[arg(long)]
    domain: Option<String>,
    /// Uploaded since (an age such as 7d, a date, or RFC 3339).
    #[arg(long)]
    since: Option<String>,
}

impl Filter {
    fn store_filter(&self, config: &Config) -> anyhow::Result<UploadFilter> {
        let owner = self
            .owner
            .as_deref()
            .map(|o| served_address(config, o))
            .transpose()?;
        let domain = match &self.domain {
            Some(d) if !config.serves(d) => bail!("domain `{d}` is not served"),
            d => d.as_ref().map(|d| d.to_ascii_lowercase()),
        };
        Ok(UploadFilter {
            owner,
            domain,
            since_ms: self
                .since
                .as_deref()
                .map(|s| when(s).map(|us| us / 1000))
                .transpose()?,
            ..UploadFilter::default()
        })
    }

    fn is_empty(&self) -> bool {
        self.owner.is_none() && self.domain.is_none() && self.since.is_none()
    }
}

fn dir(config: &Config) -> std::path::PathBuf {
    config
        .xmpp
        .upload
        .dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("uploads"))
}

fn state(u: &Upload) -> &'static str {
    match u.state {
        UploadState::Slot => "slot",
        UploadState::Uploading => "uploading",
        UploadState::Stored => "stored",
    }
}

fn ms(t: i64) -> String {
    readable(t.saturating_mul(1000))
}

/// The GET URL of `u` as clients were given it.
fn url(config: &Config, u: &Upload) -> String {
    let public = config
        .http
        .public_url
        .as_deref()
        .and_then(|p| postern_http::PublicUrl::parse(p).ok());
    let port = config.http.listen.first().map(|a| a.port());
    let sites = postern_http::Sites::new(config.domain_names(), vec![], public, port, vec![]);
    format!(
        "{}{}",
        sites.base_url(&u.domain),
        postern_xmpp::modules::upload::slot::path(&u.id, &u.filename)
    )
}

pub async fn run(config: &Config, cmd: FilesCmd) -> anyhow::Result<()> {
    let store = postern::open_store(config).await?;
    match cmd {
        FilesCmd::List {
            filter,
            all,
            limit,
            json,
        } => {
            let mut f = filter.store_filter(config)?;
            f.stored_only = !all;
            f.limit = Some(limit);
            for u in store.uploads(&f).await? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": u.id, "owner": u.owner, "domain": u.domain,
                            "name": u.filename, "size": u.size, "type": u.content_type,
                            "state": state(&u), "requested": ms(u.created_ms),
                            "stored": u.stored_ms.map(ms), "sha256": u.sha256,
                        })
                    );
                } else {
                    println!(
                        "{}\t{}\t{}\t{} bytes\t{}\t{}{}",
                        u.id,
                        ms(u.stored_ms.unwrap_or(u.created_ms)),
                        u.owner,
                        u.size,
                        u.content_type,
                        u.filename,
                        if u.state == UploadState::Stored {
                            String::new()
                        } else {
                            format!("\t({})", state(&u))
                        }
                    );
                }
            }
        }
        FilesCmd::Show { id } => {
            let u = store
                .upload(&id)
                .await?
                .with_context(|| format!("no upload {id}"))?;
            println!("id:        {}", u.id);
            println!("owner:     {}", u.owner);
            println!("name:      {}", u.filename);
            println!("type:      {}", u.content_type);
            println!("size:      {} bytes", u.size);
            println!("state:     {}", state(&u));
            println!("requested: {}", ms(u.created_ms));
            if let Some(t) = u.stored_ms {
                println!("stored:    {}", ms(t));
            }
            if let Some(h) = &u.sha256 {
                println!("sha256:    {h}");
            }
            println!("url:       {}", url(config, &u));
            println!("file:      {}", stored_path(&dir(config), &u.id).display());
            linked_in(&store, &u).await?;
        }
        FilesCmd::Delete { id } => {
            let u = store
                .upload(&id)
                .await?
                .with_context(|| format!("no upload {id}"))?;
            delete(config, &store, &u).await?;
            println!(
                "deleted {} ({}, {} bytes, {})",
                u.id, u.filename, u.size, u.owner
            );
        }
        FilesCmd::Purge {
            filter,
            before,
            dry_run,
        } => {
            if filter.is_empty() && before.is_none() {
                bail!("purge needs --owner, --domain, --since or --before");
            }
            let mut f = filter.store_filter(config)?;
            f.stored_only = true;
            let before_ms = before
                .as_deref()
                .map(|b| when(b).map(|us| us / 1000))
                .transpose()?;
            let held: Vec<String> = store.holds().await?.into_iter().map(|h| h.owner).collect();
            let (mut n, mut bytes) = (0u64, 0i64);
            for u in store.uploads(&f).await? {
                if before_ms.is_some_and(|b| u.stored_ms.unwrap_or(u.created_ms) >= b) {
                    continue;
                }
                if held.contains(&u.owner) {
                    println!(
                        "kept {} ({}): {} is under legal hold",
                        u.id, u.filename, u.owner
                    );
                    continue;
                }
                if dry_run {
                    println!(
                        "would delete {}\t{}\t{}\t{} bytes",
                        u.id, u.owner, u.filename, u.size
                    );
                } else {
                    delete(config, &store, &u).await?;
                }
                n += 1;
                bytes += u.size;
            }
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!("{verb} {n} upload(s), {bytes} bytes");
        }
    }
    Ok(())
}

async fn delete(config: &Config, store: &Store, u: &Upload) -> anyhow::Result<()> {
    if u.state == UploadState::Uploading {
        bail!(
            "{} is being uploaded right now: try again in a moment",
            u.id
        );
    }
    let path = stored_path(&dir(config), &u.id);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
    }
    store.upload_delete(&u.id).await?;
    Ok(())
}

/// The archived messages whose text holds the upload's id (its URL): a chat log read,
/// recorded in the audit trail first.
async fn linked_in(store: &Store, u: &Upload) -> anyhow::Result<()> {
    audit(
        store,
        "files show",
        &format!("messages linking upload {}", u.id),
    )
    .await?;
    let filter = ArchiveFilter {
        words: Some(u.id.clone()),
        ..ArchiveFilter::default()
    };
    let (found, _) = store
        .archive_page(
            &Selection::Everyone,
            &filter,
            Page {
                limit: 50,
                backwards: false,
            },
        )
        .await?;
    println!("linked in: {} message(s)", found.len());
    for m in found {
        println!(
            "  {}\t{} -> {}\t{}",
            readable(m.stamp_us),
            m.sender,
            m.recipient,
            m.uid
        );
    }
    Ok(())
}
