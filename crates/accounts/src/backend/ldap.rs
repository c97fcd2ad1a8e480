//! The `ldap` account backend: a PLAIN password is checked by binding to the directory as
//! the user (OpenLDAP, Active Directory, 389 DS, …), over `ldaps://` or `ldap://` with
//! StartTLS (required), the server's certificate verified.
//!
//! The user's DN comes from a search with a service account (`user_filter`, the usual
//! way: `(mail={address})`, AD's `(userPrincipalName={address})`), or from a template
//! (`dn_template`, no service account needed). Values put into a filter are escaped per
//! RFC 4515 and into a DN per RFC 4514, so `*)(uid=*` in a user name is a literal.
//! An empty password is refused here: a simple bind without one is an anonymous bind
//! (RFC 4513 §5.1.2), which many servers answer with success.
//!
//! Bind result 49 (invalidCredentials: wrong password, and AD's disabled or expired
//! accounts) and a search that finds nobody are refusals; anything else (no answer, TLS,
//! a filter that matches several entries, the service account refused) is
//! [`Unavailable`]. `list_filter` lists the addresses (`address_attribute`) of a domain's
//! accounts, paged, so they exist before their first login; `group_filter` lists groups
//! (`group_name_attribute`) whose members (`group_member_attribute`, DNs) among those
//! accounts become the members of Postern's group of that name.

use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};

use super::Unavailable;
use crate::config::LdapConfig;

/// Accounts read from one listing at most.
const LIST_MAX: usize = 1_000_000;
/// Entries per page of a listing (Active Directory's limit is 1000).
const PAGE: i32 = 500;
/// LDAP's invalidCredentials result code.
const INVALID_CREDENTIALS: u32 = 49;

/// The directory and how accounts are found in it.
pub struct LdapBackend {
    url: String,
    starttls: bool,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    bind_dn: Option<String>,
    bind_password: String,
    base_dn: String,
    user_filter: Option<String>,
    dn_template: Option<String>,
    list_filter: Option<String>,
    address_attribute: String,
    group_filter: Option<String>,
    group_base_dn: Option<String>,
    group_name_attribute: String,
    group_member_attribute: String,
    sync_interval: Duration,
}

/// A directory group: its name and the addresses of its members in one domain.
pub(crate) type Group = (String, Vec<String>);

impl std::fmt::Debug for LdapBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for LdapBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LDAP {}", self.url)
    }
}

/// Whether `url` is one this backend connects to; `Ok(true)` for StartTLS.
pub(crate) fn check_url(url: &str) -> Result<bool, String> {
    if url.starts_with("ldaps://") {
        Ok(false)
    } else if url.starts_with("ldap://") {
        Ok(true)
    } else {
        Err(format!(
            "`{url}` is not ldaps://host[:port] or ldap://host[:port] (StartTLS)"
        ))
    }
}

/// `template` with `{address}`, `{localpart}` and `{domain}` replaced by the values of
/// `address`, each escaped by `escape`, in one pass: a value holding `{domain}` stays that
/// text.
pub(crate) fn fill(template: &str, address: &str, escape: fn(&str) -> String) -> String {
    let (localpart, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let mut out = String::with_capacity(template.len() + address.len());
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (value, len) = if tail.starts_with("{address}") {
            (Some(address), "{address}".len())
        } else if tail.starts_with("{localpart}") {
            (Some(localpart), "{localpart}".len())
        } else if tail.starts_with("{domain}") {
            (Some(domain), "{domain}".len())
        } else {
            (None, 1)
        };
        match value {
            Some(v) => out.push_str(&escape(v)),
            None => out.push('{'),
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

fn filter_value(s: &str) -> String {
    ldap_escape(s).into_owned()
}

fn dn_value(s: &str) -> String {
    dn_escape(s).into_owned()
}

impl LdapBackend {
    pub fn new(cfg: &LdapConfig) -> Result<LdapBackend, String> {
        let starttls = check_url(&cfg.url)?;
        let bind_password = match (&cfg.bind_password, &cfg.bind_password_file) {
            (Some(p), None) => p.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| format!("[accounts.ldap] bind_password_file {}: {e}", file.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, None) => String::new(),
            (Some(_), Some(_)) => {
                return Err("[accounts.ldap] bind_password and bind_password_file both set".into());
            }
        };
        Ok(LdapBackend {
            url: cfg.url.trim_end_matches('/').to_owned(),
            starttls,
            tls: postern_core::tls::client_config(cfg.ca_file.as_deref())?,
            timeout: cfg.timeout,
            bind_dn: cfg.bind_dn.clone(),
            bind_password,
            base_dn: cfg.base_dn.clone(),
            user_filter: cfg.user_filter.clone(),
            dn_template: cfg.dn_template.clone(),
            list_filter: cfg.list_filter.clone(),
            address_attribute: cfg.address_attribute.clone(),
            group_filter: cfg.group_filter.clone(),
            group_base_dn: cfg.group_base_dn.clone(),
            group_name_attribute: cfg.group_name_attribute.clone(),
            group_member_attribute: cfg.group_member_attribute.clone(),
            sync_interval: cfg.sync_interval,
        })
    }

    fn unavailable(&self, reason: impl Into<String>) -> Unavailable {
        Unavailable::new(self, reason)
    }

    pub(crate) fn sync_interval(&self) -> Option<Duration> {
        self.list_filter.as_ref().map(|_| self.sync_interval)
    }

    /// A new connection (TLS, or StartTLS), not yet bound.
    async fn connect(&self) -> Result<Ldap, Unavailable> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls)
            .set_config(self.tls.clone());
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| self.unavailable(format!("connect: {e}")))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.timeout);
        Ok(ldap)
    }

    /// A connection bound as the service account (anonymous without `bind_dn`).
    async fn service(&self) -> Result<Ldap, Unavailable> {
        let mut ldap = self.connect().await?;
        if let Some(dn) = &self.bind_dn {
            ldap.simple_bind(dn, &self.bind_password)
                .await
                .and_then(ldap3::LdapResult::success)
                .map_err(|e| self.unavailable(format!("service account bind: {e}")))?;
        }
        Ok(ldap)
    }

    /// Whether the directory takes `password` for `address`.
    pub(crate) async fn check(&self, address: &str, password: &str) -> Result<bool, Unavailable> {
        if password.is_empty() {
            return Ok(false);
        }
        let dn = match &self.dn_template {
            Some(template) => fill(template, address, dn_value),
            None => match self.find(address).await? {
                Some(dn) => dn,
                // Nobody: still a connection and a bind (to a DN no entry has), so that an
                // unknown address takes about as long as a wrong password.
                None => {
                    let mut ldap = self.connect().await?;
                    let _ = ldap
                        .simple_bind(&format!("cn=postern-nobody,{}", self.base_dn), password)
                        .await;
                    let _ = ldap.unbind().await;
                    return Ok(false);
                }
            },
        };
        let mut ldap = self.connect().await?;
        let bound = ldap
            .simple_bind(&dn, password)
            .await
            .map_err(|e| self.unavailable(format!("bind: {e}")))?;
        let _ = ldap.unbind().await;
        match bound.rc {
            0 => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            _ => Err(self.unavailable(format!("bind: {bound}"))),
        }
    }

    /// The DN of the one entry `user_filter` finds for `address`.
    async fn find(&self, address: &str) -> Result<Option<String>, Unavailable> {
        let template = self.user_filter.as_deref().unwrap_or("(mail={address})");
        let filter = fill(template, address, filter_value);
        let mut ldap = self.service().await?;
        let found = ldap
            .search(&self.base_dn, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(|e| self.unavailable(format!("search {filter}: {e}")));
        let _ = ldap.unbind().await;
        let (entries, _) = found?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries
                .into_iter()
                .next()
                .map(|e| SearchEntry::construct(e).dn)),
            n => {
                Err(self.unavailable(format!("user_filter {filter} matches {n} entries, not one")))
            }
        }
    }

    /// The addresses `list_filter` finds for `domain`, when there is one.
    pub(crate) fn list<'a>(
        &'a self,
        domain: &'a str,
    ) -> Option<impl std::future::Future<Output = Result<Vec<String>, Unavailable>> + Send + 'a>
    {
        self.list_filter.as_ref()?;
        Some(async move {
            let people = self.people(domain).await?;
            Ok(people.into_iter().flat_map(|(_, a)| a).collect())
        })
    }

    /// The (DN, addresses) of every entry `list_filter` finds for `domain`.
    async fn people(&self, domain: &str) -> Result<Vec<(String, Vec<String>)>, Unavailable> {
        let template = self.list_filter.as_deref().unwrap_or("(mail=*@{domain})");
        let filter = fill(template, &format!("@{domain}"), filter_value);
        let attr = self.address_attribute.clone();
        self.search(&self.base_dn, &filter, vec![attr.clone()])
            .await
            .map(|entries| {
                entries
                    .into_iter()
                    .map(|e| (e.dn.to_ascii_lowercase(), values(&e, &attr)))
                    .collect()
            })
    }

    /// The groups `group_filter` finds, with their members among `domain`'s accounts, when
    /// there is a `group_filter`.
    pub(crate) fn groups<'a>(
        &'a self,
        domain: &'a str,
    ) -> Option<impl std::future::Future<Output = Result<Vec<Group>, Unavailable>> + Send + 'a>
    {
        let filter = self.group_filter.as_ref()?;
        Some(async move {
            let by_dn: std::collections::HashMap<String, Vec<String>> =
                self.people(domain).await?.into_iter().collect();
            let (name_attr, member_attr) =
                (&self.group_name_attribute, &self.group_member_attribute);
            let base = self.group_base_dn.as_deref().unwrap_or(&self.base_dn);
            let entries = self
                .search(base, filter, vec![name_attr.clone(), member_attr.clone()])
                .await?;
            let mut groups = Vec::new();
            for entry in entries {
                let Some(name) = values(&entry, name_attr).into_iter().next() else {
                    continue;
                };
                // Active Directory hands out the members of a large group in ranges
                // (`member;range=0-1499`): half a list would remove the rest.
                let ranged = format!("{member_attr};range=");
                if entry.attrs.keys().any(|k| {
                    k.to_ascii_lowercase()
                        .starts_with(&ranged.to_ascii_lowercase())
                }) {
                    return Err(self.unavailable(format!(
                        "group {name}: the directory sends its members in ranges (over 1500 in \
                         Active Directory), which Postern does not read yet: groups not synced"
                    )));
                }
                let mut members: Vec<String> = values(&entry, member_attr)
                    .iter()
                    .filter_map(|dn| by_dn.get(&dn.to_ascii_lowercase()))
                    .flatten()
                    .map(|a| a.to_lowercase())
                    .filter(|a| a.rsplit_once('@').is_some_and(|(_, d)| d == domain))
                    .collect();
                members.sort();
                members.dedup();
                groups.push((name, members));
            }
            Ok(groups)
        })
    }

    /// A paged subtree search as the service account.
    async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
    ) -> Result<Vec<SearchEntry>, Unavailable> {
        let mut ldap = self.service().await?;
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE)),
        ];
        let failed = |e: ldap3::LdapError| self.unavailable(format!("search {filter}: {e}"));
        let mut stream = ldap
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
            .await
            .map_err(failed)?;
        let mut entries = Vec::new();
        while let Some(entry) = stream.next().await.map_err(failed)? {
            entries.push(SearchEntry::construct(entry));
            if entries.len() > LIST_MAX {
                return Err(self.unavailable(format!("more than {LIST_MAX} entries")));
            }
        }
        let done = stream.finish().await;
        let _ = ldap.unbind().await;
        done.success().map_err(failed)?;
        Ok(entries)
    }
}

/// The values of `attr` (any case) in `entry`.
fn values(entry: &SearchEntry, attr: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_where_they_go() {
        assert_eq!(
            fill(
                "(&(objectClass=inetOrgPerson)(mail={address}))",
                "a@x.test",
                filter_value
            ),
            "(&(objectClass=inetOrgPerson)(mail=a@x.test))"
        );
        let injected = fill("(uid={localpart})", "*)(uid=*@x.test", filter_value);
        assert_eq!(injected, "(uid=\\2a\\29\\28uid=\\2a)");
        let dn = fill(
            "uid={localpart},ou=people,dc=x",
            "a,ou=admins+cn=b@x.test",
            dn_value,
        );
        // RFC 4514 hex escapes: `,` `=` `+` are no longer syntax.
        assert_eq!(dn, "uid=a\\2cou\\3dadmins\\2bcn\\3db,ou=people,dc=x");
        assert_eq!(
            fill("(mail=*{domain})", "@x.test", filter_value),
            "(mail=*x.test)"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(check_url("ldaps://ldap.x.test"), Ok(false));
        assert_eq!(check_url("ldap://ldap.x.test:389"), Ok(true));
        assert!(check_url("http://x").is_err());
    }
}
