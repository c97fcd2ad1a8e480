//! Expiry of uploads: files older than `expire_after` and slots never used, deleted in
//! batches (file first, then its row, so a crash in between leaves a row whose file is
//! gone: served as 404 and deleted at the next round). [`recover`], at start: PUTs the
//! previous process did not finish are given back and their partial files removed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Uploads;
use super::slot::now_ms;
use crate::modules::archive::retention::Retention;
use crate::server::Server;

/// Uploads deleted per round trip to the store.
const BATCH: i64 = 500;

/// At start, before the HTTPS listener accepts: PUTs the previous process did not finish are
/// given back and their partial files removed (`postern::start` runs it).
pub async fn recover(store: &postern_store::Store, dir: &std::path::Path) {
    match store.uploads_reset_interrupted().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "uploads interrupted by the last stop given back"),
        Err(e) => tracing::warn!(error = %e, "resetting interrupted uploads failed"),
    }
    if let Ok(mut entries) = tokio::fs::read_dir(dir.join("tmp")).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

pub async fn run(uploads: Arc<Uploads>, server: Server, mut shutdown: watch::Receiver<bool>) {
    loop {
        match expire_once(&uploads, &server).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired uploads deleted"),
            Err(e) => tracing::warn!(error = %e, "upload expiry failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(uploads.config.expire_every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes everything past its time now; how many uploads.
pub async fn expire_once(
    uploads: &Uploads,
    server: &Server,
) -> Result<u64, postern_store::StoreError> {
    let mut deleted = 0;
    loop {
        let now = now_ms();
        let before = match uploads.config.expire_after {
            Retention::Forever => None,
            Retention::For(d) => {
                Some(now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
            }
        };
        let batch = server.store.uploads_expired(now, before, BATCH).await?;
        if batch.is_empty() {
            return Ok(deleted);
        }
        let before_batch = deleted;
        for u in &batch {
            match tokio::fs::remove_file(uploads.path(&u.id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Keep the row: the next round tries again.
                    tracing::warn!(id = %u.id, error = %e, "deleting an expired upload failed");
                    continue;
                }
            }
            server.store.upload_delete(&u.id).await?;
            deleted += 1;
        }
        // A short batch was the last; a batch where nothing could be deleted (a read-only
        // directory) would come back unchanged: try again at the next round.
        if (batch.len() as i64) < BATCH || deleted == before_batch {
            return Ok(deleted);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
