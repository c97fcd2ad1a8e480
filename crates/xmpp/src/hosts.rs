//! The hosts this server answers for: the served domains and, on each, the sub-services that
//! modules register ([`crate::router::RouterBuilder::service`]: `conference.`, `upload.`,
//! `proxy.` as the group chat, upload and proxy modules arrive). [`Hosts::host`] tells which
//! one an address belongs to, [`crate::server::Server::classify`] routes by it, and
//! disco#items on a domain lists its services.

/// A sub-service on every served domain, at `label.domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The first DNS label of its host (`upload` for `upload.example.com`).
    pub label: &'static str,
    /// What disco#items calls it.
    pub name: &'static str,
}

/// Which of our hosts a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A served domain.
    Domain,
    /// A sub-service of a served domain.
    Service(&'a Service),
    /// None of ours.
    Foreign,
}

#[derive(Debug, Default)]
pub struct Hosts {
    /// Lowercase; the first is the default.
    domains: Vec<String>,
    services: Vec<Service>,
}

impl Hosts {
    pub fn new(domains: Vec<String>, services: Vec<Service>) -> Self {
        Self {
            domains: domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            services,
        }
    }

    /// The served domains, lowercase; the first is the default.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    pub fn is_domain(&self, name: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(name))
    }

    pub fn host(&self, name: &str) -> Host<'_> {
        if self.is_domain(name) {
            return Host::Domain;
        }
        let Some((label, parent)) = name.split_once('.') else {
            return Host::Foreign;
        };
        match self
            .services
            .iter()
            .find(|s| s.label.eq_ignore_ascii_case(label))
        {
            Some(service) if self.is_domain(parent) => Host::Service(service),
            _ => Host::Foreign,
        }
    }

    /// The services of `domain`, with their host names.
    pub fn services_of<'a>(
        &'a self,
        domain: &'a str,
    ) -> impl Iterator<Item = (String, &'a Service)> {
        let ours = self.is_domain(domain);
        self.services
            .iter()
            .filter(move |_| ours)
            .map(move |s| (format!("{}.{}", s.label, domain.to_ascii_lowercase()), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_their_services_and_nothing_else_are_ours() {
        let upload = Service {
            label: "upload",
            name: "HTTP File Upload",
        };
        let hosts = Hosts::new(
            vec!["Example.com".into(), "example.org".into()],
            vec![upload.clone()],
        );
        assert_eq!(hosts.host("example.com"), Host::Domain);
        assert_eq!(hosts.host("UPLOAD.example.org"), Host::Service(&upload));
        assert_eq!(hosts.host("upload.example.net"), Host::Foreign);
        assert_eq!(hosts.host("conference.example.com"), Host::Foreign);
        assert_eq!(hosts.host("upload"), Host::Foreign);
        let listed: Vec<String> = hosts.services_of("example.com").map(|(h, _)| h).collect();
        assert_eq!(listed, ["upload.example.com"]);
        assert_eq!(hosts.services_of("example.net").count(), 0);
    }
}
