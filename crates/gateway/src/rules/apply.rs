//! Turning an [`Outcome`] into changes to one mail: the policy it is planned with, its
//! header block, and the notes it sends. Pure functions; `process.rs` does the I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Outcome, RenderedNote};
use crate::config::PolicyConfig;
use crate::header;
use crate::trace::TraceKey;

/// The policy for this mail: the configured one with what the rules turned on.
pub fn policy(base: &PolicyConfig, outcome: &Outcome) -> PolicyConfig {
    let mut p = base.clone();
    p.encrypt |= outcome.encrypt;
    p.sign |= outcome.sign;
    p.decrypt |= outcome.decrypt;
    p
}

/// The header block with the rules' removals, then their additions (at the end, CRLF).
pub fn edit_header(block: &[u8], outcome: &Outcome) -> Vec<u8> {
    let mut out = header::without(block, |f| outcome.remove_headers.iter().any(|n| f.is(n)));
    for field in &outcome.add_headers {
        out.extend_from_slice(field.trim_end().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A note as a whole mail from the gateway. It carries our trace field, so when the MTA
/// hands it back to us it passes untouched (no rule can answer a note with a note).
pub fn note_message(note: &RenderedNote, hostname: &str, trace: &TraceKey) -> Vec<u8> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let message_id = format!(
        "<note.{now:x}.{}@{hostname}>",
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut out = trace.field("note", &message_id).into_bytes();
    let subject = note.subject.replace(['\r', '\n'], " ");
    let body = note.body.replace("\r\n", "\n").replace('\n', "\r\n");
    out.extend_from_slice(
        format!(
            "From: Postern mail gateway <postmaster@{hostname}>\r\n\
             To: <{}>\r\n\
             Subject: {subject}\r\n\
             Message-ID: {message_id}\r\n\
             Auto-Submitted: auto-generated\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n\
             {body}\r\n",
            note.to
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_edits_remove_then_add() {
        let o = Outcome {
            add_headers: vec!["X-Class: secret".into()],
            remove_headers: vec!["x-mailer".into()],
            ..Outcome::default()
        };
        let block = b"From: a@b\r\nX-Mailer: Foo\r\n  continued\r\nSubject: s\r\n";
        assert_eq!(
            edit_header(block, &o),
            b"From: a@b\r\nSubject: s\r\nX-Class: secret\r\n".to_vec()
        );
    }

    #[test]
    fn rules_only_turn_operations_on() {
        let base = PolicyConfig {
            encrypt: false,
            sign: false,
            ..PolicyConfig::default()
        };
        let o = Outcome {
            encrypt: true,
            ..Outcome::default()
        };
        let p = policy(&base, &o);
        assert!(p.encrypt && !p.sign && p.decrypt);
    }

    #[test]
    fn notes_are_complete_mails_with_our_trace_field() {
        let key = TraceKey::derive(b"0123456789abcdef0123456789abcdef");
        let note = RenderedNote {
            to: "alice@example.org".into(),
            subject: "Not sent".into(),
            body: "line 1\nline 2".into(),
        };
        let m = note_message(&note, "mx.example.org", &key);
        let text = String::from_utf8(m.clone()).expect("utf-8");
        assert!(text.starts_with("X-Postern-PGP: note"), "{text}");
        assert!(text.contains("To: <alice@example.org>\r\nSubject: Not sent\r\n"));
        assert!(text.ends_with("\r\n\r\nline 1\r\nline 2\r\n"));
        let block = header::parse(&m).fields;
        assert!(crate::trace::inspect(&key, &block).ours);
    }
}
