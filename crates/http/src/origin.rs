//! Which of our hosts a request is for, and who sent it.
//!
//! Every request is resolved to an [`Origin`] before any service sees it: the host it named
//! (HTTP/2 `:authority`, else `Host`; from a trusted proxy, `X-Forwarded-Host`), the served
//! domain that host belongs to (the domain itself, `<label>.<domain>` for a label a service
//! registered such as `openpgpkey`, or the host of `public_url`), the client's address (from a
//! trusted proxy: the last untrusted entry of `X-Forwarded-For`) and whether the client's
//! side was HTTPS. A host that is none of ours gets `421 Misdirected Request`.

use std::net::IpAddr;

use axum::http::{HeaderMap, Uri};

/// A request's resolved origin, inserted into its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The host the client named, lowercase, without port.
    pub host: String,
    /// The served domain the host belongs to; `None` for a `public_url` host shared by every
    /// domain.
    pub domain: Option<String>,
    /// The sub-host label (`openpgpkey` for `openpgpkey.example.org`), if any.
    pub label: Option<String>,
    /// The client's address.
    pub client: IpAddr,
    /// The client's side of the connection was HTTPS.
    pub secure: bool,
}

/// `public_url` parsed: a template with an optional `{domain}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// Without a trailing slash.
    template: String,
}

const DOMAIN: &str = "{domain}";

impl PublicUrl {
    pub fn parse(text: &str) -> Result<PublicUrl, String> {
        let template = text.trim().trim_end_matches('/').to_owned();
        let probe: Uri = template
            .replace(DOMAIN, "example.org")
            .parse()
            .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        match probe.scheme_str() {
            Some("https" | "http") => {}
            _ => return Err(format!("`{text}` must start with https:// (or http://)")),
        }
        if probe.host().is_none_or(str::is_empty) {
            return Err(format!("`{text}` has no host"));
        }
        if probe.query().is_some() || template.contains('#') {
            return Err(format!("`{text}` must not have a query or fragment"));
        }
        if template.matches(DOMAIN).count() > 1 {
            return Err(format!("`{text}` names {DOMAIN} more than once"));
        }
        let after_scheme = template.split_once("://").map_or("", |(_, rest)| rest);
        let host_part = after_scheme.split('/').next().unwrap_or_default();
        if template.contains(DOMAIN) && !host_part.contains(DOMAIN) {
            return Err(format!(
                "`{text}`: {DOMAIN} may only stand in the host (requests are routed by host)"
            ));
        }
        Ok(PublicUrl { template })
    }

    /// The base URL for `domain`, without a trailing slash.
    pub fn for_domain(&self, domain: &str) -> String {
        self.template.replace(DOMAIN, domain)
    }

    /// The path part (`/postern`), empty at the root.
    fn path(&self) -> String {
        self.for_domain("example.org")
            .parse::<Uri>()
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    fn host_for(&self, domain: &str) -> Option<String> {
        let uri: Uri = self.for_domain(domain).parse().ok()?;
        uri.host().map(str::to_ascii_lowercase)
    }

    fn per_domain(&self) -> bool {
        self.template.contains(DOMAIN)
    }
}

/// The hosts served and how to name them in URLs.
#[derive(Debug, Clone)]
pub struct Sites {
    /// Served domains, lowercase; the first is the default.
    domains: Vec<String>,
    /// Sub-host labels the services registered (`openpgpkey`).
    labels: Vec<String>,
    public: Option<PublicUrl>,
    /// The hosts of `public_url`, worked out once: (served domain, host); the domain is
    /// `None` when one host serves every domain.
    public_hosts: Vec<(Option<String>, String)>,
    /// The path prefix of `public_url` (stripped before routing), empty at the root.
    prefix: String,
    /// Port of the first HTTPS listener (for URLs when there is no `public_url`).
    port: Option<u16>,
    trusted: Vec<IpAddr>,
}

impl Sites {
    pub fn new(
        domains: Vec<String>,
        labels: Vec<String>,
        public: Option<PublicUrl>,
        port: Option<u16>,
        trusted: Vec<IpAddr>,
    ) -> Self {
        let domains: Vec<String> = domains
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let public_hosts = match &public {
            Some(p) if p.per_domain() => domains
                .iter()
                .filter_map(|d| Some((Some(d.clone()), p.host_for(d)?)))
                .collect(),
            Some(p) => p.host_for("").map(|h| (None, h)).into_iter().collect(),
            None => Vec::new(),
        };
        let prefix = public.as_ref().map(PublicUrl::path).unwrap_or_default();
        Self {
            domains,
            labels: labels.into_iter().map(|l| l.to_ascii_lowercase()).collect(),
            public,
            public_hosts,
            prefix,
            port,
            trusted,
        }
    }

    /// The URL under which clients reach `domain`'s services, without a trailing slash.
    pub fn base_url(&self, domain: &str) -> String {
        match (&self.public, self.port) {
            (Some(p), _) => p.for_domain(domain),
            (None, Some(443) | None) => format!("https://{domain}"),
            (None, Some(port)) => format!("https://{domain}:{port}"),
        }
    }

    /// The path prefix of `public_url` that a proxy passes on (stripped before routing).
    pub fn path_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `peer`'s forwarded headers are believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.contains(&peer)
    }

    /// The origin of a request from `peer` (`secure`: it came over TLS); `None` when it names
    /// a host that is not ours.
    pub fn origin(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        peer: IpAddr,
        secure: bool,
    ) -> Option<Origin> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let trusted = self.trusts(peer);
        let forwarded_host = trusted
            .then(|| header("x-forwarded-host"))
            .flatten()
            // The value the nearest (trusted) proxy added: proxies that append leave the
            // client's own first.
            .and_then(|h| h.rsplit(',').next())
            .map(str::trim);
        let named = forwarded_host
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .or_else(|| header("host"))?;
        let host = strip_port(named).to_ascii_lowercase();
        let secure = match trusted.then(|| header("x-forwarded-proto")).flatten() {
            Some(proto) => proto
                .rsplit(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")),
            None => secure,
        };
        let client = match trusted.then(|| header("x-forwarded-for")).flatten() {
            Some(list) => list
                .split(',')
                .rev()
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .find(|a| !self.trusts(*a))
                .unwrap_or(peer),
            None => peer,
        };
        let (domain, label) = self.which(&host)?;
        Some(Origin {
            host,
            domain,
            label,
            client,
            secure,
        })
    }

    /// (served domain, label) of `host`; the outer `None` when it is not ours.
    #[allow(clippy::type_complexity)]
    fn which(&self, host: &str) -> Option<(Option<String>, Option<String>)> {
        if let Some(d) = self.domains.iter().find(|d| *d == host) {
            return Some((Some(d.clone()), None));
        }
        if let Some((label, parent)) = host.split_once('.')
            && self.labels.iter().any(|l| l == label)
            && let Some(d) = self.domains.iter().find(|d| *d == parent)
        {
            return Some((Some(d.clone()), Some(label.to_owned())));
        }
        self.public_hosts
            .iter()
            .find(|(_, h)| h == host)
            .map(|(d, _)| (d.clone(), None))
    }
}

/// `host:port` → `host`; `[v6]:port` → `v6`.
fn strip_port(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, v.parse().expect("header value"));
        }
        h
    }

    fn sites(public: Option<&str>) -> Sites {
        Sites::new(
            vec!["Example.org".into(), "example.net".into()],
            vec!["openpgpkey".into()],
            public.map(|p| PublicUrl::parse(p).expect("url")),
            Some(5443),
            vec!["127.0.0.1".parse().expect("ip")],
        )
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn served_domains_and_their_labels_are_ours_and_nothing_else() {
        let s = sites(None);
        let uri: Uri = "/x".parse().expect("uri");
        let o = s
            .origin(&uri, &headers(&[("host", "EXAMPLE.org:5443")]), PEER, true)
            .expect("ours");
        assert_eq!(o.domain.as_deref(), Some("example.org"));
        assert_eq!(
            (o.host.as_str(), o.label, o.secure),
            ("example.org", None, true)
        );
        let o = s
            .origin(
                &uri,
                &headers(&[("host", "openpgpkey.example.net")]),
                PEER,
                true,
            )
            .expect("ours");
        assert_eq!(o.label.as_deref(), Some("openpgpkey"));
        assert_eq!(o.domain.as_deref(), Some("example.net"));
        for foreign in [
            "upload.example.org",
            "example.com",
            "127.0.0.1:5443",
            "[::1]:5443",
        ] {
            assert!(
                s.origin(&uri, &headers(&[("host", foreign)]), PEER, true)
                    .is_none(),
                "{foreign}"
            );
        }
        assert!(s.origin(&uri, &HeaderMap::new(), PEER, true).is_none());
        let h2: Uri = "https://example.net/x".parse().expect("uri");
        assert!(s.origin(&h2, &HeaderMap::new(), PEER, true).is_some());
        assert_eq!(s.base_url("example.org"), "https://example.org:5443");
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let s = sites(Some("https://chat.example.com/postern/"));
        let uri: Uri = "/x".parse().expect("uri");
        let fwd = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "evil.example, chat.example.com"),
            ("x-forwarded-proto", "http, https"),
            ("x-forwarded-for", "203.0.113.9, 198.51.100.1, 127.0.0.1"),
        ]);
        let o = s.origin(&uri, &fwd, PROXY, false).expect("proxied");
        assert_eq!(o.host, "chat.example.com");
        assert_eq!(o.domain, None);
        assert!(o.secure);
        assert_eq!(o.client, "198.51.100.1".parse::<IpAddr>().expect("ip"));
        // The same headers from anyone else are ignored: the Host is an IP, not ours.
        assert!(s.origin(&uri, &fwd, PEER, false).is_none());
        assert_eq!(
            s.base_url("example.org"),
            "https://chat.example.com/postern"
        );
        assert_eq!(s.path_prefix(), "/postern");
    }

    #[test]
    fn a_public_url_per_domain_names_its_domain() {
        let s = sites(Some("https://files.{domain}"));
        let uri: Uri = "/".parse().expect("uri");
        let o = s
            .origin(&uri, &headers(&[("host", "files.example.net")]), PEER, true)
            .expect("ours");
        assert_eq!(o.domain.as_deref(), Some("example.net"));
        assert_eq!(s.base_url("example.org"), "https://files.example.org");
        assert_eq!(s.path_prefix(), "");
        for bad in [
            "ftp://x",
            "https://",
            "https://a/?q=1",
            "not a url",
            "https://chat.example.com/{domain}",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
