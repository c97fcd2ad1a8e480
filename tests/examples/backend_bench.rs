//! Logins per second through each account backend against the `internal` one, measured in
//! the same run on this machine, with each backend's server (Dovecot, slapd, PostgreSQL) on
//! the same machine too. Not a test: it prints numbers (bench/README.md).
//!
//! ```text
//! cargo build --release -p postern -p postern-loadgen
//! POSTERN_TEST_POSTGRES_URL=postgres://… \
//!   cargo run --release -p postern-tests --example backend_bench -- [ACCOUNTS] [LOGINS] [REPEAT]
//! ```
//!
//! For every backend, on a freshly started server: `LOGINS` PLAIN logins, 4 at a time (each
//! asks the backend; the first of each account also derives its SCRAM keys), then `LOGINS`
//! SCRAM-SHA-1 logins, 16 at a time (from Postern's own keys; `sql` also reads the hash
//! again). The backends take turns in a different order on each repeat; the table shows
//! medians and the ratio to `internal`. Without `POSTERN_TEST_POSTGRES_URL` the `sql` row
//! is left out.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark: panics and prints

use std::path::{Path, PathBuf};
use std::process::Command;

use postern_tests::dovecot::{Dovecot, doveadm_pw};
use postern_tests::process::{binary, serve};
use postern_tests::slapd::{PEOPLE, SERVICE_DN, Slapd};

const PASSWORD: &str = "bench pw";
const DOMAIN: &str = "localhost";

struct Setup {
    name: &'static str,
    /// The `[accounts]` section.
    accounts: String,
    /// Accounts Postern holds itself (internal only).
    internal: bool,
}

fn loadgen() -> PathBuf {
    let bin = binary().with_file_name("postern-loadgen");
    assert!(
        bin.exists(),
        "build it: cargo build --release -p postern-loadgen"
    );
    bin
}

/// Runs one loadgen scenario; returns (logins/s, server CPU ms per login).
fn measure(
    addr: std::net::SocketAddr,
    ca: &Path,
    pid: u32,
    accounts: u32,
    args: &[&str],
) -> (f64, f64) {
    let out = Command::new(loadgen())
        .args(["--server", &addr.to_string(), "--domain", DOMAIN])
        .arg("--ca")
        .arg(ca)
        .args(["--accounts", &accounts.to_string(), "--password", PASSWORD])
        .args(["--pid", &pid.to_string()])
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .rfind(|l| l.starts_with("result "))
        .unwrap_or_else(|| panic!("loadgen {args:?}: {text}"));
    let get = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let failed = get("failed");
    assert!(failed == 0.0 || failed.is_nan(), "failed logins: {line}");
    (get("logins_per_s"), get("server_cpu_ms_per_op"))
}

fn run(setup: &Setup, accounts: u32, logins: u32) -> [(f64, f64); 2] {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("postern.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"{DOMAIN}\"\n{}\n\
             [xmpp]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = []\n\
             [xmpp.limits]\nmax_connections = 50000\nconnection_burst_per_ip = 1000000\n\
             connections_per_minute_per_ip = 1000000\n[gateway]\nenabled = false\n[http]\nlisten = []\n[xmpp.proxy65]\nenabled = false\n",
            dir.path().join("data").display(),
            setup.accounts
        ),
    )
    .unwrap();
    if setup.internal {
        let csv: String = (1..=accounts)
            .map(|n| format!("user{n}@{DOMAIN},{PASSWORD}\n"))
            .collect();
        std::fs::write(dir.path().join("users.csv"), csv).unwrap();
        let status = Command::new(binary())
            .arg("--config")
            .arg(&cfg)
            .args(["account", "import", "--format", "csv"])
            .arg(dir.path().join("users.csv"))
            .output()
            .unwrap();
        assert!(status.status.success(), "import: {status:?}");
    }
    let (mut server, addr, _problems) = serve(&cfg);
    let ca = dir.path().join(format!("data/certs/{DOMAIN}.crt"));
    let n = logins.to_string();
    let plain = measure(
        addr,
        &ca,
        server.id(),
        accounts,
        &[
            "--mechanism",
            "plain",
            "logins",
            "--count",
            &n,
            "--concurrency",
            "4",
        ],
    );
    let scram = measure(
        addr,
        &ca,
        server.id(),
        accounts,
        &["logins", "--count", &n, "--concurrency", "16"],
    );
    server.kill().unwrap();
    let _ = server.wait();
    [plain, scram]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: ACCOUNTS LOGINS REPEAT"))
        .collect();
    let accounts = args.first().copied().unwrap_or(100);
    let logins = args.get(1).copied().unwrap_or(400);
    let repeat = args.get(2).copied().unwrap_or(2);
    let users: Vec<(String, String)> = (1..=accounts)
        .map(|n| (format!("user{n}"), format!("user{n}@{DOMAIN}")))
        .collect();

    eprintln!("starting Dovecot and slapd with {accounts} users");
    let pairs: Vec<(&str, &str)> = users.iter().map(|(_, a)| (a.as_str(), PASSWORD)).collect();
    let dovecot = Dovecot::start_with_scheme(&pairs, "SHA512-CRYPT");
    let people: Vec<(&str, &str, &str)> = users
        .iter()
        .map(|(u, a)| (u.as_str(), a.as_str(), PASSWORD))
        .collect();
    let slapd = Slapd::start(&people);
    let mut setups = vec![
        Setup {
            name: "internal",
            accounts: String::new(),
            internal: true,
        },
        Setup {
            name: "dovecot",
            accounts: format!(
                "[accounts]\nbackend = \"dovecot\"\n[accounts.dovecot]\nauth_socket = \"{}\"",
                dovecot.auth_socket().display()
            ),
            internal: false,
        },
        Setup {
            name: "imap",
            accounts: format!(
                "[accounts]\nbackend = \"imap\"\n[accounts.imap]\nurl = \"imaps://localhost:{}\"\nca_file = \"{}\"",
                dovecot.imaps_port,
                dovecot.cert().display()
            ),
            internal: false,
        },
        Setup {
            name: "ldap",
            accounts: format!(
                "[accounts]\nbackend = \"ldap\"\n[accounts.ldap]\nurl = \"ldaps://localhost:{}\"\n\
                 ca_file = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password_file = \"{}\"\n\
                 base_dn = \"{PEOPLE}\"",
                slapd.ldaps_port,
                slapd.cert().display(),
                slapd.service_password_file().display()
            ),
            internal: false,
        },
    ];
    let mut schema = None;
    if let Ok(url) = std::env::var("POSTERN_TEST_POSTGRES_URL") {
        let db = sqlx::postgres::PgPool::connect(&url).await.unwrap();
        let name = format!("bench_{}", std::process::id());
        for sql in [
            format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
            format!("CREATE SCHEMA {name}"),
            format!(
                "CREATE TABLE {name}.mailbox (username TEXT PRIMARY KEY, password TEXT NOT NULL)"
            ),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&db)
                .await
                .unwrap();
        }
        let hash = doveadm_pw("SHA512-CRYPT", PASSWORD);
        for (_, address) in &users {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {name}.mailbox VALUES ($1, $2)"
            )))
            .bind(address)
            .bind(&hash)
            .execute(&db)
            .await
            .unwrap();
        }
        setups.push(Setup {
            name: "sql",
            accounts: format!(
                "[accounts]\nbackend = \"sql\"\n[accounts.sql]\nurl = \"{url}\"\n\
                 password_query = \"SELECT password FROM {name}.mailbox WHERE username = $1\""
            ),
            internal: false,
        });
        schema = Some((db, name));
    } else {
        eprintln!("POSTERN_TEST_POSTGRES_URL unset: no sql row");
    }

    let mut results: Vec<Vec<[(f64, f64); 2]>> = vec![Vec::new(); setups.len()];
    for r in 0..repeat {
        let mut order: Vec<usize> = (0..setups.len()).collect();
        if !r.is_multiple_of(2) {
            order.reverse();
        }
        for i in order {
            eprintln!("run {} of {repeat}: {}", r + 1, setups[i].name);
            results[i].push(run(&setups[i], accounts, logins));
        }
    }
    if let Some((db, name)) = schema {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
            .execute(&db)
            .await;
    }

    let med = |i: usize, m: usize, k: usize| {
        median(
            results[i]
                .iter()
                .map(|r| if k == 0 { r[m].0 } else { r[m].1 })
                .collect(),
        )
    };
    println!(
        "{accounts} accounts, {logins} logins per scenario, median of {repeat}; ratio = backend/internal"
    );
    println!(
        "{:<10} {:>12} {:>7} {:>14} {:>12} {:>7} {:>14}",
        "backend", "PLAIN/s", "ratio", "CPU ms/login", "SCRAM/s", "ratio", "CPU ms/login"
    );
    for (i, s) in setups.iter().enumerate() {
        println!(
            "{:<10} {:>12.0} {:>7.2} {:>14.2} {:>12.0} {:>7.2} {:>14.2}",
            s.name,
            med(i, 0, 0),
            med(i, 0, 0) / med(0, 0, 0),
            med(i, 0, 1),
            med(i, 1, 0),
            med(i, 1, 0) / med(0, 1, 0),
            med(i, 1, 1),
        );
    }
}
