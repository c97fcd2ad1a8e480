//! Rule actions: what a matching content-filter rule does. Actions only *say* what should
//! happen; [`super::eval`] folds them into one outcome per message and `process.rs` carries
//! it out, so the no-loss path (everything through one relay transaction) stays in one place.

use serde::Deserialize;

/// One action, written in config as a one-key table: `{ encrypt = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Encrypt copies to outside recipients (as if `policy.encrypt` were on for this mail;
    /// recipients without a key follow `missing_key`).
    Encrypt(bool),
    /// Sign copies from a local sender with a key (as if `policy.sign` were on).
    Sign(bool),
    /// Decrypt for local recipients with a key (as if `policy.decrypt` were on).
    Decrypt(bool),
    /// Add a header field: `"X-Class: confidential"`.
    AddHeader(String),
    /// Remove every header field with this name.
    RemoveHeader(String),
    /// Drop the mail (after logging it); the MTA still gets `250`.
    Delete(bool),
    /// Send a note to the envelope sender (never to the null sender).
    NotifySender(Note),
    /// Send a note to `to`.
    Notify(Note),
    /// Send a copy of the mail to this address as well.
    CopyTo(String),
    /// Send the mail to this address instead of its recipients.
    Redirect(String),
    /// Do not evaluate the next N rules.
    Skip(usize),
    /// Evaluate no further rules.
    Stop(bool),
}

/// A note: a new plain-text mail from the gateway, relayed with the message's copies.
/// Subject and body are templates: `$SENDER$`, `$RECIPIENT$` (all recipients, comma
/// separated), `$SUBJECT$`, `$SIZE$` (bytes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// Recipient (`notify` only; `notify_sender` writes to the sender).
    #[serde(default)]
    pub to: Option<String>,
    /// Subject template.
    pub subject: String,
    /// Body template.
    pub body: String,
}

/// The values templates are filled with.
#[derive(Debug, Clone)]
pub struct TemplateValues {
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// Decoded subject.
    pub subject: String,
    /// Size in bytes.
    pub size: u64,
}

impl TemplateValues {
    /// `template` with every variable replaced. `one_line` removes line breaks from the
    /// values (a header must not gain fields from a subject a stranger wrote).
    pub fn render(&self, template: &str, one_line: bool) -> String {
        let clean = |v: &str| match one_line {
            true => v.replace(['\r', '\n'], " "),
            false => v.to_owned(),
        };
        template
            .replace("$SENDER$", &clean(&self.sender))
            .replace("$RECIPIENT$", &clean(&self.recipients.join(", ")))
            .replace("$SUBJECT$", &clean(&self.subject))
            .replace("$SIZE$", &self.size.to_string())
    }
}

impl Action {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        match self {
            Action::AddHeader(f) => match f.split_once(':') {
                Some((name, _)) if valid_field_name(name) && !f.contains(['\r', '\n']) => None,
                _ => Some(format!("add_header `{f}` is not `Name: value` on one line")),
            },
            Action::RemoveHeader(n) if !valid_field_name(n) => {
                Some(format!("remove_header `{n}` is not a header field name"))
            }
            Action::RemoveHeader(n) if n.eq_ignore_ascii_case("x-postern-pgp") => {
                Some("remove_header: X-Postern-PGP is the gateway's own trace field".into())
            }
            Action::Notify(n) if n.to.as_deref().is_none_or(|a| !valid_address(a)) => {
                Some("notify needs `to` = an address".into())
            }
            Action::NotifySender(n) if n.to.is_some() => {
                Some("notify_sender writes to the sender: drop `to` or use notify".into())
            }
            Action::Notify(n) | Action::NotifySender(n) if n.subject.contains(['\r', '\n']) => {
                Some("a note's subject must be one line".into())
            }
            Action::CopyTo(a) | Action::Redirect(a) if !valid_address(a) => {
                Some(format!("`{a}` is not an address"))
            }
            Action::Skip(0) => Some("skip = 0 skips nothing".into()),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    /// As `postern rules list` shows it: the config key and its value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Encrypt(on) => write!(f, "encrypt={on}"),
            Action::Sign(on) => write!(f, "sign={on}"),
            Action::Decrypt(on) => write!(f, "decrypt={on}"),
            Action::AddHeader(h) => write!(f, "add_header={h:?}"),
            Action::RemoveHeader(h) => write!(f, "remove_header={h}"),
            Action::Delete(on) => write!(f, "delete={on}"),
            Action::NotifySender(n) => write!(f, "notify_sender={:?}", n.subject),
            Action::Notify(n) => write!(
                f,
                "notify={}:{:?}",
                n.to.as_deref().unwrap_or_default(),
                n.subject
            ),
            Action::CopyTo(a) => write!(f, "copy_to={a}"),
            Action::Redirect(a) => write!(f, "redirect={a}"),
            Action::Skip(n) => write!(f, "skip={n}"),
            Action::Stop(on) => write!(f, "stop={on}"),
        }
    }
}

/// RFC 5322 field name: printable ASCII but colon and space.
fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

fn valid_address(a: &str) -> bool {
    matches!(a.rsplit_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty())
        && !a.contains(|c: char| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(toml_value: &str) -> Action {
        #[derive(Deserialize)]
        struct W {
            a: Action,
        }
        toml::from_str::<W>(&format!("a = {toml_value}"))
            .expect("parses")
            .a
    }

    #[test]
    fn every_action_parses_and_bad_ones_are_named() {
        for good in [
            "{ encrypt = true }",
            "{ sign = true }",
            "{ decrypt = true }",
            r#"{ add_header = "X-Class: secret" }"#,
            r#"{ remove_header = "X-Mailer" }"#,
            "{ delete = true }",
            r#"{ notify_sender = { subject = "Too big", body = "$SIZE$" } }"#,
            r#"{ notify = { to = "admin@example.org", subject = "s", body = "b" } }"#,
            r#"{ copy_to = "archive@example.org" }"#,
            r#"{ redirect = "legal@example.org" }"#,
            "{ skip = 2 }",
            "{ stop = true }",
        ] {
            assert_eq!(action(good).problem(), None, "{good}");
        }
        for bad in [
            r#"{ add_header = "no colon" }"#,
            r#"{ add_header = "Bad Name: x" }"#,
            r#"{ remove_header = "X-Postern-PGP" }"#,
            r#"{ notify = { subject = "s", body = "b" } }"#,
            r#"{ notify_sender = { to = "x@y", subject = "s", body = "b" } }"#,
            r#"{ copy_to = "nobody" }"#,
            r#"{ redirect = "a b@c" }"#,
            "{ skip = 0 }",
        ] {
            assert!(action(bad).problem().is_some(), "{bad}");
        }
    }

    #[test]
    fn templates_fill_every_variable_and_keep_headers_on_one_line() {
        let v = TemplateValues {
            sender: "alice@example.org".into(),
            recipients: vec!["bob@partner.example".into(), "carol@x.example".into()],
            subject: "Hi\r\nBcc: evil@x".into(),
            size: 1234,
        };
        assert_eq!(
            v.render("$SENDER$ -> $RECIPIENT$: $SUBJECT$ ($SIZE$ bytes)", true),
            "alice@example.org -> bob@partner.example, carol@x.example: Hi  Bcc: evil@x (1234 bytes)"
        );
        assert!(v.render("$SUBJECT$", false).contains('\n'));
        assert_eq!(v.render("no variables", true), "no variables");
    }
}
