//! `postern rules ...`: the gateway's content-filter rules (`[[gateway.rules]]`): list
//! them, or dry-run them on a message file, with the same evaluation the gateway runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use postern::Config;
use postern_accounts::Accounts;
use postern_gateway::rules::{self, Combine};

#[derive(Subcommand)]
pub enum RulesCmd {
    /// List the rules in evaluation order.
    List,
    /// Show which rules match a message and what would happen, without sending anything.
    Test {
        /// The message (RFC 5322, as an .eml file).
        file: PathBuf,
        /// Envelope sender; default: the address in the From header.
        #[arg(long)]
        from: Option<String>,
        /// Envelope recipient (repeatable); default: the addresses in the To header.
        #[arg(long = "to")]
        to: Vec<String>,
    },
}

pub async fn run(config: &Config, cmd: RulesCmd) -> anyhow::Result<()> {
    let list = &config.gateway.rules;
    match cmd {
        RulesCmd::List => {
            if list.is_empty() {
                println!("no rules ([[gateway.rules]] in the config)");
            }
            for (i, r) in list.iter().enumerate() {
                let combine = match r.combine {
                    Combine::All => "all",
                    Combine::Any => "any",
                };
                println!(
                    "{} {:?}: {} of {} condition(s) -> {}",
                    i + 1,
                    r.name,
                    combine,
                    r.conditions.len(),
                    r.actions
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        RulesCmd::Test { file, from, to } => {
            let message =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let header = postern_gateway::header::parse(&message).fields;
            let from = match from {
                Some(f) => f,
                None => postern_gateway::header::first_value(&header, "from")
                    .and_then(|v| postern_gateway::header::first_address(&v))
                    .context("no --from and no address in the From header")?,
            };
            let to = match to.is_empty() {
                false => to,
                true => addresses(
                    &postern_gateway::header::first_value(&header, "to").unwrap_or_default(),
                ),
            };
            anyhow::ensure!(!to.is_empty(), "no --to and no address in the To header");
            let accounts = Accounts::new(postern::open_store(config).await?);
            let outcome = rules::dry_run(list, &accounts, &from, &to, &message).await;
            println!("from <{from}> to {}", to.join(", "));
            println!("{outcome}");
        }
    }
    Ok(())
}

/// Every `local@domain` in a To header value (display names and brackets dropped).
fn addresses(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(postern_gateway::header::first_address)
        .collect()
}
