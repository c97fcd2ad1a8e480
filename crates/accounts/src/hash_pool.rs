//! A small dedicated thread pool for password hashing.
//!
//! argon2id uses 19 MiB per verification. Run on tokio's blocking pool, any number run at
//! once, each on whichever thread is free, and glibc keeps the freed memory in every thread's
//! arena: `bench/xmpp` measured 64 concurrent PLAIN logins taking the server to 6.9 GB RSS,
//! never returned. Here at most `threads` run at once, always on the same threads, so memory
//! stays near `threads × 19 MiB` and excess logins queue instead of piling up.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Cheap to clone; the threads end when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct HashPool {
    jobs: mpsc::Sender<Job>,
}

/// The pool's threads are gone (they could not be started, or a job panicked).
#[derive(Debug, thiserror::Error)]
#[error("the password hashing threads are not running")]
pub struct PoolGone;

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashPool")
    }
}

impl HashPool {
    /// One thread per core, at most four: hashing is CPU-bound.
    pub(crate) fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("postern-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => break,
                        };
                        let Ok(job) = next else { break };
                        // A panicking job must not take the thread with it.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        HashPool { jobs }
    }

    /// Runs `f` on a pool thread and waits for its result without blocking the runtime.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolGone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).map_err(|_| PoolGone)?;
        rx.await.map_err(|_| PoolGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_threads_and_survive_a_panic() {
        let pool = HashPool::new();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("postern-hash-")));
        assert!(pool.run(|| panic!("boom")).await.is_err());
        // Still serving after the panic.
        for _ in 0..8 {
            assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        }
    }
}
