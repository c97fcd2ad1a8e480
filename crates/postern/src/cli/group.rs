//! `postern group ...`: named groups of addresses, used by the gateway's allow/deny lists
//! (`@legal`) and, later, its content-filter rules.

use clap::Subcommand;
use postern::Config;
use postern_accounts::Accounts;

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create a group.
    Add { name: String },
    /// Delete a group and its memberships.
    Del { name: String },
    /// List groups.
    List,
    /// List a group's members.
    Members { name: String },
    /// Add an address (need not be a local account) to a group.
    AddMember { name: String, address: String },
    /// Remove an address from a group.
    RemoveMember { name: String, address: String },
}

pub async fn run(config: &Config, cmd: GroupCmd) -> anyhow::Result<()> {
    let accounts = Accounts::new(postern::open_store(config).await?);
    match cmd {
        GroupCmd::Add { name } => {
            accounts.group_add(&name).await?;
            println!("added group {name}");
        }
        GroupCmd::Del { name } => {
            accounts.group_del(&name).await?;
            println!("deleted group {name}");
        }
        GroupCmd::List => {
            for g in accounts.group_list().await? {
                println!("{g}");
            }
        }
        GroupCmd::Members { name } => {
            for m in accounts.group_members(&name).await? {
                println!("{m}");
            }
        }
        GroupCmd::AddMember { name, address } => {
            if accounts.group_add_member(&name, &address).await? {
                println!("added {address} to {name}");
            } else {
                println!("{address} already in {name}");
            }
        }
        GroupCmd::RemoveMember { name, address } => {
            if accounts.group_remove_member(&name, &address).await? {
                println!("removed {address} from {name}");
            } else {
                println!("{address} was not in {name}");
            }
        }
    }
    Ok(())
}
