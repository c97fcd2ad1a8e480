//! How long the archive keeps messages: `[xmpp.archive] retention` ("forever" or a duration
//! such as "365d"), per domain in `[xmpp.archive.retention_by_domain]`. A background task
//! deletes what is older, every `expire_every`, in batches with a pause between them so
//! that the archive's writer (and so routing) is never held up for long. Accounts under a
//! legal hold (`postern logs hold`) are left alone.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::server::Server;

/// Archive entries deleted per statement.
const BATCH: usize = 1000;
/// The pause between two batches: the writer's transactions get the database in between.
const PAUSE: Duration = Duration::from_millis(20);

/// How long messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Forever,
    For(Duration),
}

impl<'de> serde::Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "forever" {
            return Ok(Retention::Forever);
        }
        humantime::parse_duration(s.trim())
            .map(Retention::For)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{s}` is neither \"forever\" nor a duration such as \"365d\": {e}"
                ))
            })
    }
}

/// The retention of `domain`'s archives.
pub fn of(server: &Server, domain: &str) -> Retention {
    let config = &server.config.archive;
    config
        .retention_by_domain
        .get(domain)
        .copied()
        .unwrap_or(config.retention)
}

/// The expiry task: runs until shutdown.
pub async fn run(server: Server, mut shutdown: watch::Receiver<bool>) {
    let every = server.config.archive.expire_every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        for domain in server.hosts.domains() {
            let Retention::For(keep) = of(&server, domain) else {
                continue;
            };
            let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            let before = Utc::now()
                .checked_sub_signed(keep)
                .map_or(i64::MIN, |t| t.timestamp_micros());
            let (mut entries, mut messages) = (0, 0);
            loop {
                match server
                    .store
                    .archive_expire(Some(domain), None, before, BATCH)
                    .await
                {
                    Ok((0, 0)) => break,
                    Ok((e, m)) => {
                        entries += e;
                        messages += m;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, %domain, "archive expiry failed");
                        break;
                    }
                }
                if *shutdown.borrow() {
                    return;
                }
                tokio::time::sleep(PAUSE).await;
            }
            if entries > 0 || messages > 0 {
                tracing::info!(%domain, entries, messages, "expired archived messages");
            }
        }
    }
}
