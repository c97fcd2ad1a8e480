//! `postern quarantine ...`: mail held by the gateway's `missing_key = "hold"` policy.

use anyhow::Context;
use clap::Subcommand;
use postern::Config;
use postern_gateway::Quarantine;

#[derive(Subcommand)]
pub enum QuarantineCmd {
    /// List held mail: id, age, size, sender, recipients, reason.
    List,
    /// Relay a held mail to the next hop as it is (unencrypted) and remove it.
    Release { id: String },
    /// Delete a held mail.
    Delete { id: String },
}

pub async fn run(config: &Config, cmd: QuarantineCmd) -> anyhow::Result<()> {
    let dir = postern_gateway::quarantine_dir(&config.gateway, &config.data_dir);
    let q = Quarantine::open(&dir)?;
    match cmd {
        QuarantineCmd::List => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            for h in q.list()? {
                let age = humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(h.held_at),
                ));
                println!(
                    "{}\t{age} ago\t{} bytes\tfrom <{}>\tto {}\t{}",
                    h.id,
                    h.size,
                    h.from,
                    h.to.join(","),
                    h.reason
                );
            }
        }
        QuarantineCmd::Release { id } => {
            let hostname = config
                .gateway
                .hostname
                .clone()
                .or_else(|| config.domain_names().first().cloned())
                .unwrap_or_else(|| "localhost".into());
            let hop = postern_gateway::next_hop(&config.gateway, &hostname);
            let held = q
                .release(&id, &hop)
                .await
                .with_context(|| format!("releasing {id} to {}", hop.addr))?;
            println!("released {id} to {}", held.to.join(","));
        }
        QuarantineCmd::Delete { id } => {
            q.delete(&id)?;
            println!("deleted {id}");
        }
    }
    Ok(())
}
