//! `postern account import FILE`: accounts from a Dovecot passwd-file or a CSV file (formats
//! in `postern_accounts::import`), for moving an existing mail system's users over. Hashes
//! are kept and checked at login until the first one succeeds, then replaced by Postern's
//! own credentials; passwords in the clear are hashed here. Existing accounts are left as
//! they are. Every refused line is reported with its number; the exit status says whether
//! any was.

use std::path::Path;

use anyhow::{Context, bail};
use futures::StreamExt as _;
use postern::Config;
use postern_accounts::import::{self, Entry, Format, Secret};
use postern_accounts::{Accounts, Imported};

/// Entries imported at once: passwords in the clear are hashed on the hashing pool, which
/// keeps every core busy with a few in flight.
const IN_FLIGHT: usize = 8;

/// What became of one entry: imported (and whether with its hash kept), or why not.
type Outcome = Result<(Imported, bool), String>;

/// The `--format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FileFormat {
    /// Dovecot passwd-file: `user:{SCHEME}hash[:…]`.
    Passwd,
    /// `address,password` (a hash when it starts with `{SCHEME}`).
    Csv,
}

pub async fn run(
    config: &Config,
    accounts: &Accounts,
    file: &Path,
    format: Option<FileFormat>,
    domain: Option<&str>,
) -> anyhow::Result<()> {
    let format = match format {
        Some(FileFormat::Passwd) => Format::PasswdFile,
        Some(FileFormat::Csv) => Format::Csv,
        None if file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")) =>
        {
            Format::Csv
        }
        None => Format::PasswdFile,
    };
    let domain = domain.map(str::to_lowercase);
    if let Some(d) = &domain
        && !config.serves(d)
    {
        bail!(
            "domain `{d}` is not served (served: {})",
            config.domain_names().join(", ")
        );
    }
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let entries: Vec<(u64, Result<Entry, String>)> = match format {
        Format::PasswdFile => text
            .split(|b| *b == b'\n')
            .enumerate()
            .filter_map(|(i, line)| {
                let entry = match std::str::from_utf8(line) {
                    Ok(line) => import::passwd_line(line, domain.as_deref()).transpose(),
                    // A password in another charset would be stored changed: refused.
                    Err(_) => Some(Err("not UTF-8".to_owned())),
                };
                entry.map(|e| (i as u64 + 1, e))
            })
            .collect(),
        Format::Csv => import::csv_entries(text.as_slice(), domain.as_deref()).collect(),
    };
    let served = |e: Entry| -> Result<Entry, String> {
        let d = e
            .address
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_lowercase();
        if config.serves(&d) {
            Ok(e)
        } else {
            Err(format!("domain `{d}` is not served"))
        }
    };
    let bar = indicatif::ProgressBar::new(entries.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} accounts, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let outcomes: Vec<(u64, Outcome)> = futures::stream::iter(entries)
        .map(|(line, entry)| {
            let bar = &bar;
            async move {
                let outcome = match entry.and_then(served) {
                    Ok(e) => {
                        let hashed = matches!(e.secret, Secret::Hashed(_));
                        accounts
                            .import(&e)
                            .await
                            .map(|i| (i, hashed))
                            .map_err(|err| format!("{}: {err}", e.address))
                    }
                    Err(reason) => Err(reason),
                };
                bar.inc(1);
                (line, outcome)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    bar.finish_and_clear();
    let (mut added, mut kept, mut existing, mut refused) = (0, 0, 0, Vec::new());
    for (line, outcome) in outcomes {
        match outcome {
            Ok((Imported::Added, hashed)) => {
                added += 1;
                kept += usize::from(hashed);
            }
            Ok((Imported::Exists, _)) => existing += 1,
            Err(reason) => refused.push((line, reason)),
        }
    }
    refused.sort();
    for (line, reason) in &refused {
        eprintln!("{}:{line}: {reason}", file.display());
    }
    println!(
        "imported {added} accounts ({kept} with their password hash, replaced at their first \
         login), {existing} already existed, {} lines refused",
        refused.len()
    );
    if !refused.is_empty() {
        bail!("{} lines of {} refused", refused.len(), file.display());
    }
    Ok(())
}
