//! Key requests: a mail to a local user whose Subject contains the configured token
//! (`[pgp-key-request]`) is answered with that user's public key, as MDPGP does. The
//! request itself is delivered as usual; the answer is one more copy in the same relay
//! transaction (so `250` still covers it), from the null sender with `Auto-Submitted:
//! auto-replied` and our trace field (RFC 3834: no answers to automatic mail, and the
//! answer passes untouched when the MTA hands it back).
//!
//! Answers are rate-limited per requesting address (a fixed window), so the gateway cannot
//! be used to mail-bomb a forged sender.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::header;
use crate::trace::TraceKey;

/// Answers given per sender in the current window.
#[derive(Debug, Default)]
pub struct Limiter {
    /// Sender → (window start, answers in it).
    seen: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// Counts one answer to `sender` if the limit allows it; `false`: over the limit.
    pub fn allow(&self, sender: &str, per_window: u32, window: Duration) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let now = Instant::now();
        // Bounded memory: forget windows that ended.
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = seen.entry(sender.to_lowercase()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        if entry.1 >= per_window {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// Whether the mail asks for keys: the token in the Subject (case-insensitive), a real
/// sender, and not automatic mail (RFC 3834 `Auto-Submitted` other than `no`).
pub fn is_request(block: &[u8], envelope_from: &str, token: &str) -> bool {
    if envelope_from.is_empty() || token.is_empty() {
        return false;
    }
    let auto = header::first_value(block, "auto-submitted")
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"));
    let subject = header::first_value(block, "subject").unwrap_or_default();
    !auto && subject.to_lowercase().contains(&token.to_lowercase())
}

/// The answer: a text part and the armored key as `application/pgp-keys`.
pub fn answer(owner: &str, requester: &str, armored_key: &str, trace: &TraceKey) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let domain = owner.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let message_id = format!("<keyreply.{now:x}@{domain}>");
    let boundary = format!("postern-key-{now:x}");
    let key = armored_key.replace("\r\n", "\n").replace('\n', "\r\n");
    let mut out = trace.field("key-request-answer", &message_id).into_bytes();
    out.extend_from_slice(
        format!(
            "From: <{owner}>\r\n\
             To: <{requester}>\r\n\
             Subject: OpenPGP key of {owner}\r\n\
             Message-ID: {message_id}\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n\
             Attached is the OpenPGP public key of {owner}, as you asked.\r\n\
             --{boundary}\r\n\
             Content-Type: application/pgp-keys; name=\"key.asc\"\r\n\
             Content-Disposition: attachment; filename=\"key.asc\"\r\n\r\n\
             {key}\r\n\
             --{boundary}--\r\n"
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_the_token_a_sender_and_a_human() {
        let t = "[pgp-key-request]";
        let b = b"Subject: Re: [PGP-Key-Request] please\r\n";
        assert!(is_request(b, "bob@partner.example", t));
        assert!(!is_request(b, "", t));
        assert!(!is_request(b"Subject: hello\r\n", "bob@partner.example", t));
        let auto = b"Subject: [pgp-key-request]\r\nAuto-Submitted: auto-replied\r\n";
        assert!(!is_request(auto, "bob@partner.example", t));
        let human = b"Subject: [pgp-key-request]\r\nAuto-Submitted: no\r\n";
        assert!(is_request(human, "bob@partner.example", t));
    }

    #[test]
    fn the_limit_is_per_sender_and_per_window() {
        let l = Limiter::default();
        let w = Duration::from_secs(3600);
        assert!(l.allow("Bob@x", 2, w));
        assert!(l.allow("bob@x", 2, w));
        assert!(!l.allow("bob@x", 2, w));
        assert!(l.allow("carol@x", 2, w));
        assert!(l.allow("bob@x", 2, Duration::ZERO), "a new window");
    }

    #[test]
    fn answers_carry_the_key_and_our_trace_field() {
        let key = TraceKey::derive(b"0123456789abcdef0123456789abcdef");
        let m = answer(
            "alice@example.org",
            "bob@x",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n",
            &key,
        );
        let block = header::parse(&m).fields;
        assert!(crate::trace::inspect(&key, &block).ours);
        let parts = crate::attached_keys::key_parts(&m);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\r\nabc"));
    }
}
