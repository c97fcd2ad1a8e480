//! `postern`: run the services, or administer the store they share.

mod cli;

/// jemalloc, not glibc's malloc: after a burst of hostile traffic (`bench/burst`: 1,000
/// connections, 15,000 large and deep stanzas, 600 PLAIN logins) glibc kept 167.6 MiB of the
/// 205.6 MiB peak for good (idle before: 20.5 MiB): freed memory stuck in per-thread arenas,
/// argon2id's 19 MiB blocks among it: freed, never returned. jemalloc with the background purge set in `.cargo/config.toml` peaks at 93.2
/// MiB and is back at 27.4 MiB (idle before: 22.3) 15 s later; mimalloc kept 73 MiB.
/// Release builds, one run each, `bench/burst --bin … --idle 5,15,30`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use postern::Config;
use postern_accounts::Accounts;

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "XMPP chat and OpenPGP mail gateway for your mail domains"
)]
struct Cli {
    /// Config file (TOML); without it the embedded default is used (localhost, ./data, loopback).
    #[arg(long, short, global = true, env = "POSTERN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every enabled service until interrupted.
    Serve,
    /// Check the config file and print what it would serve.
    CheckConfig,
    /// Manage mail accounts (the XMPP accounts are the mail accounts).
    #[command(subcommand)]
    Account(AccountCmd),
    /// Manage groups of addresses (used by the gateway's allow/deny lists).
    #[command(subcommand)]
    Group(cli::group::GroupCmd),
    /// Manage the OpenPGP gateway's keys.
    #[command(subcommand)]
    Pgp(cli::pgp::PgpCmd),
    /// Read the chat log (search, conversations, export), its audit trail, retention purges
    /// and legal holds.
    #[command(subcommand)]
    Logs(cli::logs::LogsCmd),
    /// What users uploaded (XEP-0363): list, show, delete, purge.
    #[command(subcommand)]
    Files(cli::files::FilesCmd),
    /// List, release or delete mail held by the gateway.
    #[command(subcommand)]
    Quarantine(cli::quarantine::QuarantineCmd),
    /// List the gateway's content-filter rules, or dry-run them on a message.
    #[command(subcommand)]
    Rules(cli::rules::RulesCmd),
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Create an account; the domain must be served.
    Add {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's password.
    Passwd {
        address: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account and its roster and stored messages.
    Del { address: String },
    /// List accounts, optionally of one domain.
    List { domain: Option<String> },
    /// Refuse logins for an account without deleting it.
    Disable { address: String },
    /// Allow logins again.
    Enable { address: String },
    /// Give an account admin rights (it may read other accounts' archives over XMPP, each
    /// read recorded in `postern logs audit`), or take them away with `--revoke`.
    Admin {
        address: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Create accounts from a Dovecot passwd-file (`user:{SHA512-CRYPT}…`) or a CSV file
    /// (`address,password`). Hashes (SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID,
    /// SSHA512, …) are checked at login and replaced by Postern's own at the first one;
    /// existing accounts are left alone.
    Import {
        file: PathBuf,
        /// The file's format (default: csv for a `.csv` file, else passwd).
        #[arg(long, value_enum)]
        format: Option<cli::account_import::FileFormat>,
        /// The domain of user names without one (a per-domain passwd-file).
        #[arg(long)]
        domain: Option<String>,
    },
}

/// Stack of every runtime thread (async workers and the blocking pool), chosen on purpose
/// rather than tokio's 2 MiB default. Element trees are built, serialised and dropped
/// recursively: about 1.9 KiB of stack per level unoptimised and 0.4 KiB in release
/// (minidom's parse + write + clone + drop on a 1 MiB thread: 550 and 2,500 levels). The
/// input limits hold long before the stack does: `[xmpp.limits] max_stanza_depth` is at most
/// 1,024 (2 MiB at the unoptimised figure; `interop/robustness/test_depth_ceiling.py` runs it),
/// and mail-parser never sees more than 64 nested messages. 8 MiB leaves four times the worst
/// of that for the rest of a task's frames (sequoia's parsers among them). It is address
/// space: only the pages a thread touches become memory.
const THREAD_STACK: usize = 8 * 1024 * 1024;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    init_logging(&config, matches!(cli.command, Command::Serve));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve => serve(&config).await,
            Command::CheckConfig => {
                println!("config OK: domains {}", config.domain_names().join(", "));
                println!("database: {}", config.database_url());
                if config.gateway.enabled {
                    println!(
                        "gateway: SMTP in {} -> next hop {}",
                        config.gateway.listen, config.gateway.next_hop
                    );
                }
                Ok(())
            }
            Command::Account(cmd) => account(&config, cmd).await,
            Command::Group(cmd) => cli::group::run(&config, cmd).await,
            Command::Pgp(cmd) => cli::pgp::run(&config, cmd).await,
            Command::Logs(cmd) => cli::logs::run(&config, cmd).await,
            Command::Files(cmd) => cli::files::run(&config, cmd).await,
            Command::Quarantine(cmd) => cli::quarantine::run(&config, cmd).await,
            Command::Rules(cmd) => cli::rules::run(&config, cmd).await,
        }
    })
}

fn init_logging(config: &Config, serving: bool) {
    let _ = tracing_log::LogTracer::init();
    let default = if serving { config.log.as_str() } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let running = postern::start(config).await?;
    tracing::info!(
        domains = %config.domain_names().join(","),
        starttls = ?running.starttls,
        gateway_smtp = ?running.smtp,
        direct_tls = ?running.direct_tls,
        https = ?running.https,
        "postern running"
    );
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    running.wait().await;
    Ok(())
}

async fn account(config: &Config, cmd: AccountCmd) -> anyhow::Result<()> {
    let store = postern::open_store(config).await?;
    let accounts = Accounts::new(store);
    let served = |address: &str| -> anyhow::Result<String> {
        let address = address.trim().to_lowercase();
        let Some((local, domain)) = address.split_once('@') else {
            bail!("`{address}` is not an address like alice@example.com");
        };
        if local.is_empty() {
            bail!("`{address}` has no local part");
        }
        if !config.serves(domain) {
            bail!(
                "domain `{domain}` is not served (served: {})",
                config.domain_names().join(", ")
            );
        }
        Ok(address)
    };
    match cmd {
        AccountCmd::Add {
            address,
            password_stdin,
        } => {
            let address = served(&address)?;
            let password = password(password_stdin, &address)?;
            accounts.add(&address, &password).await?;
            println!("added {address}");
        }
        AccountCmd::Passwd {
            address,
            password_stdin,
        } => {
            let address = served(&address)?;
            let password = password(password_stdin, &address)?;
            accounts.set_password(&address, &password).await?;
            println!("password changed for {address}");
        }
        AccountCmd::Del { address } => {
            let address = served(&address)?;
            accounts.delete(&address).await?;
            println!("deleted {address}");
        }
        AccountCmd::List { domain } => {
            for a in accounts.list(domain.as_deref()).await? {
                let flags = [(a.disabled, "disabled"), (a.is_admin, "admin")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(",");
                println!(
                    "{}{}",
                    a.address,
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!("\t{flags}")
                    }
                );
            }
        }
        AccountCmd::Disable { address } => {
            let address = served(&address)?;
            accounts.set_disabled(&address, true).await?;
            println!("disabled {address}");
        }
        AccountCmd::Enable { address } => {
            let address = served(&address)?;
            accounts.set_disabled(&address, false).await?;
            println!("enabled {address}");
        }
        AccountCmd::Import {
            file,
            format,
            domain,
        } => {
            cli::account_import::run(config, &accounts, &file, format, domain.as_deref()).await?;
        }
        AccountCmd::Admin { address, revoke } => {
            let address = served(&address)?;
            accounts.set_admin(&address, !revoke).await?;
            if revoke {
                println!("{address} is no longer an admin");
            } else {
                println!("{address} is an admin");
            }
        }
    }
    Ok(())
}

/// From standard input (first line) or an interactive prompt asked twice.
fn password(from_stdin: bool, address: &str) -> anyhow::Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let p = rpassword::prompt_password(format!("Password for {address}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if p != again {
            bail!("the passwords differ");
        }
        p
    };
    if password.is_empty() {
        bail!("empty password refused");
    }
    Ok(password)
}
