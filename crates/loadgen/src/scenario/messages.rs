//! `messages`: `pairs` sender/receiver pairs of logged-in clients. Each sender sends `count`
//! chat messages to its partner's full JID as fast as the server takes them, with at most
//! `window` of its messages not yet received by the partner. Each body carries the sequence
//! number and the send time, so the receiver measures end-to-end latency (both ends live in
//! this process and share one clock) and checks order.
//!
//! With a window the latency is that of a saturated pipeline: roughly the window divided by
//! the pair's throughput, plus the server's own delay. A smaller window shows the latter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Session, Tls, answer_iq};
use crate::metrics::{Latencies, Report};
use crate::scenario::Run;
use crate::xml::{Event, XmlReader, escape};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sender/receiver pairs (2 accounts each).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub pairs: u64,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
    /// Messages of one sender in flight (sent, not yet received) at most. Keep it well below
    /// the server's per-session queue.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub window: u32,
    /// Filler characters in each body after the timestamp.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub body_size: u64,
    /// Logins in flight at once while the clients connect.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
}

/// Messages written to the socket in one flush, at most.
const BATCH: u64 = 64;

/// What the two sides of a pair share.
struct Pair {
    /// Permits = messages the sender may still have in flight.
    window: Semaphore,
    /// Messages that came back to the sender as errors.
    bounced: AtomicU64,
}

struct Received {
    latencies: Latencies,
    received: u64,
    reordered: u64,
    last: Option<Instant>,
}

pub async fn run(run: Arc<Run>, args: &Args) -> anyhow::Result<Report> {
    if args.pairs * 2 > u64::from(run.accounts) {
        bail!(
            "{} pairs need {} accounts; --accounts is {}",
            args.pairs,
            args.pairs * 2,
            run.accounts
        );
    }
    let sessions = connect_all(&run, args).await?;
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mark = run.probe.start();
    let mut senders = JoinSet::new();
    let mut receivers = JoinSet::new();
    for (sender, receiver) in sessions {
        let pair = Arc::new(Pair {
            window: Semaphore::new(args.window as usize),
            bounced: AtomicU64::new(0),
        });
        let to = escape(&receiver.jid);
        let (s_read, s_write) = tokio::io::split(sender.stream);
        let (r_read, r_write) = tokio::io::split(receiver.stream);
        let (count, body_size, deadline) = (args.count, args.body_size, run.deadline);
        let write = send_all(s_write, to, count, body_size, epoch, deadline, pair.clone());
        let bounces = drain_sender(s_read, sender.reader, pair.clone(), stop_rx.clone());
        senders.spawn(async move {
            let (write, bounces) = tokio::join!(write, bounces);
            (write, bounces, sender.jid)
        });
        receivers.spawn(receive_all(
            r_read,
            r_write,
            receiver.reader,
            receiver.jid,
            count,
            epoch,
            deadline,
            pair,
        ));
    }

    let mut latencies = Latencies::with_capacity(usize::try_from(args.pairs * args.count)?);
    let (mut received, mut reordered, mut last) = (0, 0, epoch);
    let mut first_error = None;
    let mut to_close = Vec::new();
    while let Some(done) = receivers.join_next().await {
        match done {
            Ok((r, session)) => {
                received += r.received;
                reordered += r.reordered;
                last = last.max(r.last.unwrap_or(epoch));
                latencies.extend(r.latencies);
                to_close.push(session);
            }
            Err(e) => {
                first_error.get_or_insert(format!("receiver: {e}"));
            }
        }
    }
    let cpu = run.probe.cpu_since(&mark);
    let _ = stop_tx.send(true);
    let (mut sent, mut bounced) = (0, 0);
    while let Some(done) = senders.join_next().await {
        match done {
            Ok((write, (reader, read, bounces), jid)) => {
                bounced += bounces;
                match write {
                    Ok((n, w)) => {
                        sent += n;
                        to_close.push(Session {
                            jid,
                            stream: read.unsplit(w),
                            reader,
                        });
                    }
                    Err(e) => {
                        first_error.get_or_insert(format!("sender: {e:#}"));
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(format!("sender: {e}"));
            }
        }
    }
    let mut closing = JoinSet::new();
    for s in to_close {
        closing.spawn(s.close());
    }
    while closing.join_next().await.is_some() {}

    let elapsed = (last - epoch).as_secs_f64();
    let mut report = Report::new("messages", &run.label);
    report.add("pairs", args.pairs);
    report.add("window", args.window);
    report.add("sent", sent);
    report.add("delivered", received);
    report.add("bounced", bounced);
    report.add("reordered", reordered);
    report.add_f("elapsed_s", elapsed);
    report.add_f(
        "msgs_per_s",
        if elapsed > 0.0 {
            received as f64 / elapsed
        } else {
            0.0
        },
    );
    report.add_latencies(&latencies.summary());
    report.add_cpu(cpu, usize::try_from(received)?);
    report.add_opt("first_error", first_error);
    if received == 0 {
        bail!("no message delivered\n{}", report.render());
    }
    Ok(report)
}

/// Logs in every sender and receiver (resource `loadgen`); pairs are (user 2k+1, user 2k+2).
async fn connect_all(run: &Arc<Run>, args: &Args) -> anyhow::Result<Vec<(Session, Session)>> {
    let ramp = Arc::new(Semaphore::new(usize::try_from(args.concurrency)?));
    let mut logins = JoinSet::new();
    for i in 0..args.pairs * 2 {
        let (run, ramp) = (run.clone(), ramp.clone());
        logins.spawn(async move {
            let _permit = ramp.acquire_owned().await;
            let s = run
                .target
                .login(&run.user(i), &run.password, Some("loadgen"))
                .await;
            (i, s)
        });
    }
    let mut slots: Vec<Option<Session>> = (0..args.pairs * 2).map(|_| None).collect();
    while let Some(done) = logins.join_next().await {
        let (i, s) = done.context("login task")?;
        let slot = slots
            .get_mut(usize::try_from(i)?)
            .context("login index out of range")?;
        *slot = Some(s?);
    }
    let mut sessions = slots.into_iter().flatten();
    let mut pairs = Vec::new();
    while let (Some(a), Some(b)) = (sessions.next(), sessions.next()) {
        pairs.push((a, b));
    }
    Ok(pairs)
}

/// Sends `count` messages, each once the window allows; returns how many and the write half.
async fn send_all(
    mut w: WriteHalf<Tls>,
    to: String,
    count: u64,
    body_size: u64,
    epoch: Instant,
    deadline: Instant,
    pair: Arc<Pair>,
) -> anyhow::Result<(u64, WriteHalf<Tls>)> {
    let filler = "x".repeat(usize::try_from(body_size)?);
    let mut batch = String::new();
    let mut seq = 0;
    while seq < count {
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, pair.window.acquire()).await else {
            break;
        };
        permit.forget();
        batch.clear();
        loop {
            let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
            batch.push_str(&format!(
                "<message to='{to}' type='chat' id='m{seq}'><body>{seq} {now} {filler}</body>\
                 </message>"
            ));
            seq += 1;
            if seq >= count || seq % BATCH == 0 {
                break;
            }
            match pair.window.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        w.write_all(batch.as_bytes()).await.context("send")?;
        w.flush().await.context("flush")?;
    }
    Ok((seq, w))
}

/// Reads the sender's stream until stopped: messages bounced as errors give their window
/// slot back. Returns the reader state, the read half and the number of bounces.
async fn drain_sender(
    mut r: ReadHalf<Tls>,
    mut reader: XmlReader,
    pair: Arc<Pair>,
    mut stop: watch::Receiver<bool>,
) -> (XmlReader, ReadHalf<Tls>, u64) {
    loop {
        tokio::select! {
            ev = reader.next(&mut r) => match ev {
                Ok(Event::Element(el)) => {
                    if el.name == "message" && el.attr("type") == Some("error") {
                        pair.bounced.fetch_add(1, Ordering::Relaxed);
                        pair.window.add_permits(1);
                    }
                }
                Ok(_) | Err(_) => break,
            },
            _ = stop.changed() => break,
        }
    }
    let bounced = pair.bounced.load(Ordering::Relaxed);
    (reader, r, bounced)
}

/// Receives until all `count` messages arrived or bounced, or the deadline passed.
#[allow(clippy::too_many_arguments)]
async fn receive_all(
    mut r: ReadHalf<Tls>,
    mut w: WriteHalf<Tls>,
    mut reader: XmlReader,
    jid: String,
    count: u64,
    epoch: Instant,
    deadline: Instant,
    pair: Arc<Pair>,
) -> (Received, Session) {
    let mut out = Received {
        latencies: Latencies::with_capacity(usize::try_from(count).unwrap_or(0)),
        received: 0,
        reordered: 0,
        last: None,
    };
    let mut next_seq = 0;
    while out.received + pair.bounced.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        // Wake up now and then to notice bounces and the deadline.
        let Ok(ev) = tokio::time::timeout(Duration::from_millis(100), reader.next(&mut r)).await
        else {
            continue;
        };
        let el = match ev {
            Ok(Event::Element(el)) => el,
            Ok(_) | Err(_) => break,
        };
        if let Some(answer) = answer_iq(&el) {
            if w.write_all(answer.as_bytes()).await.is_err() || w.flush().await.is_err() {
                break;
            }
            continue;
        }
        if el.name != "message" || el.attr("type") == Some("error") {
            continue;
        }
        let Some(body) = el.child("body") else {
            continue;
        };
        let mut fields = body.text.split(' ');
        let (Some(Ok(seq)), Some(Ok(sent))) = (
            fields.next().map(str::parse::<u64>),
            fields.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        let now = Instant::now();
        let now_us = u64::try_from((now - epoch).as_micros()).unwrap_or(u64::MAX);
        out.latencies.push_micros(now_us.saturating_sub(sent));
        out.received += 1;
        out.last = Some(now);
        if seq != next_seq {
            out.reordered += 1;
        }
        next_seq = seq + 1;
        pair.window.add_permits(1);
    }
    let session = Session {
        jid,
        stream: r.unsplit(w),
        reader,
    };
    (out, session)
}
