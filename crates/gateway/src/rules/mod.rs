//! Content-filter rules (`[[gateway.rules]]`): ordered, evaluated once per message before
//! the encryption policy. A rule is conditions ([`condition`], combined with `all` or
//! `any`) and actions ([`action`]); [`eval`] folds the matching rules into one
//! [`Outcome`], which `process.rs` applies: it can turn encryption, signing or decryption
//! on for the mail, edit its header, redirect it, delete it, and add notes and copies that
//! travel in the same relay transaction as the mail (so the MTA's `250` still means every
//! one of them was accepted by the next hop).

pub mod action;
pub mod apply;
pub mod condition;
pub mod eval;

use std::collections::HashSet;

use serde::Deserialize;

pub use action::{Action, Note};
pub use condition::{Condition, Mail};
pub use eval::{Outcome, RenderedNote, Step, evaluate};

use crate::access::Party;
use crate::policy::Format;

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown by `postern rules list/test` and in the log; unique.
    pub name: String,
    /// How the conditions combine.
    #[serde(default, rename = "match")]
    pub combine: Combine,
    /// What the rule looks at.
    pub conditions: Vec<Condition>,
    /// What it does when they hold.
    pub actions: Vec<Action>,
}

/// `all` (every condition holds) or `any` (one does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Every condition.
    #[default]
    All,
    /// At least one.
    Any,
}

impl Rule {
    /// Whether the rule's conditions hold for `mail`.
    pub fn matches(&self, mail: &Mail) -> bool {
        match self.combine {
            Combine::All => self.conditions.iter().all(|c| c.matches(mail)),
            Combine::Any => self.conditions.iter().any(|c| c.matches(mail)),
        }
    }
}

/// Every problem in the rules, each naming its rule, so all are fixed at once.
pub fn problems(rules: &[Rule]) -> Vec<String> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        let at = format!("gateway.rules[{}] {:?}", i + 1, r.name);
        if r.name.trim().is_empty() {
            out.push(format!("{at}: needs a name"));
        } else if !names.insert(r.name.as_str()) {
            out.push(format!("{at}: the name is used by an earlier rule"));
        }
        if r.conditions.is_empty() {
            out.push(format!(
                "{at}: no conditions (use {{ all_messages = true }})"
            ));
        }
        if r.actions.is_empty() {
            out.push(format!("{at}: no actions"));
        }
        out.extend(
            r.conditions
                .iter()
                .filter_map(Condition::problem)
                .map(|p| format!("{at}: {p}")),
        );
        out.extend(
            r.actions
                .iter()
                .filter_map(Action::problem)
                .map(|p| format!("{at}: {p}")),
        );
    }
    out
}

/// Whether any rule needs the message body (then it is read into memory once).
pub fn needs_body(rules: &[Rule]) -> bool {
    rules
        .iter()
        .any(|r| r.conditions.iter().any(Condition::needs_body))
}

/// The facts conditions test, from the header block and, when a rule needs it, the whole
/// message. `format` is what the gateway found (PGP/MIME from the header, inline PGP from
/// the body).
pub fn mail_facts(
    sender: Party,
    recipients: Vec<Party>,
    header: &[u8],
    whole: Option<&[u8]>,
    size: u64,
    format: Format,
) -> Mail {
    let mut header_only = header.to_vec();
    header_only.extend_from_slice(b"\r\n");
    let parsed = postern_pgp::mail::parse(whole.unwrap_or(&header_only));
    let subject = parsed
        .as_ref()
        .and_then(|m| m.subject())
        .unwrap_or_default()
        .to_owned();
    let (body, attachments) = match (whole, &parsed) {
        (Some(_), Some(m)) => {
            let text: Vec<String> = (0..m.text_body.len())
                .filter_map(|i| m.body_text(i).map(|t| t.into_owned()))
                .collect();
            (Some(text.join("\n")), m.attachment_count())
        }
        (Some(raw), None) => (Some(String::from_utf8_lossy(raw).into_owned()), 0),
        (None, _) => (None, 0),
    };
    Mail {
        sender,
        recipients,
        header: header.to_vec(),
        subject,
        body,
        attachments,
        size,
        format,
    }
}

/// What the rules do with `message` from `from` to `rcpts`, without sending anything
/// (`postern rules test`): the same facts and [`evaluate`] as the gateway, groups from the
/// account store. The message is read whole, as the gateway does when a rule needs it.
pub async fn dry_run(
    rules: &[Rule],
    accounts: &postern_accounts::Accounts,
    from: &str,
    rcpts: &[String],
    message: &[u8],
) -> Outcome {
    let whole = needs_body(rules).then_some(message);
    let block = crate::header::parse(message);
    let mut head = block.fields.clone();
    head.extend_from_slice(b"\r\n");
    let format = match postern_pgp::detect(&head) {
        postern_pgp::PgpFormat::PgpMimeEncrypted => Format::Encrypted,
        postern_pgp::PgpFormat::PgpMimeSigned => Format::Signed,
        _ => match whole.map(postern_pgp::detect) {
            Some(postern_pgp::PgpFormat::InlineEncrypted) => Format::Encrypted,
            Some(postern_pgp::PgpFormat::InlineSigned) => Format::Signed,
            _ => Format::Plain,
        },
    };
    let party = async |address: &str| {
        let mut p = Party::new(address);
        if !address.is_empty() {
            p.groups = accounts.groups_of(address).await.unwrap_or_default();
        }
        p
    };
    let sender = party(from).await;
    let mut recipients = Vec::with_capacity(rcpts.len());
    for r in rcpts {
        recipients.push(party(r).await);
    }
    let mail = mail_facts(
        sender,
        recipients,
        &block.fields,
        whole,
        message.len() as u64,
        format,
    );
    evaluate(rules, &mail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct W {
        rules: Vec<Rule>,
    }

    /// The commented example in `config/postern.toml` parses and is valid.
    #[test]
    fn the_documented_example_is_valid() {
        let file = include_str!("../../../../config/postern.toml");
        let start = file.find("# [[gateway.rules]]").expect("example present");
        let example: String = file[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").or(l.strip_prefix('#')).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        #[derive(Deserialize)]
        struct File {
            gateway: W,
        }
        let f: File = toml::from_str(&example).expect("example parses");
        assert_eq!(f.gateway.rules.len(), 3);
        assert_eq!(problems(&f.gateway.rules), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_with_its_rule() {
        let w: W = toml::from_str(
            r#"
            [[rules]]
            name = "a"
            conditions = [{ sender = "re:(" }, { size_greater_than = "big" }]
            actions = [{ skip = 0 }, { copy_to = "x" }]
            [[rules]]
            name = "a"
            conditions = []
            actions = []
            "#,
        )
        .expect("parses");
        let p = problems(&w.rules);
        assert_eq!(p.len(), 7, "{p:#?}");
        assert!(p[0].starts_with("gateway.rules[1] \"a\": "));
        assert!(p.iter().any(|l| l.contains("used by an earlier rule")));
    }

    #[test]
    fn facts_come_from_the_mime_structure() {
        let msg = b"From: a@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
            MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nthe body text\r\n\
            --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let header_end = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 2);
        let header = &msg[..header_end];
        let m = mail_facts(
            Party::new("a@example.org"),
            vec![],
            header,
            Some(msg),
            msg.len() as u64,
            Format::Plain,
        );
        assert_eq!(m.subject, "Grüße");
        assert_eq!(m.attachments, 1);
        assert!(
            m.body
                .as_deref()
                .is_some_and(|b| b.contains("the body text"))
        );
        let m = mail_facts(
            Party::new("a@example.org"),
            vec![],
            header,
            None,
            1,
            Format::Plain,
        );
        assert_eq!(m.subject, "Grüße");
        assert!(m.body.is_none());
    }
}
