//! Reading the files `postern account import` takes: Dovecot passwd-files and CSV.
//!
//! - passwd-file: `user:password[:uid:gid:gecos:home:shell:extra]` a line (Dovecot's
//!   format), `#` comments and blank lines skipped; `user` is an address, or a local part
//!   with the `--domain` given; `password` is `{SCHEME}data` or a bare crypt string.
//! - CSV: `address,password` a record (an optional header `address,password`), quoted as
//!   RFC 4180 says; `password` is a hash when it starts with `{`, else the password itself
//!   (`{PLAIN}` / `{CLEAR}` in front say so explicitly, also for a password that starts
//!   with `{`).
//!
//! A password in the clear becomes Postern's own credentials at import; a hash is kept and
//! checked at login (`legacy.rs`).

use crate::legacy;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PasswdFile,
    Csv,
}

/// What an entry gives for the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password itself.
    Clear(String),
    /// A hash in stored form (`legacy::normalise`).
    Hashed(String),
}

/// One account to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `localpart@domain`, as written (the caller checks it is served).
    pub address: String,
    pub secret: Secret,
}

/// The secret of a password field: `{PLAIN}` / `{CLEAR}` or, in CSV, no known scheme means
/// the password; else a hash of a scheme we read.
fn secret(field: &str, bare_is_clear: bool) -> Result<Secret, String> {
    for clear in ["{PLAIN}", "{CLEAR}"] {
        if let Some(p) = field
            .get(..clear.len())
            .filter(|head| head.eq_ignore_ascii_case(clear))
            .and_then(|_| field.get(clear.len()..))
        {
            return Ok(Secret::Clear(p.to_owned()));
        }
    }
    if bare_is_clear && !field.starts_with('{') {
        return Ok(Secret::Clear(field.to_owned()));
    }
    legacy::normalise(field)
        .map(Secret::Hashed)
        .map_err(|e| e.to_string())
}

/// The address of a user field: as written, or `local@domain` with the default domain.
fn address(user: &str, domain: Option<&str>) -> Result<String, String> {
    let user = user.trim();
    if user.is_empty() {
        return Err("no user name".into());
    }
    if user.contains('@') {
        return Ok(user.to_owned());
    }
    domain
        .map(|d| format!("{user}@{d}"))
        .ok_or_else(|| format!("`{user}` has no domain (give --domain)"))
}

fn checked(entry: Entry) -> Result<Entry, String> {
    match &entry.secret {
        Secret::Clear(p) if p.is_empty() => Err("empty password".into()),
        Secret::Clear(p) if p.contains('\0') => Err("NUL in the password".into()),
        _ => Ok(entry),
    }
}

/// One passwd-file line: `Ok(None)` for comments and blank lines.
pub fn passwd_line(line: &str, domain: Option<&str>) -> Result<Option<Entry>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split(':');
    let user = fields.next().unwrap_or_default();
    let Some(password) = fields.next().filter(|p| !p.is_empty()) else {
        return Err("no password field".into());
    };
    checked(Entry {
        address: address(user, domain)?,
        secret: secret(password, false)?,
    })
    .map(Some)
}

/// The entries of a CSV text, each with its line number or why it was refused.
pub fn csv_entries(
    text: impl std::io::Read,
    domain: Option<&str>,
) -> impl Iterator<Item = (u64, Result<Entry, String>)> {
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    reader
        .into_records()
        .enumerate()
        .filter_map(move |(i, record)| {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(i as u64 + 1, |p| p.line());
                    return Some((line, Err(format!("not CSV: {e}"))));
                }
            };
            let line = record.position().map_or(i as u64 + 1, |p| p.line());
            let user = record.get(0).unwrap_or_default();
            let password = record.get(1).unwrap_or_default();
            if i == 0
                && user.trim().eq_ignore_ascii_case("address")
                && password.trim().eq_ignore_ascii_case("password")
            {
                return None; // the header
            }
            if record.len() == 1 && user.trim().is_empty() {
                return None;
            }
            if record.len() != 2 {
                return Some((line, Err(format!("{} fields, not 2", record.len()))));
            }
            let entry = address(user, domain).and_then(|address| {
                checked(Entry {
                    address,
                    secret: secret(password, true)?,
                })
            });
            Some((line, entry))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA512: &str = "{SHA512-CRYPT}$6$YYQQmsFf.j.qD.7f$.FgceA9Jm.YQn/PJhi0ZPXG5BYVgjAvCpvSOGTpPJitUaCDSjUZVcG4lrRoNC5T1FekfTDw8xbqCP3ox5qi56.";

    #[test]
    fn passwd_file_lines() {
        let e = passwd_line(
            &format!("alice@example.com:{SHA512}:1000:1000::/home/a::"),
            None,
        )
        .expect("ok")
        .expect("entry");
        assert_eq!(e.address, "alice@example.com");
        assert_eq!(e.secret, Secret::Hashed(SHA512.into()));
        let e = passwd_line("bob:{PLAIN}s3cret", Some("example.com"))
            .expect("ok")
            .expect("entry");
        assert_eq!(e.address, "bob@example.com");
        assert_eq!(e.secret, Secret::Clear("s3cret".into()));
        assert_eq!(passwd_line("# comment", None), Ok(None));
        assert_eq!(passwd_line("   ", None), Ok(None));
        assert!(passwd_line("bob:{PLAIN}x", None).is_err(), "no domain");
        assert!(passwd_line("bob@x", None).is_err(), "no password");
        assert!(
            passwd_line("bob@x:hunter2", None).is_err(),
            "bare text is no hash"
        );
        assert!(passwd_line("bob@x:{MD5}abc", None).is_err());
        assert!(passwd_line("bob@x:{PLAIN}", None).is_err(), "empty");
    }

    #[test]
    fn csv_records() {
        let text = format!(
            "address,password\nalice@example.com,\"pa,ss\"\"word\"\ncarol@example.com,{SHA512}\n\
             dave@example.com\nerin@example.com,{{PLAIN}}{{x}}\nfrank@example.com,a\0b\n"
        );
        let got: Vec<_> = csv_entries(text.as_bytes(), None).collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(
            got[0],
            (
                2,
                Ok(Entry {
                    address: "alice@example.com".into(),
                    secret: Secret::Clear("pa,ss\"word".into())
                })
            )
        );
        assert_eq!(
            got[1].1.as_ref().map(|e| &e.secret),
            Ok(&Secret::Hashed(SHA512.into()))
        );
        assert_eq!(got[2].0, 4);
        assert!(got[2].1.is_err(), "one field");
        assert_eq!(
            got[3].1.as_ref().map(|e| &e.secret),
            Ok(&Secret::Clear("{x}".into()))
        );
        assert!(got[4].1.is_err(), "NUL refused");
    }
}
