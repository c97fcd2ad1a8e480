//! Rule conditions: what a content-filter rule looks at. Each condition is a pure test
//! on a [`Mail`], the facts gathered once per message, so every one is unit-testable.
//!
//! Patterns and sizes keep the text the admin wrote next to the compiled value (or the
//! reason it does not compile): a typo in one rule is reported with every other problem
//! by [`Condition::problem`], instead of stopping the config parser at the first one.

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer};

use crate::access::Party;
use crate::policy::Format;

/// The facts about one message that conditions test.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Envelope sender (empty address for the null sender) and its groups.
    pub sender: Party,
    /// Envelope recipients and their groups.
    pub recipients: Vec<Party>,
    /// The header block as received, fields with their line endings.
    pub header: Vec<u8>,
    /// Decoded Subject (empty when none).
    pub subject: String,
    /// Decoded text of the message's text parts; `None` when no rule needs it (the body is
    /// then never read into memory).
    pub body: Option<String>,
    /// Attachments in the MIME structure (only known with the body).
    pub attachments: usize,
    /// Message size in bytes, as received.
    pub size: u64,
    /// What the mail already is, as far as OpenPGP goes.
    pub format: Format,
}

/// One condition, written in config as a one-key table: `{ subject_contains = "[secure]" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Envelope sender address: a glob (`*@partner.example`) or `re:` regex.
    Sender(AddressPattern),
    /// Envelope sender's domain: a glob (`*.partner.example`) or `re:` regex.
    SenderDomain(AddressPattern),
    /// Any envelope recipient's address matches.
    Recipient(AddressPattern),
    /// Any envelope recipient's domain matches.
    RecipientDomain(AddressPattern),
    /// The sender is a member of this group (`postern group ...`).
    SenderInGroup(String),
    /// Any recipient is a member of this group.
    RecipientInGroup(String),
    /// A header field with this name has a value the regex finds something in.
    Header(HeaderMatch),
    /// The Subject contains this text (case-insensitive).
    SubjectContains(String),
    /// A text part contains this text (case-insensitive).
    BodyContains(String),
    /// The message has (`true`) or has no (`false`) attachments.
    HasAttachments(bool),
    /// The message is larger than this size (`"5 MiB"` or bytes).
    SizeGreaterThan(Size),
    /// The message is (or is not) OpenPGP signed.
    IsSigned(bool),
    /// The message is (or is not) OpenPGP encrypted.
    IsEncrypted(bool),
    /// Every message (`all_messages = true`).
    AllMessages(bool),
}

/// `{ header = { name = "X-Spam-Flag", regex = "(?i)yes" } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Field name, case-insensitive.
    pub name: String,
    /// Searched in the unfolded value of every field with that name.
    pub regex: Checked<Regex>,
}

/// An address or domain pattern: a case-insensitive glob (`*` any run, `?` one character)
/// or, with a `re:` prefix, a regex (case-insensitive, unanchored unless it says so).
pub type AddressPattern = Checked<Regex>;

/// A size threshold in bytes.
pub type Size = Checked<u64>;

/// A value as written in config and what it compiled to (or why it did not).
#[derive(Debug, Clone)]
pub struct Checked<T> {
    /// The text in the config file.
    pub source: String,
    /// The compiled value, or the problem to report.
    pub value: Result<T, String>,
}

impl Condition {
    /// Whether the condition holds for `mail`.
    pub fn matches(&self, mail: &Mail) -> bool {
        let any_rcpt = |f: &dyn Fn(&Party) -> bool| mail.recipients.iter().any(f);
        match self {
            Condition::Sender(p) => p.is_match(&mail.sender.address),
            Condition::SenderDomain(p) => p.is_match(mail.sender.domain()),
            Condition::Recipient(p) => any_rcpt(&|r| p.is_match(&r.address)),
            Condition::RecipientDomain(p) => any_rcpt(&|r| p.is_match(r.domain())),
            Condition::SenderInGroup(g) => mail.sender.groups.iter().any(|m| m == g),
            Condition::RecipientInGroup(g) => any_rcpt(&|r| r.groups.iter().any(|m| m == g)),
            Condition::Header(h) => {
                let Ok(re) = &h.regex.value else { return false };
                crate::header::fields(&mail.header)
                    .iter()
                    .filter(|f| f.is(&h.name))
                    .any(|f| re.is_match(&f.value()))
            }
            Condition::SubjectContains(s) => contains_ci(&mail.subject, s),
            Condition::BodyContains(s) => mail.body.as_deref().is_some_and(|b| contains_ci(b, s)),
            Condition::HasAttachments(want) => (mail.attachments > 0) == *want,
            Condition::SizeGreaterThan(s) => s.value.as_ref().is_ok_and(|&n| mail.size > n),
            Condition::IsSigned(want) => (mail.format == Format::Signed) == *want,
            Condition::IsEncrypted(want) => (mail.format == Format::Encrypted) == *want,
            Condition::AllMessages(want) => *want,
        }
    }

    /// Whether testing this condition needs the message body in memory (signed and
    /// encrypted too: inline PGP is only visible in the body).
    pub fn needs_body(&self) -> bool {
        matches!(
            self,
            Condition::BodyContains(_)
                | Condition::HasAttachments(_)
                | Condition::IsSigned(_)
                | Condition::IsEncrypted(_)
        )
    }

    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        match self {
            Condition::Sender(p)
            | Condition::SenderDomain(p)
            | Condition::Recipient(p)
            | Condition::RecipientDomain(p) => p.value.as_ref().err().cloned(),
            Condition::Header(h) if h.name.is_empty() || h.name.contains([':', ' ']) => {
                Some(format!("`{}` is not a header field name", h.name))
            }
            Condition::Header(h) => h.regex.value.as_ref().err().cloned(),
            Condition::SizeGreaterThan(s) => s.value.as_ref().err().cloned(),
            Condition::SenderInGroup(g) | Condition::RecipientInGroup(g) if g.is_empty() => {
                Some("empty group name".into())
            }
            Condition::SubjectContains(s) | Condition::BodyContains(s) if s.is_empty() => {
                Some("empty text matches everything (use all_messages)".into())
            }
            _ => None,
        }
    }
}

impl AddressPattern {
    /// Whether the pattern matches `text` (a pattern that did not compile matches nothing).
    pub fn is_match(&self, text: &str) -> bool {
        self.value.as_ref().is_ok_and(|re| re.is_match(text))
    }
}

impl<'de> Deserialize<'de> for Checked<Regex> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        let pattern = match source.strip_prefix("re:") {
            Some(re) => re.to_owned(),
            None => glob_to_regex(&source),
        };
        let value = RegexBuilder::new(&pattern)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("`{source}` is not a valid pattern: {e}"));
        Ok(Checked { source, value })
    }
}

impl<'de> Deserialize<'de> for Checked<u64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Num(n) => Checked {
                source: n.to_string(),
                value: Ok(n),
            },
            Raw::Text(t) => Checked {
                value: crate::config::parse_size(&t),
                source: t,
            },
        })
    }
}

/// A glob as an anchored regex: `*` any run, `?` one character, the rest literal.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(toml_value: &str) -> Condition {
        #[derive(Deserialize)]
        struct W {
            c: Condition,
        }
        toml::from_str::<W>(&format!("c = {toml_value}"))
            .expect("parses")
            .c
    }

    fn party(addr: &str, groups: &[&str]) -> Party {
        let mut p = Party::new(addr);
        p.groups = groups.iter().map(|g| g.to_string()).collect();
        p
    }

    fn mail() -> Mail {
        Mail {
            sender: party("alice@example.org", &["legal"]),
            recipients: vec![
                party("bob@partner.example", &[]),
                party("carol@sub.other.example", &["board"]),
            ],
            header: b"From: alice@example.org\r\nX-Spam-Flag: NO\r\nX-Class:\r\n  secret stuff\r\n"
                .to_vec(),
            subject: "Quarterly [Secure] report".into(),
            body: Some("Please find the Numbers attached.".into()),
            attachments: 1,
            size: 20_000,
            format: Format::Plain,
        }
    }

    #[test]
    fn sender_and_recipient_patterns() {
        let m = mail();
        assert!(cond(r#"{ sender = "*@EXAMPLE.org" }"#).matches(&m));
        assert!(!cond(r#"{ sender = "bob@*" }"#).matches(&m));
        assert!(cond(r#"{ sender_domain = "example.org" }"#).matches(&m));
        assert!(!cond(r#"{ sender_domain = "example.or?x" }"#).matches(&m));
        assert!(cond(r#"{ recipient = "re:^carol@" }"#).matches(&m));
        assert!(cond(r#"{ recipient_domain = "*.other.example" }"#).matches(&m));
        assert!(!cond(r#"{ recipient_domain = "other.example" }"#).matches(&m));
        // Glob characters other than * and ? are literal.
        assert!(!cond(r#"{ sender = "alice@example+org" }"#).matches(&m));
        let bad = cond(r#"{ sender = "re:(" }"#);
        assert!(bad.problem().is_some() && !bad.matches(&m));
    }

    #[test]
    fn groups() {
        let m = mail();
        assert!(cond(r#"{ sender_in_group = "legal" }"#).matches(&m));
        assert!(!cond(r#"{ sender_in_group = "board" }"#).matches(&m));
        assert!(cond(r#"{ recipient_in_group = "board" }"#).matches(&m));
        assert!(!cond(r#"{ recipient_in_group = "legal" }"#).matches(&m));
    }

    #[test]
    fn header_subject_and_body() {
        let m = mail();
        assert!(cond(r#"{ header = { name = "x-spam-flag", regex = "re:^NO$" } }"#).matches(&m));
        assert!(!cond(r#"{ header = { name = "X-Spam-Flag", regex = "re:yes" } }"#).matches(&m));
        // Folded values are unfolded before matching.
        assert!(cond(r#"{ header = { name = "X-Class", regex = "re:secret" } }"#).matches(&m));
        assert!(
            cond(r#"{ header = { name = "bad name", regex = "x" } }"#)
                .problem()
                .is_some()
        );
        assert!(cond(r#"{ subject_contains = "[secure]" }"#).matches(&m));
        assert!(!cond(r#"{ subject_contains = "[private]" }"#).matches(&m));
        assert!(cond(r#"{ body_contains = "numbers" }"#).matches(&m));
        assert!(cond(r#"{ body_contains = "numbers" }"#).needs_body());
        let mut no_body = mail();
        no_body.body = None;
        assert!(!cond(r#"{ body_contains = "numbers" }"#).matches(&no_body));
        assert!(cond(r#"{ subject_contains = "" }"#).problem().is_some());
    }

    #[test]
    fn attachments_size_format_and_all() {
        let mut m = mail();
        assert!(cond("{ has_attachments = true }").matches(&m));
        assert!(cond(r#"{ size_greater_than = "10 KiB" }"#).matches(&m));
        assert!(!cond("{ size_greater_than = 20000 }").matches(&m));
        assert!(
            cond(r#"{ size_greater_than = "lots" }"#)
                .problem()
                .is_some()
        );
        assert!(cond("{ is_signed = false }").matches(&m));
        assert!(!cond("{ is_encrypted = true }").matches(&m));
        m.format = Format::Encrypted;
        m.attachments = 0;
        assert!(cond("{ is_encrypted = true }").matches(&m));
        assert!(!cond("{ is_signed = true }").matches(&m));
        assert!(cond("{ has_attachments = false }").matches(&m));
        m.format = Format::Signed;
        assert!(cond("{ is_signed = true }").matches(&m));
        assert!(cond("{ all_messages = true }").matches(&m));
    }
}
