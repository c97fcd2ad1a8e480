//! `postern-loadgen`: drives an XMPP server with many raw clients over TLS, for the
//! side-by-side benchmark in `bench/xmpp` (Postern and, where installed, Prosody on the same
//! load). Speaks the protocol itself (`client`, `xml`) so that little of the CPU it shares
//! with the server goes to the generator.
//!
//! Layout: `client` (TCP, STARTTLS/direct TLS, SASL, bind) over `xml` (incremental reader) and
//! `tls` (rustls config); `scram` (SCRAM-SHA-1 with a salted-password cache); `metrics`
//! (percentiles, `/proc` readings, the report); `scenario/` (one file per subcommand).
//!
//! Every count has an upper bound and every run a time limit; loopback targets only are
//! intended (the benchmark machine runs server and generator side by side).

mod client;
mod metrics;
mod scenario;
mod scram;
mod tls;
mod xml;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::time::Instant;

use crate::client::{Mechanism, Target};
use crate::metrics::Probe;
use crate::scenario::{Run, idle, logins, messages};

#[derive(Debug, Parser)]
#[command(name = "postern-loadgen", version, about)]
struct Cli {
    /// Server address, `host:port` (STARTTLS port, or direct TLS with --direct-tls).
    #[arg(long, default_value = "127.0.0.1:5222")]
    server: String,
    /// XMPP domain of the accounts (and the stream `to`).
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Name for SNI and certificate checks; defaults to the domain.
    #[arg(long)]
    tls_name: Option<String>,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    #[arg(long)]
    direct_tls: bool,
    /// PEM file with the certificates to trust (a CA, or the server's self-signed one).
    #[arg(
        long,
        required_unless_present = "insecure",
        conflicts_with = "insecure"
    )]
    ca: Option<PathBuf>,
    /// Accept any server certificate (self-signed peers without a file to trust).
    #[arg(long)]
    insecure: bool,
    /// Resume TLS sessions across connections (off: every login pays a full handshake).
    #[arg(long)]
    tls_resumption: bool,
    /// SASL mechanism for every login.
    #[arg(long, value_enum, default_value_t = Mechanism::ScramSha1)]
    mechanism: Mechanism,
    /// Derive the SCRAM salted password on every login instead of once per account.
    #[arg(long)]
    no_scram_cache: bool,
    /// Accounts are `{prefix}{n}@{domain}`, n = 1..=accounts.
    #[arg(long, default_value = "user")]
    prefix: String,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    accounts: u32,
    /// The password of every account.
    #[arg(long, env = "LOADGEN_PASSWORD")]
    password: String,
    /// Seconds after which no new work starts (work in flight ends within its timeouts).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    time_limit: u64,
    /// Seconds one login may take, TCP connect to bound resource.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    login_timeout: u64,
    /// PID of the server process: report its memory (VmRSS) and CPU time.
    #[arg(long)]
    pid: Option<u32>,
    /// Names the server in the result line.
    #[arg(long, default_value = "server")]
    label: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Full logins (TLS, SASL, bind): logins/s and latency percentiles.
    Logins(logins::Args),
    /// Many logged-in connections held open: ramp time and server memory.
    Idle(idle::Args),
    /// Chat messages between pairs of clients: delivered msgs/s and end-to-end latency.
    Messages(messages::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Thousands of sockets: as many descriptors as the hard limit allows.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let report = run(cli, nofile).await?;
        println!("{}", report.render());
        Ok(())
    })
}

async fn run(cli: Cli, nofile: u64) -> anyhow::Result<metrics::Report> {
    let trust = match &cli.ca {
        Some(path) => tls::Trust::PemFile(path),
        None => tls::Trust::Insecure,
    };
    let connector = tls::connector(trust, cli.tls_resumption, cli.direct_tls)?;
    let target = Target {
        addr: cli.server.clone(),
        tls_name: tls::server_name(cli.tls_name.as_deref().unwrap_or(&cli.domain))?,
        domain: cli.domain.clone(),
        direct_tls: cli.direct_tls,
        connector,
        mechanism: cli.mechanism,
        scram_cache: !cli.no_scram_cache,
        login_timeout: Duration::from_secs(cli.login_timeout),
    };
    let run = Arc::new(Run {
        target: Arc::new(target),
        prefix: cli.prefix.clone(),
        accounts: cli.accounts,
        password: cli.password.clone(),
        deadline: Instant::now() + Duration::from_secs(cli.time_limit),
        probe: Probe { pid: cli.pid },
        label: cli.label.clone(),
    });
    let needed = match &cli.scenario {
        Scenario::Logins(a) => a.concurrency,
        Scenario::Idle(a) => a.connections,
        Scenario::Messages(a) => a.pairs * 2,
    };
    if needed + 64 > nofile {
        anyhow::bail!("{needed} connections need more file descriptors than the limit {nofile}");
    }
    match &cli.scenario {
        Scenario::Logins(a) => logins::run(run, a).await,
        Scenario::Idle(a) => idle::run(run, a).await,
        Scenario::Messages(a) => messages::run(run, a).await,
    }
}
