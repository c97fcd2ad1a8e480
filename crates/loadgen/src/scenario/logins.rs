//! `logins`: full logins (TCP, TLS, SASL, bind), one after another per worker, `concurrency`
//! workers at once. Reports logins per second and the latency from TCP connect to the bind
//! result. Each session is closed politely before the worker's next login; closing counts in
//! the wall time, not in the latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics::{Latencies, Report};
use crate::scenario::Run;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Timed logins in all.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
    /// Workers logging in at the same time (1: sequential).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
    /// Skip the untimed first login of each account (it fills the SCRAM cache and the
    /// server's caches).
    #[arg(long)]
    pub no_warmup: bool,
}

pub async fn run(run: Arc<Run>, args: &Args) -> anyhow::Result<Report> {
    if !args.no_warmup {
        let n = args.count.min(u64::from(run.accounts));
        let warm = logins(run.clone(), n, args.concurrency).await;
        if warm.ok == 0 {
            anyhow::bail!(
                "warm-up: no login succeeded: {}",
                warm.first_error.unwrap_or_default()
            );
        }
    }
    let mark = run.probe.start();
    let started = Instant::now();
    let timed = logins(run.clone(), args.count, args.concurrency).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = run.probe.cpu_since(&mark);

    let mut report = Report::new("logins", &run.label);
    report.add("mechanism", format!("{:?}", run.target.mechanism));
    report.add("concurrency", args.concurrency);
    report.add("ok", timed.ok);
    report.add("failed", timed.failed);
    report.add_f("elapsed_s", elapsed);
    report.add_f("logins_per_s", timed.ok as f64 / elapsed);
    report.add_latencies(&timed.latencies.summary());
    // Per attempt: a failed login costs the server too.
    report.add_cpu(cpu, (timed.ok + timed.failed) as usize);
    report.add_opt("first_error", timed.first_error);
    if timed.ok == 0 {
        anyhow::bail!("no login succeeded\n{}", report.render());
    }
    Ok(report)
}

struct Outcome {
    ok: u64,
    failed: u64,
    latencies: Latencies,
    first_error: Option<String>,
}

/// `count` logins over `concurrency` workers, stopping early at the deadline.
async fn logins(run: Arc<Run>, count: u64, concurrency: u64) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (run, next) = (run.clone(), next.clone());
        workers.spawn(async move {
            let mut out = Outcome {
                ok: 0,
                failed: 0,
                latencies: Latencies::default(),
                first_error: None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || run.expired() {
                    return out;
                }
                let started = Instant::now();
                match run.target.login(&run.user(i), &run.password, None).await {
                    Ok(session) => {
                        out.latencies.push(started.elapsed());
                        out.ok += 1;
                        session.close().await;
                    }
                    Err(e) => {
                        out.failed += 1;
                        out.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
        });
    }
    let mut total = Outcome {
        ok: 0,
        failed: 0,
        latencies: Latencies::with_capacity(usize::try_from(count).unwrap_or(0)),
        first_error: None,
    };
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(o) => {
                total.ok += o.ok;
                total.failed += o.failed;
                total.latencies.extend(o.latencies);
                if total.first_error.is_none() {
                    total.first_error = o.first_error;
                }
            }
            Err(e) => {
                total
                    .first_error
                    .get_or_insert_with(|| format!("worker: {e}"));
            }
        }
    }
    total
}
