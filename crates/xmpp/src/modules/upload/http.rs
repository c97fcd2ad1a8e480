//! The upload routes: `PUT`, `GET`, `HEAD` and `OPTIONS` (CORS, for web clients) of
//! `/upload/<id>/<name>`.
//!
//! A PUT is checked before a byte is read: the signature and expiry of its URL, the host it
//! was sent to, `Content-Length` equal to the slot's size, `Content-Type` (when sent) equal to
//! the slot's; then the slot is claimed (a second PUT gets `409`). The body is streamed into
//! `tmp/<id>.part` (never held in memory), hashed as it comes, cut at the declared size, and
//! only when it is complete synced, renamed into place (directory synced too) and marked
//! stored: then `201`. Any failure on the way (short body, stall, disk full) removes the
//! partial file and gives the slot back.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use postern_http::Origin;
use postern_store::{Upload, UploadState};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::Uploads;
use super::slot::{now_ms, verify};
use crate::server::Server;

#[derive(Clone)]
struct App {
    uploads: Arc<Uploads>,
    server: Server,
}

pub(super) fn router(uploads: Arc<Uploads>, server: Server) -> axum::Router {
    axum::Router::new()
        .route(
            "/upload/{id}/{name}",
            get(download).put(upload).options(preflight),
        )
        .with_state(App { uploads, server })
}

#[derive(serde::Deserialize)]
struct Signed {
    expires: Option<i64>,
    sig: Option<String>,
}

/// A plain-text error response (curl users see why).
fn refuse(status: StatusCode, why: &str) -> Response {
    let mut r = (status, format!("{why}\n")).into_response();
    cors(r.headers_mut());
    r
}

fn cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

async fn upload(
    State(app): State<App>,
    Extension(origin): Extension<Origin>,
    Path((id, name)): Path<(String, String)>,
    Query(signed): Query<Signed>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let store = &app.server.store;
    let (Some(expires), Some(sig)) = (signed.expires, signed.sig) else {
        return refuse(StatusCode::FORBIDDEN, "not a signed upload URL");
    };
    let row = match store.upload(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return refuse(StatusCode::FORBIDDEN, "no such upload slot"),
        Err(e) => {
            tracing::error!(error = %e, "reading an upload slot failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    if row.filename != name
        || row.slot_expires_ms != expires
        || !verify(&app.uploads.key, &row, &sig)
    {
        return refuse(StatusCode::FORBIDDEN, "the URL's signature does not match");
    }
    if !for_domain(&origin, &row.domain) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this slot was granted for another host",
        );
    }
    if row.state == UploadState::Stored || row.state == UploadState::Uploading {
        return refuse(StatusCode::CONFLICT, "this slot was used already");
    }
    if expires <= now_ms() {
        return refuse(StatusCode::FORBIDDEN, "the upload slot has expired");
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    match length {
        None => return refuse(StatusCode::LENGTH_REQUIRED, "Content-Length is required"),
        Some(n) if n > row.size => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "larger than the size the slot was granted for",
            );
        }
        Some(n) if n != row.size => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Content-Length differs from the size the slot was granted for",
            );
        }
        Some(_) => {}
    }
    if let Some(sent) = headers.get(header::CONTENT_TYPE) {
        let sent = sent.to_str().unwrap_or_default().trim();
        if media_type(sent) != media_type(&row.content_type) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type differs from the type the slot was granted for",
            );
        }
    }
    match store.upload_claim(&id, now_ms()).await {
        Ok(Some(_)) => {}
        Ok(None) => return refuse(StatusCode::CONFLICT, "this slot was used already"),
        Err(e) => {
            tracing::error!(error = %e, "claiming an upload slot failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    }
    // From the claim on, the upload runs in a task of its own: should this handler be dropped
    // mid-way (hyper drops it when its connection ends, e.g. at the end of the shutdown
    // grace), the task still sees the body end, removes the partial file and gives the slot
    // back, or completes the stored file's record; the claim is never left behind.
    let client = origin.client;
    let task = tokio::spawn(async move { finish(app, row, body, client).await });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "an upload task failed");
        refuse(StatusCode::INTERNAL_SERVER_ERROR, "the upload failed")
    })
}

/// Receives a claimed upload and records the outcome.
async fn finish(app: App, row: Upload, body: Body, client: std::net::IpAddr) -> Response {
    let store = &app.server.store;
    let id = row.id.clone();
    match receive(&app.uploads, &row, body).await {
        Ok(sha256) => {
            match store.upload_stored(&id, now_ms(), &sha256).await {
                Ok(true) => {}
                Ok(false) => {
                    // Deleted while it was coming in (`postern files delete`): so is the file.
                    let _ = tokio::fs::remove_file(app.uploads.path(&id)).await;
                    return refuse(StatusCode::GONE, "the upload was deleted meanwhile");
                }
                Err(e) => {
                    tracing::error!(error = %e, "recording an upload failed");
                    let _ = tokio::fs::remove_file(app.uploads.path(&id)).await;
                    let _ = store.upload_release(&id).await;
                    return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
                }
            }
            tracing::info!(owner = %row.owner, %id, size = row.size, %client, "file uploaded");
            let mut r = StatusCode::CREATED.into_response();
            cors(r.headers_mut());
            r
        }
        Err(failure) => {
            let _ = tokio::fs::remove_file(app.uploads.part_path(&id)).await;
            if let Err(e) = store.upload_release(&id).await {
                tracing::error!(error = %e, "giving an upload slot back failed");
            }
            tracing::info!(owner = %row.owner, %id, reason = %failure.1, "upload failed");
            refuse(failure.0, &failure.1)
        }
    }
}

/// A media type compared the way HTTP means it: any case, no space around `;` and `=`.
fn media_type(t: &str) -> String {
    t.split(';')
        .map(|part| part.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(";")
        .to_ascii_lowercase()
}

/// Whether the request's host is where `domain`'s upload URLs point.
fn for_domain(origin: &Origin, domain: &str) -> bool {
    match &origin.domain {
        Some(d) => d == domain && origin.label.is_none(),
        // A shared public_url host serves every domain.
        None => true,
    }
}

type Failure = (StatusCode, String);

/// Bytes gathered before one write to the file.
const WRITE_BUFFER: usize = 256 << 10;

/// Streams `body` into the part file, then into place; the SHA-256 (hex) of what was stored.
async fn receive(uploads: &Uploads, row: &Upload, body: Body) -> Result<String, Failure> {
    let io = |what: &str, e: std::io::Error| -> Failure {
        tracing::error!(error = %e, "upload: {what}");
        if e.raw_os_error() == Some(28) {
            (
                StatusCode::INSUFFICIENT_STORAGE,
                "the server's disk is full".into(),
            )
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not {what}"),
            )
        }
    };
    let part = uploads.part_path(&row.id);
    let final_path = uploads.path(&row.id);
    for dir in [part.parent(), final_path.parent()].into_iter().flatten() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io("create the upload directory", e))?;
    }
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .await
        .map_err(|e| io("create the file", e))?;
    // tokio's File hands every write to a blocking thread: written frame by frame, a 1 GiB
    // upload ran at 94 MB/s (0.18x nginx); gathered into 256 KiB writes, 459 MB/s (0.69x),
    // while 50 concurrent uploads peak at +33 MiB RSS (1 MiB writes: no faster, +114 MiB).
    // tests/examples/upload_bench.rs, bench/README.md.
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let expected = u64::try_from(row.size).unwrap_or(0);
    let mut written: u64 = 0;
    let mut hash = sha2::Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the upload did not complete: {e}"),
            )
        })?;
        written += chunk.len() as u64;
        if written > expected {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "more data than the slot's size".into(),
            ));
        }
        hash.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| io("write the file", e))?;
    }
    if written != expected {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("got {written} of {expected} bytes"),
        ));
    }
    file.flush().await.map_err(|e| io("write the file", e))?;
    let file = file.into_inner();
    file.sync_all().await.map_err(|e| io("sync the file", e))?;
    drop(file);
    tokio::fs::rename(&part, &final_path)
        .await
        .map_err(|e| io("move the file into place", e))?;
    if let Some(dir) = final_path.parent() {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(|e| io("sync the directory", std::io::Error::other(e)))?
            .map_err(|e| io("sync the directory", e))?;
    }
    Ok(hex::encode(hash.finalize()))
}

/// Types a browser shows without running anything; everything else is an attachment.
fn inline_safe(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "text/plain"
            | "application/pdf"
    ) || essence.starts_with("audio/")
        || essence.starts_with("video/")
}

async fn download(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let row = match app.server.store.upload(&id).await {
        Ok(Some(r)) if r.state == UploadState::Stored && r.filename == name => r,
        Ok(_) => return refuse(StatusCode::NOT_FOUND, "no such file"),
        Err(e) => {
            tracing::error!(error = %e, "reading an upload failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    let size = u64::try_from(row.size).unwrap_or(0);
    let etag = format!("\"{}\"", row.sha256.as_deref().unwrap_or(&row.id));
    let mut h = HeaderMap::new();
    cors(&mut h);
    let set = |h: &mut HeaderMap, name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(&mut h, header::ETAG, &etag);
    set(&mut h, header::ACCEPT_RANGES, "bytes");
    set(
        &mut h,
        header::CACHE_CONTROL,
        "private, max-age=31536000, immutable",
    );
    set(&mut h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        &mut h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; sandbox",
    );
    let inline = inline_safe(&row.content_type);
    set(&mut h, header::CONTENT_TYPE, &row.content_type);
    let disposition = format!(
        "{}; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        percent_encoding::utf8_percent_encode(&row.filename, percent_encoding::NON_ALPHANUMERIC)
    );
    set(&mut h, header::CONTENT_DISPOSITION, &disposition);
    if let Some(stored) = row
        .stored_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
    {
        set(
            &mut h,
            header::LAST_MODIFIED,
            &stored.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
    }
    let matches_etag = |v: &str| v.split(',').any(|t| t.trim() == etag || t.trim() == "*");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(matches_etag)
    {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    // A Range counts unless If-Range names another version.
    let range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if range_ok => match parse_range(r, size) {
            Range::One(a, b) => Some((a, b)),
            Range::Whole => None,
            Range::Unsatisfiable => {
                set(&mut h, header::CONTENT_RANGE, &format!("bytes */{size}"));
                return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
            }
        },
        _ => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => {
            set(
                &mut h,
                header::CONTENT_RANGE,
                &format!("bytes {a}-{b}/{size}"),
            );
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    set(&mut h, header::CONTENT_LENGTH, &len.to_string());
    if method == Method::HEAD {
        return (status, h).into_response();
    }
    let mut file = match tokio::fs::File::open(app.uploads.path(&row.id)).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(%id, error = %e, "a stored upload's file is missing");
            return refuse(StatusCode::NOT_FOUND, "no such file");
        }
    };
    if start > 0
        && let Err(e) = file.seek(SeekFrom::Start(start)).await
    {
        tracing::error!(%id, error = %e, "seeking in an upload failed");
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "could not read the file");
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024);
    (status, h, Body::from_stream(stream)).into_response()
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// First and last byte, inclusive.
    One(u64, u64),
    /// Not one range we serve partially (several, or a syntax we ignore): the whole file.
    Whole,
    Unsatisfiable,
}

/// RFC 9110 §14.1.2 for a single `bytes` range.
fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(b) {
            Some(0) => Range::Unsatisfiable,
            Some(n) if size > 0 => Range::One(size.saturating_sub(n), size - 1),
            Some(_) => Range::Unsatisfiable,
            None => Range::Whole,
        },
        (false, _) => {
            let Some(first) = parse(a) else {
                return Range::Whole;
            };
            if first >= size {
                return Range::Unsatisfiable;
            }
            let last = if b.is_empty() {
                size - 1
            } else {
                match parse(b) {
                    Some(l) if l >= first => l.min(size - 1),
                    _ => return Range::Whole,
                }
            };
            Range::One(first, last)
        }
        (true, true) => Range::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Range::One(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), Range::One(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Range::One(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Range::One(0, 999));
        assert_eq!(parse_range("bytes=990-5000", 1000), Range::One(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 1000), Range::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Range::Whole);
        assert_eq!(parse_range("items=0-1", 1000), Range::Whole);
        assert_eq!(parse_range("bytes=0-0", 0), Range::Unsatisfiable);
    }

    #[test]
    fn media_types_compare_as_http_means_them() {
        assert_eq!(
            media_type("text/plain;charset=UTF-8"),
            media_type("Text/Plain; charset = utf-8")
        );
        assert_ne!(media_type("text/plain"), media_type("text/html"));
    }

    #[test]
    fn only_passive_types_are_shown_inline() {
        for t in [
            "image/png",
            "video/mp4",
            "audio/ogg",
            "text/plain; charset=utf-8",
        ] {
            assert!(inline_safe(t), "{t}");
        }
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/octet-stream",
        ] {
            assert!(!inline_safe(t), "{t}");
        }
    }
}
