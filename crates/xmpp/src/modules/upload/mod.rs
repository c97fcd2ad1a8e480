//! XEP-0363: HTTP File Upload at `upload.<domain>`, served on Postern's HTTPS listener.
//!
//! - [`slot`]: the slot request (`<request xmlns='urn:xmpp:http:upload:0'/>`): checks the
//!   name, size and type, reserves the slot against the quotas in the store, and answers with
//!   a PUT URL signed with HMAC-SHA-256 over id, name, size, type, domain and expiry, and
//!   the GET URL.
//! - [`http`]: the PUT (single use, streamed to disk, checked against the slot, synced
//!   before `201`) and the GET/HEAD (ranges, ETag, `nosniff`, attachment for anything a
//!   browser would run).
//! - [`expiry`]: deletes files after `expire_after` and slots never used, in batches.
//!
//! The URLs are on the domain itself (`https://<domain>:5443/upload/<id>/<name>`, or under
//! `[http] public_url`), so they are covered by the certificate clients already trust for
//! the domain's XMPP service. Files live in `dir` (default `<data_dir>/uploads`) as
//! `<id[..2]>/<id>`, never under a name a client chose.

pub mod expiry;
pub mod http;
pub mod slot;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postern_core::ByteSize;
use serde::Deserialize;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::disco::Identity;
use xmpp_parsers::ns;

use crate::config::ByteLimit;
use crate::modules::archive::retention::Retention;
use crate::router::{IqKind, RouterBuilder, Scope};

/// The service's label: `upload.<domain>`.
pub const LABEL: &str = "upload";

/// The `[xmpp.upload]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Offer the service (it also needs the HTTPS listener of `[http]`).
    pub enabled: bool,
    /// Largest file; advertised in disco as `max-file-size`.
    pub max_file_size: ByteSize,
    /// Bytes one account may hold (stored files and open slots); "unlimited" for none.
    pub quota_per_user: ByteLimit,
    /// Bytes one domain's accounts may hold together; "unlimited" for none.
    pub quota_per_domain: ByteLimit,
    /// How long a PUT URL may be used after the slot was granted.
    #[serde(deserialize_with = "crate::config::duration")]
    pub slot_lifetime: Duration,
    /// How long files are kept after upload: a duration ("30d") or "forever".
    pub expire_after: Retention,
    /// How often expired files and unused slots are deleted.
    #[serde(deserialize_with = "crate::config::duration")]
    pub expire_every: Duration,
    /// Where files are kept; default `<data_dir>/uploads`.
    pub dir: Option<PathBuf>,
    /// Filled in at start from `[http]` and `data_dir` (not a config key).
    #[serde(skip)]
    pub site: Option<Site>,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_file_size: ByteSize(100 * 1024 * 1024),
            quota_per_user: ByteLimit(Some(ByteSize(10 * 1024 * 1024 * 1024))),
            quota_per_domain: ByteLimit(None),
            slot_lifetime: Duration::from_secs(300),
            expire_after: Retention::For(Duration::from_secs(30 * 24 * 3600)),
            expire_every: Duration::from_secs(600),
            dir: None,
            site: None,
        }
    }
}

impl UploadConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_file_size.0 == 0 {
            out.push("xmpp.upload.max_file_size: must be more than zero".into());
        }
        if self.expire_every.is_zero() {
            out.push("xmpp.upload.expire_every: must be more than zero".into());
        }
        if self.slot_lifetime < Duration::from_secs(10) {
            out.push("xmpp.upload.slot_lifetime: at least 10s (clients need time to PUT)".into());
        }
        out
    }
}

/// What the service needs from outside the XMPP config: where files go and the URLs.
#[derive(Clone)]
pub struct Site {
    pub dir: PathBuf,
    pub sites: Arc<postern_http::Sites>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site").field("dir", &self.dir).finish()
    }
}

/// The service's shared state.
pub struct Uploads {
    pub config: UploadConfig,
    pub dir: PathBuf,
    pub sites: Arc<postern_http::Sites>,
    /// Signs PUT URLs; new at every start (slots live minutes; one granted before a restart
    /// is refused, and the client asks again).
    key: [u8; 32],
}

/// Where the stored file of upload `id` is under the upload directory `dir`.
pub fn stored_path(dir: &std::path::Path, id: &str) -> PathBuf {
    dir.join(id.get(..2).unwrap_or("__")).join(id)
}

impl Uploads {
    /// Where a stored file is.
    pub fn path(&self, id: &str) -> PathBuf {
        stored_path(&self.dir, id)
    }

    /// Where a PUT writes before the file is complete.
    pub fn part_path(&self, id: &str) -> PathBuf {
        self.dir.join("tmp").join(format!("{id}.part"))
    }
}

/// Registers the service when it is enabled and the HTTPS listener is there to carry it.
pub fn register(r: &mut RouterBuilder, config: &UploadConfig) {
    let Some(site) = config.site.clone().filter(|_| config.enabled) else {
        return;
    };
    let uploads = Arc::new(Uploads {
        config: config.clone(),
        dir: site.dir,
        sites: site.sites,
        key: rand::random(),
    });
    r.service(LABEL, "HTTP File Upload");
    let scope = Scope::Service(LABEL);
    r.disco_feature(scope, ns::HTTP_UPLOAD);
    r.iq(scope, IqKind::Get, ns::HTTP_UPLOAD, "request", {
        let uploads = uploads.clone();
        move |ctx, req| slot::request(uploads.clone(), ctx, req)
    });
    let form = DataForm::new(
        DataFormType::Result_,
        ns::HTTP_UPLOAD,
        vec![Field::text_single(
            "max-file-size",
            &config.max_file_size.0.to_string(),
        )],
    );
    crate::modules::disco::service(
        r,
        LABEL,
        Identity::new("store", "file", "en", "HTTP File Upload"),
        vec![form],
    );
    r.task({
        let uploads = uploads.clone();
        move |server, shutdown| Box::pin(expiry::run(uploads.clone(), server, shutdown))
    });
    r.http(move |server| http::router(uploads.clone(), server));
}
