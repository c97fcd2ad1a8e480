//! `idle`: opens `connections` logged-in sessions (`concurrency` logins at a time), holds
//! them for `hold` seconds answering server pings, then closes them. Reports how long the
//! ramp took and, with `--pid`, the server's resident memory before, after the ramp and after
//! the hold, and per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::answer_iq;
use crate::metrics::{Latencies, Report};
use crate::scenario::Run;
use crate::xml::Event;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sessions to open and hold.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub connections: u64,
    /// Logins in flight at once during the ramp.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
    /// Seconds to hold all sessions after the ramp.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub hold: u64,
    /// Send initial presence after binding (an "online" client instead of a bare stream).
    #[arg(long)]
    pub presence: bool,
}

pub async fn run(run: Arc<Run>, args: &Args) -> anyhow::Result<Report> {
    let rss_before = run.probe.server_rss_kib();
    let mark = run.probe.start();
    let started = Instant::now();
    let ramp = Arc::new(Semaphore::new(usize::try_from(args.concurrency)?));
    let dropped = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<Duration, String>>();
    let mut holders = JoinSet::new();
    for i in 0..args.connections {
        let (run, ramp, dropped) = (run.clone(), ramp.clone(), dropped.clone());
        let (mut stop, ready) = (stop_rx.clone(), ready_tx.clone());
        let presence = args.presence;
        holders.spawn(async move {
            let permit = ramp.acquire_owned().await;
            if run.expired() {
                let _ = ready.send(Err("time limit reached during the ramp".into()));
                return;
            }
            let t0 = Instant::now();
            let mut session = match run.target.login(&run.user(i), &run.password, None).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(format!("{e:#}")));
                    return;
                }
            };
            if presence && let Err(e) = session.send("<presence/>").await {
                let _ = ready.send(Err(format!("initial presence: {e:#}")));
                return;
            }
            let _ = ready.send(Ok(t0.elapsed()));
            drop(permit);
            loop {
                tokio::select! {
                    ev = session.reader.next(&mut session.stream) => match ev {
                        Ok(Event::Element(el)) => {
                            if let Some(answer) = answer_iq(&el)
                                && session.send(&answer).await.is_err()
                            {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        }
                        Ok(_) | Err(_) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
            session.close().await;
        });
    }
    drop(ready_tx);

    let (mut ok, mut failed, mut first_error) = (0u64, 0u64, None);
    let mut latencies = Latencies::default();
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(d) => {
                ok += 1;
                latencies.push(d);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        if ok + failed == args.connections {
            break;
        }
    }
    let ramp_s = started.elapsed().as_secs_f64();
    let ramp_cpu = run.probe.cpu_since(&mark);
    let rss_ramped = run.probe.server_rss_kib();
    let hold_until = (Instant::now() + Duration::from_secs(args.hold)).min(run.deadline);
    tokio::time::sleep_until(hold_until).await;
    let rss_held = run.probe.server_rss_kib();
    let dropped_during_hold = dropped.load(Ordering::Relaxed);

    let _ = stop_tx.send(true);
    let closing = Instant::now();
    // Holders close politely (at most 5 s each, in parallel); do not wait forever for them.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while holders.join_next().await.is_some() {}
    })
    .await;
    holders.abort_all();

    let mut report = Report::new("idle", &run.label);
    report.add("connections", args.connections);
    report.add("ok", ok);
    report.add("failed", failed);
    report.add("dropped", dropped_during_hold);
    report.add_f("ramp_s", ramp_s);
    report.add_f("ramp_logins_per_s", ok as f64 / ramp_s);
    report.add_latencies(&latencies.summary());
    report.add_cpu(ramp_cpu, ok as usize);
    report.add_f("close_s", closing.elapsed().as_secs_f64());
    report.add_opt("rss_before_kib", rss_before);
    report.add_opt("rss_ramped_kib", rss_ramped);
    report.add_opt("rss_held_kib", rss_held);
    if let (Some(a), Some(b)) = (rss_before, rss_held)
        && ok > 0
    {
        report.add_f("rss_kib_per_conn", (b as f64 - a as f64) / ok as f64);
    }
    report.add_opt("first_error", first_error);
    if ok == 0 {
        anyhow::bail!("no session opened\n{}", report.render());
    }
    Ok(report)
}
