//! Evaluating the ordered rules once per message into one [`Outcome`]: rules are tried in
//! config order; a matching rule's actions accumulate; `skip = N` passes over the next N
//! rules, `stop` ends evaluation. The same function serves the gateway and
//! `postern rules test`, so the dry run cannot disagree with what the gateway does.

use std::fmt;

use super::Rule;
use super::action::{Action, TemplateValues};
use super::condition::Mail;

/// What happened to one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Its conditions held; its actions apply.
    Matched,
    /// Its conditions did not hold.
    NoMatch,
    /// Passed over by an earlier `skip` or after a `stop`.
    Skipped,
}

/// A note to send, templates filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNote {
    /// Recipient.
    pub to: String,
    /// Subject (one line).
    pub subject: String,
    /// Body text.
    pub body: String,
}

/// Everything the matching rules ask for, in rule order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Per rule, by name, in config order.
    pub steps: Vec<(String, Step)>,
    /// Turn encryption on for this mail.
    pub encrypt: bool,
    /// Turn signing on for this mail.
    pub sign: bool,
    /// Turn decryption on for this mail.
    pub decrypt: bool,
    /// Header fields to add (`Name: value`).
    pub add_headers: Vec<String>,
    /// Header field names to remove.
    pub remove_headers: Vec<String>,
    /// The rule that deleted the mail.
    pub deleted_by: Option<String>,
    /// Notes to send.
    pub notes: Vec<RenderedNote>,
    /// Extra recipients of an unchanged copy.
    pub copy_to: Vec<String>,
    /// Recipients replacing the envelope's (empty: no redirect).
    pub redirect: Vec<String>,
}

impl Outcome {
    /// Whether any rule asked for anything.
    pub fn is_empty(&self) -> bool {
        let matched = self.steps.iter().any(|(_, s)| *s == Step::Matched);
        !matched
    }
}

/// Evaluates `rules` against `mail`.
pub fn evaluate(rules: &[Rule], mail: &Mail) -> Outcome {
    let values = TemplateValues {
        sender: mail.sender.address.clone(),
        recipients: mail.recipients.iter().map(|r| r.address.clone()).collect(),
        subject: mail.subject.clone(),
        size: mail.size,
    };
    let mut out = Outcome::default();
    let mut skip = 0usize;
    let mut stopped = false;
    for rule in rules {
        if stopped || skip > 0 {
            skip = skip.saturating_sub(1);
            out.steps.push((rule.name.clone(), Step::Skipped));
            continue;
        }
        if !rule.matches(mail) {
            out.steps.push((rule.name.clone(), Step::NoMatch));
            continue;
        }
        out.steps.push((rule.name.clone(), Step::Matched));
        for action in &rule.actions {
            match action {
                Action::Encrypt(on) => out.encrypt |= on,
                Action::Sign(on) => out.sign |= on,
                Action::Decrypt(on) => out.decrypt |= on,
                Action::AddHeader(f) => out.add_headers.push(f.clone()),
                Action::RemoveHeader(n) => out.remove_headers.push(n.clone()),
                Action::Delete(true) if out.deleted_by.is_none() => {
                    out.deleted_by = Some(rule.name.clone());
                }
                Action::Delete(_) => {}
                Action::NotifySender(n) if !mail.sender.address.is_empty() => {
                    out.notes.push(RenderedNote {
                        to: mail.sender.address.clone(),
                        subject: values.render(&n.subject, true),
                        body: values.render(&n.body, false),
                    });
                }
                Action::NotifySender(_) => {}
                Action::Notify(n) => out.notes.push(RenderedNote {
                    to: n.to.clone().unwrap_or_default(),
                    subject: values.render(&n.subject, true),
                    body: values.render(&n.body, false),
                }),
                Action::CopyTo(a) => out.copy_to.push(a.to_lowercase()),
                Action::Redirect(a) => out.redirect.push(a.to_lowercase()),
                Action::Skip(n) => skip = skip.max(*n),
                Action::Stop(on) => stopped |= on,
            }
        }
    }
    out
}

impl fmt::Display for Outcome {
    /// The report of `postern rules test` and of the gateway's log line: one line per
    /// rule, then what happens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, step)) in self.steps.iter().enumerate() {
            let s = match step {
                Step::Matched => "matches",
                Step::NoMatch => "no match",
                Step::Skipped => "skipped",
            };
            writeln!(f, "rule {} {name:?}: {s}", i + 1)?;
        }
        write!(f, "result: {}", self.summary())
    }
}

impl Outcome {
    /// One line: what happens to the mail.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(rule) = &self.deleted_by {
            parts.push(format!("delete (rule {rule:?})"));
        }
        for (on, what) in [
            (self.encrypt, "encrypt"),
            (self.sign, "sign"),
            (self.decrypt, "decrypt"),
        ] {
            if on && self.deleted_by.is_none() {
                parts.push(what.into());
            }
        }
        for h in &self.add_headers {
            parts.push(format!("add header {h:?}"));
        }
        for h in &self.remove_headers {
            parts.push(format!("remove header {h}"));
        }
        if !self.redirect.is_empty() && self.deleted_by.is_none() {
            parts.push(format!("redirect to {}", self.redirect.join(", ")));
        }
        for a in &self.copy_to {
            parts.push(format!("copy to {a}"));
        }
        for n in &self.notes {
            parts.push(format!("note to {} ({:?})", n.to, n.subject));
        }
        if parts.is_empty() {
            return "no rule action (policy only)".into();
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Party;
    use crate::policy::Format;

    fn rules(toml: &str) -> Vec<Rule> {
        #[derive(serde::Deserialize)]
        struct W {
            rules: Vec<Rule>,
        }
        let c: W = toml::from_str(toml).expect("parses");
        let problems = crate::rules::problems(&c.rules);
        assert!(problems.is_empty(), "{problems:?}");
        c.rules
    }

    fn mail(subject: &str, size: u64) -> Mail {
        Mail {
            sender: Party::new("alice@example.org"),
            recipients: vec![Party::new("bob@partner.example")],
            header: Vec::new(),
            subject: subject.into(),
            body: None,
            attachments: 0,
            size,
            format: Format::Plain,
        }
    }

    const RULES: &str = r#"
        [[rules]]
        name = "secure"
        conditions = [{ subject_contains = "[secure]" }]
        actions = [{ encrypt = true }, { add_header = "X-Class: secure" }]
        [[rules]]
        name = "skip-two"
        conditions = [{ subject_contains = "skip" }]
        actions = [{ skip = 2 }]
        [[rules]]
        name = "big"
        match = "any"
        conditions = [{ size_greater_than = "1 MiB" }, { subject_contains = "huge" }]
        actions = [{ delete = true }, { notify_sender = { subject = "Not sent: $SUBJECT$", body = "$SIZE$ bytes to $RECIPIENT$ from $SENDER$" } }]
        [[rules]]
        name = "stop"
        conditions = [{ subject_contains = "stop" }]
        actions = [{ stop = true }]
        [[rules]]
        name = "everything"
        conditions = [{ all_messages = true }]
        actions = [{ copy_to = "Archive@example.org" }]
    "#;

    fn steps(o: &Outcome) -> Vec<Step> {
        o.steps.iter().map(|(_, s)| s.clone()).collect()
    }

    #[test]
    fn rules_apply_in_order_and_accumulate() {
        let r = rules(RULES);
        let o = evaluate(&r, &mail("[SECURE] plan", 10));
        use Step::*;
        assert_eq!(steps(&o), [Matched, NoMatch, NoMatch, NoMatch, Matched]);
        assert!(o.encrypt && !o.sign && o.deleted_by.is_none());
        assert_eq!(o.add_headers, ["X-Class: secure"]);
        assert_eq!(o.copy_to, ["archive@example.org"]);
        assert_eq!(
            o.summary(),
            "encrypt; add header \"X-Class: secure\"; copy to archive@example.org"
        );
    }

    #[test]
    fn any_combines_and_notes_are_rendered() {
        let o = evaluate(&rules(RULES), &mail("huge file", 10));
        assert_eq!(o.deleted_by.as_deref(), Some("big"));
        assert_eq!(
            o.notes,
            [RenderedNote {
                to: "alice@example.org".into(),
                subject: "Not sent: huge file".into(),
                body: "10 bytes to bob@partner.example from alice@example.org".into(),
            }]
        );
        assert!(
            evaluate(&rules(RULES), &mail("x", 2 << 20))
                .deleted_by
                .is_some()
        );
        // The null sender gets no note.
        let mut bounce = mail("huge", 10);
        bounce.sender = Party::new("");
        assert!(evaluate(&rules(RULES), &bounce).notes.is_empty());
    }

    #[test]
    fn skip_passes_over_the_next_rules_and_stop_ends() {
        use Step::*;
        let o = evaluate(&rules(RULES), &mail("skip huge", 10));
        assert_eq!(steps(&o), [NoMatch, Matched, Skipped, Skipped, Matched]);
        assert!(o.deleted_by.is_none());
        let o = evaluate(&rules(RULES), &mail("stop [secure]", 10));
        assert_eq!(steps(&o), [Matched, NoMatch, NoMatch, Matched, Skipped]);
        assert!(o.copy_to.is_empty() && o.encrypt);
        let text = o.to_string();
        assert!(text.starts_with("rule 1 \"secure\": matches\n"), "{text}");
        assert!(text.ends_with("result: encrypt; add header \"X-Class: secure\""));
    }

    #[test]
    fn all_needs_every_condition() {
        let r = rules(
            r#"
            [[rules]]
            name = "both"
            conditions = [{ sender_domain = "example.org" }, { recipient_domain = "nowhere.example" }]
            actions = [{ redirect = "legal@example.org" }, { sign = true }, { decrypt = true }]
            "#,
        );
        assert!(evaluate(&r, &mail("x", 1)).is_empty());
        let mut m = mail("x", 1);
        m.recipients.push(Party::new("y@nowhere.example"));
        let o = evaluate(&r, &m);
        assert!(o.sign && o.decrypt);
        assert_eq!(o.redirect, ["legal@example.org"]);
        assert_eq!(o.summary(), "sign; decrypt; redirect to legal@example.org");
    }
}
