//! XEP-0363 uploads: the slots clients asked for and the files they stored (the files
//! themselves live on disk, named by id; see the migration). Quotas are checked in the
//! same write transaction that reserves a slot, so concurrent requests cannot overrun them.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// Granted, not used yet.
    Slot,
    /// A PUT is writing it.
    Uploading,
    /// Stored and served.
    Stored,
}

impl UploadState {
    fn from_code(c: i64) -> Result<Self, StoreError> {
        match c {
            0 => Ok(UploadState::Slot),
            1 => Ok(UploadState::Uploading),
            2 => Ok(UploadState::Stored),
            other => Err(StoreError::Corrupt {
                table: "uploads",
                detail: format!("state {other}"),
            }),
        }
    }
}

/// One row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub owner: String,
    pub domain: String,
    pub filename: String,
    pub size: i64,
    pub content_type: String,
    pub state: UploadState,
    pub created_ms: i64,
    pub slot_expires_ms: i64,
    pub stored_ms: Option<i64>,
    pub sha256: Option<String>,
}

/// The limits a slot request is checked against (bytes; `None`: no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadQuota {
    pub per_owner: Option<i64>,
    pub per_domain: Option<i64>,
}

/// Why a slot was not reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// The owner's files and live slots already hold `used` of `limit`.
    Owner { used: i64, limit: i64 },
    /// The domain's do.
    Domain { used: i64, limit: i64 },
}

/// Which uploads to list.
#[derive(Debug, Clone, Default)]
pub struct UploadFilter {
    pub owner: Option<String>,
    pub domain: Option<String>,
    /// Only stored files (no open slots).
    pub stored_only: bool,
    /// Created at or after (ms).
    pub since_ms: Option<i64>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

const COLUMNS: &str = "id, owner, domain, filename, size, content_type, state, created_ms, \
                       slot_expires_ms, stored_ms, sha256";

fn row(r: &sqlx::any::AnyRow) -> Result<Upload, StoreError> {
    Ok(Upload {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        domain: r.try_get("domain")?,
        filename: r.try_get("filename")?,
        size: r.try_get("size")?,
        content_type: r.try_get("content_type")?,
        state: UploadState::from_code(r.try_get("state")?)?,
        created_ms: r.try_get("created_ms")?,
        slot_expires_ms: r.try_get("slot_expires_ms")?,
        stored_ms: r.try_get("stored_ms")?,
        sha256: r.try_get("sha256")?,
    })
}

/// Bytes counted against a quota: stored files and slots still usable at `now_ms`.
const USED: &str = "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS used FROM uploads WHERE {col} = $1 \
                    AND (state <> 0 OR slot_expires_ms > $2)";

impl Store {
    /// Reserves a slot (`upload.state` is ignored: a new row is always a slot) unless it would
    /// take the owner or the domain over `quota`.
    pub async fn upload_reserve(
        &self,
        upload: &Upload,
        quota: UploadQuota,
        now_ms: i64,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.backend == crate::Backend::Postgres {
            // SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL's READ
            // COMMITTED would let two requests read the same sum: one lock per domain (its
            // accounts' quotas are inside it) until the commit.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('uploads:' || $1))")
                .bind(&upload.domain)
                .execute(&mut *tx)
                .await?;
        }
        for (col, key, limit) in [
            ("owner", &upload.owner, quota.per_owner),
            ("domain", &upload.domain, quota.per_domain),
        ] {
            let Some(limit) = limit else { continue };
            let used: i64 = sqlx::query(sqlx::AssertSqlSafe(USED.replace("{col}", col)))
                .bind(key)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_get("used")?;
            if used.saturating_add(upload.size) > limit {
                return Ok(Err(if col == "owner" {
                    QuotaExceeded::Owner { used, limit }
                } else {
                    QuotaExceeded::Domain { used, limit }
                }));
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO uploads ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, NULL, NULL)"
        )))
        .bind(&upload.id)
        .bind(&upload.owner)
        .bind(&upload.domain)
        .bind(&upload.filename)
        .bind(upload.size)
        .bind(&upload.content_type)
        .bind(upload.created_ms)
        .bind(upload.slot_expires_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Takes slot `id` for a PUT: only an unused slot that has not expired at `now_ms`; the
    /// row when it was taken.
    pub async fn upload_claim(&self, id: &str, now_ms: i64) -> Result<Option<Upload>, StoreError> {
        let taken = sqlx::query(
            "UPDATE uploads SET state = 1 WHERE id = $1 AND state = 0 AND slot_expires_ms > $2",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(None);
        }
        self.upload(id).await
    }

    /// A failed PUT gives its slot back (usable again until it expires).
    pub async fn upload_release(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE uploads SET state = 0 WHERE id = $1 AND state = 1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The PUT of `id` completed: the file is on disk (and synced). False when the claim is
    /// gone (the upload was deleted meanwhile): then the file must go too.
    pub async fn upload_stored(
        &self,
        id: &str,
        now_ms: i64,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE uploads SET state = 2, stored_ms = $2, sha256 = $3 WHERE id = $1 AND state = 1",
        )
        .bind(id)
        .bind(now_ms)
        .bind(sha256)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// At start: PUTs that were in progress when the server stopped did not complete.
    pub async fn uploads_reset_interrupted(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE uploads SET state = 0 WHERE state = 1")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn upload(&self, id: &str) -> Result<Option<Upload>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM uploads WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(row)
        .transpose()
    }

    /// Uploads matching `filter`, newest first.
    pub async fn uploads(&self, filter: &UploadFilter) -> Result<Vec<Upload>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM uploads WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.owner.is_some() {
            sql += &format!(" AND owner = {}", next());
        }
        if filter.domain.is_some() {
            sql += &format!(" AND domain = {}", next());
        }
        if filter.since_ms.is_some() {
            sql += &format!(" AND created_ms >= {}", next());
        }
        if filter.stored_only {
            sql += " AND state = 2";
        }
        sql += " ORDER BY created_ms DESC, id";
        if filter.limit.is_some() {
            sql += &format!(" LIMIT {}", next());
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(o) = &filter.owner {
            q = q.bind(o);
        }
        if let Some(d) = &filter.domain {
            q = q.bind(d);
        }
        if let Some(s) = filter.since_ms {
            q = q.bind(s);
        }
        if let Some(l) = filter.limit {
            q = q.bind(l);
        }
        q.fetch_all(&self.pool).await?.iter().map(row).collect()
    }

    /// Deletes the row of `id` (the caller removes the file first); whether it existed.
    pub async fn upload_delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    /// Up to `max` uploads past their time at `now_ms`: files stored before
    /// `stored_before_ms` (none when `None`: kept forever) by accounts not under a legal hold
    /// (`postern logs hold`), and slots never used that expired.
    pub async fn uploads_expired(
        &self,
        now_ms: i64,
        stored_before_ms: Option<i64>,
        max: i64,
    ) -> Result<Vec<Upload>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM uploads WHERE (state = 0 AND slot_expires_ms <= $1) \
             OR (state = 2 AND stored_ms < $2 \
                 AND owner NOT IN (SELECT owner FROM archive_holds)) \
             ORDER BY created_ms LIMIT $3"
        )))
        .bind(now_ms)
        .bind(stored_before_ms.unwrap_or(i64::MIN))
        .bind(max)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(row)
        .collect()
    }

    /// When space under `owner`'s (or, `domain` true, the domain's) quota frees up at the
    /// earliest: the first open slot's expiry, or the oldest stored file's (`keep_ms` after
    /// it was stored; `None`: files are kept forever). `None` when nothing will free up.
    pub async fn upload_retry_at(
        &self,
        key: &str,
        domain: bool,
        now_ms: i64,
        keep_ms: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let col = if domain { "domain" } else { "owner" };
        let slot: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT MIN(slot_expires_ms) AS t FROM uploads WHERE {col} = $1 AND state = 0 \
             AND slot_expires_ms > $2"
        )))
        .bind(key)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?
        .try_get("t")?;
        let file: Option<i64> = match keep_ms {
            None => None,
            Some(keep) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT MIN(stored_ms) AS t FROM uploads WHERE {col} = $1 AND state = 2 \
                 AND owner NOT IN (SELECT owner FROM archive_holds)"
            )))
            .bind(key)
            .fetch_one(&self.pool)
            .await?
            .try_get::<Option<i64>, _>("t")?
            .map(|t| t.saturating_add(keep)),
        };
        Ok([slot, file].into_iter().flatten().min())
    }

    /// Bytes stored and reserved by `owner` at `now_ms`.
    pub async fn upload_usage(&self, owner: &str, now_ms: i64) -> Result<i64, StoreError> {
        Ok(
            sqlx::query(sqlx::AssertSqlSafe(USED.replace("{col}", "owner")))
                .bind(owner)
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await?
                .try_get("used")?,
        )
    }
}
