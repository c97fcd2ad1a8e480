//! The archive's one writer: messages from every session go into one queue and are written
//! in batches, one transaction each (group commit). Routing does not wait for the commit;
//! the session keeps the receipt ([`super::Pending`]) and anything that reads its handled
//! count (an SM `<a/>`) waits for it first, so what a client is told was handled is in the
//! archive even after a `kill -9`. Nothing waits per message, so a batch holds whatever all
//! sessions sent during the previous commit: measured with `archive_bench`, the cost per
//! message falls with the batch (indexes are written once per page per commit).

use postern_store::{NewArchived, Store};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Messages waiting for the writer; past it, routing waits for room (back-pressure).
const QUEUE: usize = 4096;
/// And their bytes (XML and text): a slow database holds at most this much in the queue.
const QUEUE_BYTES: usize = 64 << 20;
/// Party rows written to the log before they are moved into the indexed table
/// ([`postern_store::Store::archive_flush`]): the more at once, the fewer index pages
/// written per row. Measured with `archive_bench 20000 256`: 83 us per message with the party
/// rows written with each batch, 54 us through the log.
const FLUSH_AT: usize = 4096;
/// Or after this long without a message.
const FLUSH_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

// Nearly every job is a row: boxing it would cost an allocation per message to save a few
// hundred bytes on the rare marker.
#[allow(clippy::large_enum_variant)]
enum Job {
    Row(NewArchived, oneshot::Sender<bool>, OwnedSemaphorePermit),
    /// Answered once everything queued before it is committed.
    Marker(oneshot::Sender<()>),
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    bytes: Arc<Semaphore>,
}

impl Writer {
    /// Starts the writer task over `store`, writing at most `max_batch` messages per
    /// transaction.
    pub fn spawn(store: Store, max_batch: usize) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx, max_batch.max(1)));
        Writer {
            tx,
            bytes: Arc::new(Semaphore::new(QUEUE_BYTES)),
        }
    }

    /// Queues `m` (waiting only for room in the queue); the receipt says, once the batch is
    /// committed, whether it was written.
    pub async fn submit(&self, m: NewArchived) -> oneshot::Receiver<bool> {
        let (done, committed) = oneshot::channel();
        let cost = (m.xml.len() + m.body.len()).clamp(1, QUEUE_BYTES);
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        // If the writer is gone, `done` is dropped with the job and the receipt reads false.
        if let Ok(room) = self.bytes.clone().acquire_many_owned(cost).await {
            let _ = self.tx.send(Job::Row(m, done, room)).await;
        }
        committed
    }

    /// Waits until everything queued so far is committed (or failed): a query after it sees
    /// every message routed before it.
    pub async fn sync(&self) {
        let (done, synced) = oneshot::channel();
        if self.tx.send(Job::Marker(done)).await.is_ok() {
            let _ = synced.await;
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut rows = Vec::with_capacity(max_batch);
    let mut waiting = Vec::with_capacity(max_batch);
    let mut markers = Vec::new();
    let mut held = Vec::with_capacity(max_batch);
    // Party rows added to the log since the last flush (after a restart: unknown, so the
    // first idle second flushes whatever is there).
    let mut logged = 1;
    loop {
        let job = if logged > 0 {
            match tokio::time::timeout(FLUSH_IDLE, rx.recv()).await {
                Ok(job) => job,
                Err(_) => {
                    logged = flush(&store, logged).await;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(job) = job else { break };
        let mut next = Some(job);
        // Everything that queued during the last commit goes into this one.
        while let Some(job) = next.take() {
            match job {
                Job::Row(row, done, room) => {
                    rows.push(row);
                    waiting.push(done);
                    held.push(room);
                }
                Job::Marker(done) => markers.push(done),
            }
            if rows.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        let results = commit(&store, &rows).await;
        logged += rows.iter().map(|r| r.parties.len()).sum::<usize>();
        if logged >= FLUSH_AT {
            logged = flush(&store, logged).await;
        }
        for (done, ok) in waiting.drain(..).zip(results) {
            let _ = done.send(ok);
        }
        for done in markers.drain(..) {
            let _ = done.send(());
        }
        rows.clear();
        held.clear();
    }
}

/// Moves the party log into the indexed table, in bulk; returns what is left to move (0, or
/// what failed to move, to be tried again).
async fn flush(store: &Store, logged: usize) -> usize {
    match store.archive_flush_all().await {
        Ok(_) => 0,
        Err(e) => {
            tracing::warn!(error = %e, "archive party flush failed; trying again later");
            logged.max(1)
        }
    }
}

/// Writes `rows` in one transaction, trying again after a short pause when that fails (a
/// database busy beyond its timeout, a PostgreSQL fail-over); then each on its own, so that
/// one bad row (a duplicate id) does not fail the others.
async fn commit(store: &Store, rows: &[NewArchived]) -> Vec<bool> {
    for pause_ms in [20, 200] {
        match store.archive_insert(rows).await {
            Ok(()) => return vec![true; rows.len()],
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "archive write failed; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
            }
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let result = store.archive_insert(std::slice::from_ref(row)).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, uid = %row.uid, "archive write failed");
        }
        out.push(result.is_ok());
    }
    out
}
