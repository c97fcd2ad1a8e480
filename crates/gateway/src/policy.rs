//! The encryption policy, as a pure function from facts about a mail to the copies to
//! send. The facts (who is local, who has which key, what the mail already is) are
//! gathered by `process.rs` from the key store and the account store; keeping the decision
//! free of I/O makes every rule unit-testable.
//!
//! Per recipient:
//!
//! - **Loop**: a mail this gateway already processed passes untouched.
//! - **Local recipient** (served domain): inbound treatment. Encrypted mail is decrypted
//!   when decryption is on and allowed for the recipient and a secret key is held for
//!   them; signed mail is verified likewise. Otherwise it passes; encrypted mail that
//!   cannot be decrypted gets a note saying why. Local mail is never encrypted: the
//!   recipient's key is held here and they read plaintext.
//! - **Outside recipient**: mail that is already encrypted passes. When encryption is on
//!   and allowed for sender and recipient, a recipient with a usable key gets an encrypted
//!   copy (signed by a local sender if signing applies); one without follows the
//!   missing-key policy (plain, reject, hold). Plain copies from a local sender with a
//!   key are signed when signing is on and allowed.
//!
//! Recipients with the same treatment share one copy, except decryption (one copy per
//! recipient: the plaintext opened with Alice's key is Alice's). The encrypted copy goes to
//! exactly the recipients whose keys it is encrypted to.

use crate::access::{self, Party};
use crate::config::{MissingKey, PolicyConfig};

/// What the mail already is, as far as OpenPGP goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PGP/MIME encrypted or inline PGP message.
    Encrypted,
    /// PGP/MIME signed or cleartext-signed.
    Signed,
    /// Nothing OpenPGP.
    Plain,
}

/// Facts about the sender.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    /// Envelope sender and groups.
    pub party: Party,
    /// A local sender per the trust rule (`trust.rs`).
    pub local: bool,
    /// A secret key is held for the sender (so they can sign).
    pub has_secret_key: bool,
}

/// Facts about one recipient.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    /// Address and groups.
    pub party: Party,
    /// In a served domain.
    pub local: bool,
    /// A usable public key (outside recipients).
    pub has_public_key: bool,
    /// A secret key held for them (local recipients).
    pub has_secret_key: bool,
}

/// Everything the decision needs.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The sender.
    pub sender: Sender,
    /// The recipients, in envelope order.
    pub recipients: Vec<Recipient>,
    /// What the mail is.
    pub format: Format,
    /// This gateway processed the mail before (valid trace tag).
    pub looped: bool,
}

/// What is done to one copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Treatment {
    /// Relayed as it came (apart from removing forged trace fields); `note`, if any, goes
    /// into the trace header (why an encrypted mail was not decrypted).
    Pass {
        /// Trace note.
        note: Option<&'static str>,
    },
    /// PGP/MIME encrypted to every recipient's key (and the local sender's), signed if
    /// `sign`.
    Encrypt {
        /// Sign inside the encryption.
        sign: bool,
    },
    /// `multipart/signed` with the sender's key.
    Sign,
    /// Decrypted with the (single) recipient's keys, signatures verified.
    Decrypt,
    /// Signatures verified, mail unchanged but for the trace header.
    Verify,
    /// Kept in quarantine (missing key, policy `hold`), as the plain copy would have been
    /// sent: signed if `sign`.
    Hold {
        /// Sign it (`multipart/signed`) before holding.
        sign: bool,
    },
    /// The whole mail is refused (missing key, policy `reject`).
    Reject,
}

/// One copy: a treatment and the recipients (indexes into [`Facts::recipients`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// What is done.
    pub treatment: Treatment,
    /// To whom it goes.
    pub recipients: Vec<usize>,
}

/// Whether the plan needs the full message (to look for inline PGP, or to transform it).
pub fn needs_content(plan: &[CopyPlan]) -> bool {
    plan.iter()
        .any(|c| !matches!(c.treatment, Treatment::Pass { .. } | Treatment::Reject))
}

/// Decides the copies. Recipients keep envelope order within each copy; copies come in
/// the order of their first recipient.
pub fn plan(cfg: &PolicyConfig, facts: &Facts) -> Vec<CopyPlan> {
    let mut out: Vec<CopyPlan> = Vec::new();
    for (i, r) in facts.recipients.iter().enumerate() {
        let t = treatment(cfg, facts, r);
        let shared = t != Treatment::Decrypt;
        match out.iter_mut().find(|c| shared && c.treatment == t) {
            Some(copy) => copy.recipients.push(i),
            None => out.push(CopyPlan {
                treatment: t,
                recipients: vec![i],
            }),
        }
    }
    out
}

/// The missing-key action for an outside recipient.
pub fn missing_key_action(cfg: &PolicyConfig, recipient: &Party) -> MissingKey {
    cfg.missing_key_rules
        .iter()
        .find(|r| r.recipient.matches(recipient))
        .map_or(cfg.missing_key, |r| r.action)
}

fn treatment(cfg: &PolicyConfig, facts: &Facts, r: &Recipient) -> Treatment {
    if facts.looped {
        return Treatment::Pass { note: None };
    }
    if r.local {
        return inbound(cfg, facts.format, r);
    }
    outbound(cfg, facts, r)
}

fn inbound(cfg: &PolicyConfig, format: Format, r: &Recipient) -> Treatment {
    let allowed =
        cfg.decrypt && access::permitted(&cfg.decrypt_allow, &cfg.decrypt_deny, &[&r.party]);
    match format {
        Format::Plain => Treatment::Pass { note: None },
        Format::Encrypted if allowed && r.has_secret_key => Treatment::Decrypt,
        Format::Encrypted if !allowed => Treatment::Pass {
            note: Some("not-decrypted; reason=policy"),
        },
        Format::Encrypted => Treatment::Pass {
            note: Some("not-decrypted; reason=no-key"),
        },
        Format::Signed if allowed => Treatment::Verify,
        Format::Signed => Treatment::Pass { note: None },
    }
}

fn outbound(cfg: &PolicyConfig, facts: &Facts, r: &Recipient) -> Treatment {
    let s = &facts.sender;
    if facts.format == Format::Encrypted {
        return Treatment::Pass { note: None };
    }
    let sender_allowed = access::permitted(&cfg.encrypt_allow, &cfg.encrypt_deny, &[&s.party]);
    let sign =
        cfg.sign && s.local && s.has_secret_key && sender_allowed && facts.format == Format::Plain;
    let encrypt_allowed = cfg.encrypt
        && access::permitted(&cfg.encrypt_allow, &cfg.encrypt_deny, &[&s.party, &r.party]);
    let plain = || match sign {
        true => Treatment::Sign,
        false => Treatment::Pass { note: None },
    };
    if !encrypt_allowed {
        return plain();
    }
    if r.has_public_key {
        return Treatment::Encrypt { sign };
    }
    match missing_key_action(cfg, &r.party) {
        MissingKey::Plain => plain(),
        MissingKey::Reject => Treatment::Reject,
        MissingKey::Hold => Treatment::Hold { sign },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MissingKeyRule;

    fn sender(addr: &str, local: bool, key: bool) -> Sender {
        Sender {
            party: Party::new(addr),
            local,
            has_secret_key: key,
        }
    }

    fn outside(addr: &str, key: bool) -> Recipient {
        Recipient {
            party: Party::new(addr),
            local: false,
            has_public_key: key,
            has_secret_key: false,
        }
    }

    fn local(addr: &str, key: bool) -> Recipient {
        Recipient {
            party: Party::new(addr),
            local: true,
            has_public_key: key,
            has_secret_key: key,
        }
    }

    fn facts(sender: Sender, recipients: Vec<Recipient>, format: Format) -> Facts {
        Facts {
            sender,
            recipients,
            format,
            looped: false,
        }
    }

    fn t(plan: &[CopyPlan]) -> Vec<(Treatment, Vec<usize>)> {
        plan.iter()
            .map(|c| (c.treatment.clone(), c.recipients.clone()))
            .collect()
    }

    #[test]
    fn keyed_and_keyless_recipients_get_separate_copies() {
        let cfg = PolicyConfig::default();
        let f = facts(
            sender("alice@example.org", true, true),
            vec![
                outside("bob@partner.example", true),
                outside("nokey@other.example", false),
                outside("carol@partner.example", true),
            ],
            Format::Plain,
        );
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![
                (Treatment::Encrypt { sign: true }, vec![0, 2]),
                (Treatment::Sign, vec![1]),
            ]
        );
        // Without a sender key there is no signing, and the keyless copy passes.
        let f = facts(
            sender("alice@example.org", true, false),
            f.recipients,
            Format::Plain,
        );
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![
                (Treatment::Encrypt { sign: false }, vec![0, 2]),
                (Treatment::Pass { note: None }, vec![1]),
            ]
        );
    }

    #[test]
    fn outside_sender_is_encrypted_to_but_never_signed() {
        let cfg = PolicyConfig::default();
        let f = facts(
            sender("eve@example.org", false, true),
            vec![
                outside("bob@partner.example", true),
                outside("x@y.example", false),
            ],
            Format::Plain,
        );
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![
                (Treatment::Encrypt { sign: false }, vec![0]),
                (Treatment::Pass { note: None }, vec![1]),
            ]
        );
    }

    #[test]
    fn inbound_decrypts_per_recipient_and_explains_what_it_cannot() {
        let cfg = PolicyConfig::default();
        let f = facts(
            sender("bob@partner.example", false, false),
            vec![
                local("alice@example.org", true),
                local("dave@example.org", true),
                local("nokey@example.org", false),
            ],
            Format::Encrypted,
        );
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![
                (Treatment::Decrypt, vec![0]),
                (Treatment::Decrypt, vec![1]),
                (
                    Treatment::Pass {
                        note: Some("not-decrypted; reason=no-key")
                    },
                    vec![2]
                ),
            ]
        );
        let signed = facts(f.sender.clone(), f.recipients.clone(), Format::Signed);
        assert_eq!(
            t(&plan(&cfg, &signed)),
            vec![(Treatment::Verify, vec![0, 1, 2])]
        );
        let plain = facts(f.sender.clone(), f.recipients.clone(), Format::Plain);
        assert_eq!(
            t(&plan(&cfg, &plain)),
            vec![(Treatment::Pass { note: None }, vec![0, 1, 2])]
        );
    }

    #[test]
    fn missing_key_rules_and_lists() {
        let mut cfg = PolicyConfig {
            missing_key: MissingKey::Hold,
            ..PolicyConfig::default()
        };
        cfg.missing_key_rules.push(MissingKeyRule {
            recipient: "bank.example".parse().unwrap(),
            action: MissingKey::Reject,
        });
        cfg.missing_key_rules.push(MissingKeyRule {
            recipient: "friend@bank.example".parse().unwrap(),
            action: MissingKey::Plain,
        });
        let f = facts(
            sender("alice@example.org", true, false),
            vec![
                outside("x@bank.example", false),
                outside("y@other.example", false),
                outside("friend@bank.example", false),
            ],
            Format::Plain,
        );
        assert_eq!(
            t(&plan(&cfg, &f)),
            // First match wins: `bank.example` comes before the friend's own rule.
            vec![
                (Treatment::Reject, vec![0, 2]),
                (Treatment::Hold { sign: false }, vec![1])
            ]
        );

        // encrypt_deny on the recipient's domain: no encryption, no missing-key action.
        let cfg = PolicyConfig {
            encrypt_deny: vec!["partner.example".parse().unwrap()],
            missing_key: MissingKey::Reject,
            ..PolicyConfig::default()
        };
        let f = facts(
            sender("alice@example.org", true, false),
            vec![outside("bob@partner.example", true)],
            Format::Plain,
        );
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![(Treatment::Pass { note: None }, vec![0])]
        );

        // decrypt_allow by group.
        let cfg = PolicyConfig {
            decrypt_allow: vec!["@legal".parse().unwrap()],
            ..PolicyConfig::default()
        };
        let mut lawyer = local("lawyer@example.org", true);
        lawyer.party.groups.push("legal".into());
        let f = facts(
            sender("bob@partner.example", false, false),
            vec![lawyer, local("clerk@example.org", true)],
            Format::Encrypted,
        );
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![
                (Treatment::Decrypt, vec![0]),
                (
                    Treatment::Pass {
                        note: Some("not-decrypted; reason=policy")
                    },
                    vec![1]
                ),
            ]
        );
    }

    #[test]
    fn loops_and_client_encrypted_mail_pass_untouched() {
        let cfg = PolicyConfig::default();
        let mut f = facts(
            sender("alice@example.org", true, true),
            vec![
                outside("bob@partner.example", true),
                local("dave@example.org", true),
            ],
            Format::Plain,
        );
        f.looped = true;
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![(Treatment::Pass { note: None }, vec![0, 1])]
        );
        assert!(!needs_content(&plan(&cfg, &f)));
        f.looped = false;
        f.format = Format::Encrypted;
        assert_eq!(
            t(&plan(&cfg, &f)),
            vec![
                (Treatment::Pass { note: None }, vec![0]),
                (Treatment::Decrypt, vec![1]),
            ]
        );
        // Signed mail to the outside is encrypted (the signature stays inside), not re-signed.
        f.format = Format::Signed;
        assert_eq!(
            t(&plan(&cfg, &f))[0],
            (Treatment::Encrypt { sign: false }, vec![0])
        );
    }
}
