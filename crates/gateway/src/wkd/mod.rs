//! Web Key Directory (draft-koch-openpgp-webkey-service): local users' public keys over
//! HTTPS, so any WKD client (`gpg --locate-keys`, Thunderbird, `sq network wkd`) finds them
//! by address alone.
//!
//! - [`route`] (here): the pure part: which request asks for which address, and the
//!   z-base-32 SHA-1 hash of the local part that names it.
//! - [`server`]: the routes (GET and HEAD) mounted on Postern's HTTPS listener
//!   (`postern-http`), answered from the key store.
//! - [`lookup`]: the client side: outside recipients' keys by WKD, cached, with timeouts.
//!
//! Both methods are served on the one HTTPS listener: **direct** (`https://<domain>/.well-known/
//! openpgpkey/hu/<hash>`, domain from the Host header) and **advanced**
//! (`https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>`). The `?l=`
//! parameter (the local part, as clients send it) is used when present and must hash to
//! the requested name; without it the address is found by hashing the served users'
//! addresses. Only served domains and only keys whose secret is held here are published,
//! each with just the user ID for the requested address.

pub mod lookup;
pub mod server;

use sha1::{Digest, Sha1};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The key(s) of the address with this hash in this domain; `local` from `?l=`.
    Key {
        /// Lowercased domain.
        domain: String,
        /// The z-base-32 hash from the path.
        hash: String,
        /// The local part from `?l=`, if given.
        local: Option<String>,
    },
    /// The policy file (its presence tells clients the domain does WKD).
    Policy {
        /// Lowercased domain.
        domain: String,
    },
    /// Anything else: 404.
    NotFound,
}

/// The WKD name of a local part: z-base-32 of SHA-1 of the lowercased (ASCII) local part.
pub fn hash(local_part: &str) -> String {
    zbase32(&Sha1::digest(local_part.to_ascii_lowercase().as_bytes()))
}

/// Routes `path` (with query) as requested from `host` (port ignored).
pub fn route(host: &str, path: &str) -> Route {
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let Some(rest) = path.strip_prefix("/.well-known/openpgpkey/") else {
        return Route::NotFound;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let (domain, tail) = match segments.as_slice() {
        // Advanced: the domain is in the path and the host is openpgpkey.<domain>.
        [d, tail @ ..] if host.strip_prefix("openpgpkey.") == Some(&d.to_ascii_lowercase()) => {
            (d.to_ascii_lowercase(), tail)
        }
        tail => (host, tail),
    };
    match tail {
        ["policy"] => Route::Policy { domain },
        ["hu", h] if h.len() == 32 && h.bytes().all(|b| ZB32.contains(&b)) => Route::Key {
            domain,
            hash: (*h).to_owned(),
            local: query
                .split('&')
                .find_map(|kv| kv.strip_prefix("l="))
                .map(percent_decode)
                .filter(|l| !l.is_empty()),
        },
        _ => Route::NotFound,
    }
}

const ZB32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

fn zbase32(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ZB32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ZB32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// `%XX` decoding of a query value (invalid escapes kept as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draft_example_hash() {
        // draft-koch-openpgp-webkey-service §3.1: "Joe.Doe@Example.ORG".
        assert_eq!(hash("Joe.Doe"), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
    }

    #[test]
    fn direct_and_advanced_routes() {
        let h = "iy9q119eutrkn8s1mk4r39qejnbu3n5q";
        assert_eq!(
            route(
                "Example.org:5443",
                &format!("/.well-known/openpgpkey/hu/{h}?l=Joe.Doe")
            ),
            Route::Key {
                domain: "example.org".into(),
                hash: h.into(),
                local: Some("Joe.Doe".into())
            }
        );
        assert_eq!(
            route(
                "openpgpkey.example.org",
                &format!("/.well-known/openpgpkey/example.org/hu/{h}")
            ),
            Route::Key {
                domain: "example.org".into(),
                hash: h.into(),
                local: None
            }
        );
        assert_eq!(
            route(
                "openpgpkey.example.org",
                "/.well-known/openpgpkey/example.org/policy"
            ),
            Route::Policy {
                domain: "example.org".into()
            }
        );
        assert_eq!(
            route("example.org", "/.well-known/openpgpkey/policy"),
            Route::Policy {
                domain: "example.org".into()
            }
        );
        assert_eq!(
            route("example.org", "/.well-known/openpgpkey/hu/short"),
            Route::NotFound
        );
        assert_eq!(route("example.org", "/index.html"), Route::NotFound);
        assert_eq!(percent_decode("a%2Eb%zz"), "a.b%zz");
    }
}
