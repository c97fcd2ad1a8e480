//! The WKD routes on Postern's HTTPS listener (`postern-http`): GET and HEAD of
//! `/.well-known/openpgpkey/…`, answered from the key store. The host comes from the
//! request's resolved [`Origin`] (`<domain>` for the direct method, `openpgpkey.<domain>`
//! for the advanced one: [`WKD_LABEL`]).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use postern_http::Origin;
use sequoia_openpgp::serialize::SerializeInto;

use super::{Route, hash, route};
use crate::Gateway;

/// The sub-host of the advanced method, to be served (and named in certificates).
pub const WKD_LABEL: &str = "openpgpkey";

/// The WKD routes, for merging into the HTTPS listener's router.
pub fn router(gw: Gateway) -> Router {
    Router::new()
        .route("/.well-known/openpgpkey/{*rest}", get(answer))
        .with_state(gw)
}

async fn answer(
    State(gw): State<Gateway>,
    Extension(origin): Extension<Origin>,
    uri: Uri,
) -> Response {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let (status, body) = match route(&origin.host, target) {
        Route::Policy { domain } if gw.is_local_domain(&domain) => (StatusCode::OK, Vec::new()),
        Route::Key {
            domain,
            hash: wanted,
            local,
        } if gw.is_local_domain(&domain) => match keys(&gw, &domain, &wanted, local).await {
            Some(body) => (StatusCode::OK, body),
            None => (StatusCode::NOT_FOUND, Vec::new()),
        },
        _ => (StatusCode::NOT_FOUND, Vec::new()),
    };
    tracing::info!(host = %origin.host, target, status = status.as_u16(), "WKD request");
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// The binary keys published for the address hashing to `wanted`, or `None`.
async fn keys(gw: &Gateway, domain: &str, wanted: &str, local: Option<String>) -> Option<Vec<u8>> {
    let address = match local {
        Some(l) if hash(&l) == wanted => format!("{}@{domain}", l.to_lowercase()),
        Some(_) => return None,
        None => gw
            .keys
            .list(Some(true))
            .await
            .ok()?
            .into_iter()
            .flat_map(|k| k.addresses)
            .find(|a| {
                a.rsplit_once('@')
                    .is_some_and(|(l, d)| d.eq_ignore_ascii_case(domain) && hash(l) == wanted)
            })?,
    };
    let now = std::time::SystemTime::now();
    let mut body = Vec::new();
    for cert in gw.keys.local_public_certs(&address).await.ok()? {
        if !postern_pgp::can_encrypt(&cert, now) {
            continue;
        }
        let only = cert.retain_userids(|u| {
            u.userid()
                .email_normalized()
                .ok()
                .flatten()
                .is_some_and(|e| e == address)
        });
        body.extend(only.to_vec().ok()?);
    }
    (!body.is_empty()).then_some(body)
}
