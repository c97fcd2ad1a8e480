//! Relaying an activated stream: both directions copied until each side has closed its
//! half, within a byte budget (both directions together), a rate per direction, and an idle
//! timeout (no byte either way).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The limits of one stream.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    /// Bytes per second per direction; `None`: as fast as the sockets go.
    pub rate: Option<u64>,
    pub idle: Duration,
}

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed.
    Done,
    /// The byte budget was spent.
    TooLarge,
    /// Nothing moved for the idle time.
    Idle,
    /// A socket failed.
    Broken,
}

/// Relays between `a` and `b`; the bytes moved and how it ended.
pub async fn relay(a: TcpStream, b: TcpStream, limits: Limits) -> (u64, Ended) {
    let moved = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let one = copy(ar, bw, limits, moved.clone(), last.clone());
    let other = copy(br, aw, limits, moved.clone(), last.clone());
    tokio::pin!(one, other);
    // A clean half-close lets the other direction finish; anything else ends both at once
    // (dropping the halves closes both sockets).
    let ended = tokio::select! {
        e = &mut one => if e == Ended::Done { other.await } else { e },
        e = &mut other => if e == Ended::Done { one.await } else { e },
    };
    (moved.load(Ordering::Relaxed), ended)
}

async fn copy(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    limits: Limits,
    moved: Arc<AtomicU64>,
    last: Arc<std::sync::Mutex<Instant>>,
) -> Ended {
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = loop {
            match tokio::time::timeout(Duration::from_secs(1), from.read(&mut buf)).await {
                Ok(Ok(n)) => break n,
                Ok(Err(_)) => return Ended::Broken,
                // Idle only when neither direction moved.
                Err(_) => {
                    let quiet = last.lock().map(|l| l.elapsed()).unwrap_or_default();
                    if quiet >= limits.idle {
                        return Ended::Idle;
                    }
                }
            }
        };
        if n == 0 {
            let _ = to.shutdown().await;
            return Ended::Done;
        }
        let total = moved.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > limits.max_bytes {
            return Ended::TooLarge;
        }
        // A peer that stops reading is as idle as one that stops sending.
        match tokio::time::timeout(limits.idle, to.write_all(&buf[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ended::Broken,
            Err(_) => return Ended::Idle,
        }
        if let Ok(mut l) = last.lock() {
            *l = Instant::now();
        }
        sent += n as u64;
        if let Some(rate) = limits.rate.filter(|r| *r > 0) {
            // Ahead of the rate: wait until the bytes sent are due.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let elapsed = started.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
}
