//! The config file: typed, validated at start with every problem reported at once.
//! `config/postern.toml` documents every key; no file means the embedded default.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use postern_accounts::AccountsConfig;
use postern_gateway::GatewayConfig;
use postern_http::HttpConfig;
use postern_xmpp::XmppConfig;
use serde::Deserialize;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Database, generated certificates, uploads.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: SQLite in `data_dir`.
    #[serde(default)]
    pub database: Option<String>,
    /// Log filter (`info`, `debug`, `postern_xmpp=debug,info`); `RUST_LOG` overrides it.
    #[serde(default = "default_log")]
    pub log: String,
    /// Served mail domains; the first is the default.
    #[serde(rename = "domain")]
    pub domains: Vec<Domain>,
    /// Where each domain's passwords are checked (`postern_accounts::config`).
    #[serde(default)]
    pub accounts: AccountsConfig,
    #[serde(default)]
    pub xmpp: XmppConfig,
    /// The OpenPGP mail gateway (SMTP content filter).
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// The HTTPS listener (uploads, WKD).
    #[serde(default)]
    pub http: HttpConfig,
}

/// One served mail domain (`[[domain]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    pub name: String,
    /// PEM certificate chain; with `key`. Omitted: a self-signed one is generated.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_log() -> String {
    "info".into()
}

impl Default for Config {
    /// The embedded default: `localhost`, `./data`, loopback listeners.
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            database: None,
            log: default_log(),
            domains: vec![Domain {
                name: "localhost".into(),
                cert: None,
                key: None,
            }],
            accounts: AccountsConfig::default(),
            xmpp: XmppConfig::default(),
            gateway: GatewayConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path} has {} problem(s):\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads and validates a config file, or returns the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.into(),
            message: e.to_string(),
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.into(),
                problems,
            })
        }
    }

    /// Every semantic problem, so the admin fixes them in one go.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.domains.is_empty() {
            out.push("at least one [[domain]] is required".into());
        }
        for domain in self.xmpp.archive.retention_by_domain.keys() {
            if !self.serves(domain) {
                out.push(format!(
                    "xmpp.archive.retention_by_domain: `{domain}` is not a served domain"
                ));
            }
        }
        let mut seen = HashSet::new();
        for d in &self.domains {
            let name = d.name.to_ascii_lowercase();
            if !valid_domain(&name) {
                out.push(format!("domain `{}`: not a valid domain name", d.name));
            }
            if !seen.insert(name) {
                out.push(format!("domain `{}`: listed twice", d.name));
            }
            match (&d.cert, &d.key) {
                (Some(_), None) | (None, Some(_)) => {
                    out.push(format!("domain `{}`: `cert` and `key` go together", d.name));
                }
                (Some(c), Some(k)) => {
                    for f in [c, k] {
                        if !f.is_file() {
                            out.push(format!(
                                "domain `{}`: file {} does not exist",
                                d.name,
                                f.display()
                            ));
                        }
                    }
                }
                (None, None) => {}
            }
        }
        if let Some(url) = &self.database
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            out.push(format!(
                "database `{url}`: must start with sqlite:, postgres:// or postgresql://"
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log).is_err() {
            out.push(format!("log `{}`: not a valid filter", self.log));
        }
        let served: Vec<String> = self
            .domains
            .iter()
            .map(|d| d.name.to_ascii_lowercase())
            .collect();
        out.extend(self.accounts.problems(&served));
        out.extend(self.xmpp.problems());
        out.extend(self.gateway.problems());
        out.extend(self.http.problems());
        out
    }

    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("postern.db").display()))
    }

    pub fn domain_names(&self) -> Vec<String> {
        self.domains
            .iter()
            .map(|d| d.name.to_ascii_lowercase())
            .collect()
    }

    pub fn serves(&self, domain: &str) -> bool {
        self.domains
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(domain))
    }
}

fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_loopback_only() {
        let c = Config::default();
        assert!(c.problems().is_empty());
        assert!(
            c.xmpp
                .starttls
                .iter()
                .chain(&c.xmpp.direct_tls)
                .chain(&c.http.listen)
                .all(|a| a.ip().is_loopback())
        );
        assert!(c.database_url().starts_with("sqlite://"));
        assert!(c.gateway.enabled);
        assert!(c.gateway.listen.ip().is_loopback() && c.gateway.next_hop.ip().is_loopback());
    }

    #[test]
    fn all_problems_are_reported_together() {
        let text = r#"
            database = "mysql://x"
            [[domain]]
            name = "bad_domain"
            cert = "/nonexistent.pem"
            [[domain]]
            name = "bad_domain"
            [xmpp.limits]
            max_connections = 0
        "#;
        let c: Config = toml::from_str(text).expect("parses");
        let p = c.problems();
        assert_eq!(p.len(), 6, "{p:#?}");
    }

    #[test]
    fn the_documented_example_is_the_embedded_default() {
        let documented: Config =
            toml::from_str(include_str!("../../../config/postern.toml")).expect("example parses");
        let default = Config::default();
        assert_eq!(
            format!("{:?}", documented.xmpp),
            format!("{:?}", default.xmpp)
        );
        assert_eq!(
            format!("{:?}", documented.gateway),
            format!("{:?}", default.gateway)
        );
        assert_eq!(
            format!("{:?}", documented.accounts),
            format!("{:?}", default.accounts)
        );
        assert_eq!(
            format!("{:?}", documented.http),
            format!("{:?}", default.http)
        );
        assert_eq!(documented.data_dir, default.data_dir);
        assert_eq!(documented.log, default.log);
        assert_eq!(documented.domain_names(), default.domain_names());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("[[domain]]\nname = \"a.b\"\nsurprise = 1\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("surprise"), "{err}");
    }
}
