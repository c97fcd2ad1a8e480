//! The slot request and the signature of PUT URLs.

use std::sync::Arc;

use hmac::{KeyInit, Mac};
use minidom::Element;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use postern_store::{QuotaExceeded, Upload, UploadQuota, UploadState};
use xmpp_parsers::http_upload::{Get, Put, SlotRequest, SlotResult};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::Uploads;
use crate::modules::archive::retention::Retention;
use crate::router::{Ctx, IqRequest, IqResult};
use crate::stanza::StanzaFault;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Longest file name accepted (bytes), as most file systems allow.
const NAME_MAX: usize = 255;
/// Longest content type accepted.
const TYPE_MAX: usize = 255;

/// Characters left as they are in the name part of a URL.
const NAME_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) async fn request(
    uploads: Arc<Uploads>,
    ctx: Ctx,
    req: IqRequest<SlotRequest>,
) -> IqResult {
    if req.to.node().is_some() {
        return Err(StanzaFault::item_not_found());
    }
    // upload.<domain> serves <domain>'s accounts only.
    let service_domain = req
        .to
        .domain()
        .as_str()
        .split_once('.')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let owner = ctx.from.to_bare();
    let domain = owner.domain().as_str().to_ascii_lowercase();
    if service_domain != domain {
        return Err(StanzaFault::forbidden().with_text(format!(
            "this service takes uploads from {service_domain} accounts"
        )));
    }
    let SlotRequest {
        filename,
        size,
        content_type,
    } = req.payload;
    check_name(&filename)?;
    let content_type = match content_type {
        Some(t) => check_type(&t)?,
        None => "application/octet-stream".to_owned(),
    };
    let max = uploads.config.max_file_size.0;
    if size > max {
        return Err(too_large(max));
    }
    let size = i64::try_from(size).map_err(|_| too_large(max))?;
    let now = now_ms();
    let slot_ms = i64::try_from(uploads.config.slot_lifetime.as_millis()).unwrap_or(i64::MAX);
    let upload = Upload {
        id: hex::encode(rand::random::<[u8; 16]>()),
        owner: owner.to_string(),
        domain: domain.clone(),
        filename,
        size,
        content_type,
        state: UploadState::Slot,
        created_ms: now,
        slot_expires_ms: now.saturating_add(slot_ms),
        stored_ms: None,
        sha256: None,
    };
    let quota = UploadQuota {
        per_owner: uploads.config.quota_per_user.bytes(),
        per_domain: uploads.config.quota_per_domain.bytes(),
    };
    match ctx.server.store.upload_reserve(&upload, quota, now).await {
        Ok(Ok(())) => {}
        Ok(Err(over)) => {
            let (whose, key, is_domain, used, limit) = match over {
                QuotaExceeded::Owner { used, limit } => {
                    ("your", upload.owner.as_str(), false, used, limit)
                }
                QuotaExceeded::Domain { used, limit } => {
                    ("your domain's", upload.domain.as_str(), true, used, limit)
                }
            };
            tracing::info!(%owner, used, limit, size, "upload refused: quota");
            let text =
                format!("{whose} uploads use {used} of {limit} bytes; this file needs {size} more");
            let keep = match uploads.config.expire_after {
                Retention::Forever => None,
                Retention::For(d) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            };
            let retry = ctx
                .server
                .store
                .upload_retry_at(key, is_domain, now, keep)
                .await
                .ok()
                .flatten()
                .and_then(chrono::DateTime::from_timestamp_millis);
            // XEP-0363 §5: <retry/> with the time to try again, when space frees up by
            // itself (a slot or a file expires); otherwise the quota is not temporary.
            return Err(match (limit >= size, retry) {
                (true, Some(at)) => {
                    StanzaFault::new(ErrorType::Wait, DefinedCondition::ResourceConstraint)
                        .with_app(
                            Element::builder("retry", ns::HTTP_UPLOAD)
                                .attr(
                                    minidom::rxml::xml_ncname!("stamp").to_owned(),
                                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                )
                                .build(),
                        )
                        .with_text(text)
                }
                _ => StanzaFault::new(ErrorType::Cancel, DefinedCondition::NotAllowed)
                    .with_text(text),
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "reserving an upload slot failed");
            return Err(StanzaFault::internal());
        }
    }
    let base = uploads.sites.base_url(&domain);
    let get = format!("{base}{}", path(&upload.id, &upload.filename));
    let put = format!(
        "{get}?expires={}&sig={}",
        upload.slot_expires_ms,
        sign(&uploads.key, &upload)
    );
    tracing::info!(%owner, id = %upload.id, size, content_type = %upload.content_type, "upload slot granted");
    Ok(Some(
        SlotResult {
            put: Put {
                url: put,
                headers: vec![],
            },
            get: Get { url: get },
        }
        .into(),
    ))
}

/// The URL path of an upload (also its GET path).
pub fn path(id: &str, filename: &str) -> String {
    format!("/upload/{id}/{}", utf8_percent_encode(filename, NAME_SAFE))
}

/// HMAC-SHA-256 over what the PUT must match, hex.
pub(super) fn sign(key: &[u8; 32], u: &Upload) -> String {
    hex::encode(mac(key, u).finalize().into_bytes())
}

/// Whether `sig` (hex) is the signature of `u`, compared in constant time.
pub(super) fn verify(key: &[u8; 32], u: &Upload, sig: &str) -> bool {
    hex::decode(sig).is_ok_and(|raw| mac(key, u).verify_slice(&raw).is_ok())
}

fn mac(key: &[u8; 32], u: &Upload) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [
        u.id.as_str(),
        u.filename.as_str(),
        &u.size.to_string(),
        u.content_type.as_str(),
        u.domain.as_str(),
        &u.slot_expires_ms.to_string(),
    ] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part.as_bytes());
    }
    m
}

fn too_large(max: u64) -> StanzaFault {
    StanzaFault::new(ErrorType::Modify, DefinedCondition::NotAcceptable)
        .with_app(
            Element::builder("file-too-large", ns::HTTP_UPLOAD)
                .append(
                    Element::builder("max-file-size", ns::HTTP_UPLOAD)
                        .append(max.to_string())
                        .build(),
                )
                .build(),
        )
        .with_text(format!("files may be at most {max} bytes"))
}

/// A file name is a name, never a path: no separators, no control characters, not `.`/`..`.
fn check_name(name: &str) -> Result<(), StanzaFault> {
    let bad = |why: &str| Err(StanzaFault::bad_request(format!("file name: {why}")));
    if name.is_empty() || name.trim().is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_MAX {
        return bad("longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return bad("not a file name");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return bad("contains a path separator or a control character");
    }
    Ok(())
}

/// `type/subtype` with optional parameters, printable ASCII only.
fn check_type(t: &str) -> Result<String, StanzaFault> {
    let t = t.trim();
    let essence = t.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let ok = t.len() <= TYPE_MAX
        && t.bytes().all(|b| (0x20..0x7f).contains(&b))
        && essence
            .split_once('/')
            .is_some_and(|(a, b)| token(a) && token(b));
    if ok {
        Ok(t.to_owned())
    } else {
        Err(StanzaFault::bad_request("content-type: not a media type"))
    }
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> Upload {
        Upload {
            id: "00112233445566778899aabbccddeeff".into(),
            owner: "a@example.org".into(),
            domain: "example.org".into(),
            filename: "report 2026.pdf".into(),
            size: 1234,
            content_type: "application/pdf".into(),
            state: UploadState::Slot,
            created_ms: 1,
            slot_expires_ms: 2,
            stored_ms: None,
            sha256: None,
        }
    }

    #[test]
    fn the_signature_covers_every_field_the_put_must_match() {
        let key = [7u8; 32];
        let u = upload();
        let sig = sign(&key, &u);
        assert!(verify(&key, &u, &sig));
        assert!(!verify(&[8u8; 32], &u, &sig));
        assert!(!verify(&key, &u, "zz"));
        for changed in [
            Upload {
                size: 1235,
                ..upload()
            },
            Upload {
                filename: "report 2027.pdf".into(),
                ..upload()
            },
            Upload {
                content_type: "text/html".into(),
                ..upload()
            },
            Upload {
                domain: "example.net".into(),
                ..upload()
            },
            Upload {
                slot_expires_ms: 3,
                ..upload()
            },
            Upload {
                id: "ff112233445566778899aabbccddeeff".into(),
                ..upload()
            },
        ] {
            assert!(!verify(&key, &changed, &sig), "{changed:?}");
        }
    }

    #[test]
    fn names_are_names_and_types_are_types() {
        for good in ["a.txt", "report 2026.pdf", "ünïcödé.png", ".hidden", "a..b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            " ",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            long.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_type(" text/plain; charset=utf-8 ").ok().as_deref(),
            Some("text/plain; charset=utf-8")
        );
        for bad in [
            "text",
            "/plain",
            "text/",
            "text/pl ain",
            "text/plain\r\nX: y",
            "a/b/c",
        ] {
            assert!(check_type(bad).is_err(), "{bad:?}");
        }
        assert_eq!(path("ab", "a b/ü.txt"), "/upload/ab/a%20b%2F%C3%BC.txt");
    }
}
