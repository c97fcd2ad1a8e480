//! The `X-Postern-PGP` trace header and loop protection.
//!
//! Every mail the gateway changes gets one field saying what was done
//! (`encrypted`, `signed`, `decrypted`, `verified`, `not-decrypted`...) and, for inbound
//! mail, the signature verdict. The field ends with a `tag`: an HMAC over the value and
//! the Message-ID under a key derived from the server key. A field with a valid tag proves
//! that this gateway already processed the mail (a loop: it passes untouched); a field
//! without one was written by somebody else — possibly to fake a "signature good" mark —
//! and is removed before the mail goes on.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::header;

/// The field name.
pub const FIELD: &str = "X-Postern-PGP";

/// Bytes of HMAC kept in the tag (128 bits: forging is out of reach, the field stays short).
const TAG_LEN: usize = 16;

/// Key for the tags; derived from the server key so every node of a cluster agrees.
#[derive(Clone)]
pub struct TraceKey([u8; 32]);

impl std::fmt::Debug for TraceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceKey(<redacted>)")
    }
}

impl TraceKey {
    /// Derives the tag key from the server key's bytes.
    pub fn derive(server_key: &[u8]) -> Self {
        let mut mac = mac(server_key);
        mac.update(b"postern trace tag v1");
        TraceKey(mac.finalize().into_bytes().into())
    }

    fn tag(&self, value: &str, message_id: &str) -> String {
        let mut mac = mac(&self.0);
        mac.update(value.as_bytes());
        mac.update(b"\0");
        mac.update(message_id.trim().as_bytes());
        let bytes = mac.finalize().into_bytes();
        B64.encode(&bytes[..TAG_LEN])
    }

    /// The complete field, CRLF-terminated: `X-Postern-PGP: <value>; tag=<tag>`.
    pub fn field(&self, value: &str, message_id: &str) -> String {
        let value = sanitize(value);
        format!("{FIELD}: {value}; tag={}\r\n", self.tag(&value, message_id))
    }

    /// Whether a field value (as unfolded by [`header::Field::value`]) carries our tag.
    pub fn is_ours(&self, field_value: &str, message_id: &str) -> bool {
        let Some((value, tag)) = field_value.rsplit_once("; tag=") else {
            return false;
        };
        let expected = self.tag(value, message_id);
        // Constant-time comparison via the MAC library is overkill for a public tag over
        // public data, but equal lengths and a full scan cost nothing.
        expected.len() == tag.len()
            && expected
                .bytes()
                .zip(tag.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// What the header block says about earlier passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// A field with our valid tag: the mail was processed here already.
    pub ours: bool,
    /// Fields without a valid tag (to be removed).
    pub forged: usize,
}

/// Looks at the `X-Postern-PGP` fields of a header block.
pub fn inspect(key: &TraceKey, block: &[u8]) -> Seen {
    let message_id = header::first_value(block, "message-id").unwrap_or_default();
    let mut seen = Seen::default();
    for f in header::fields(block).iter().filter(|f| f.is(FIELD)) {
        if key.is_ours(&f.value(), &message_id) {
            seen.ours = true;
        } else {
            seen.forged += 1;
        }
    }
    seen
}

/// The header block without the `X-Postern-PGP` fields we did not write (ours stay, so a
/// later pass still recognises the loop).
pub fn strip_forged(key: &TraceKey, block: &[u8]) -> Vec<u8> {
    let message_id = header::first_value(block, "message-id").unwrap_or_default();
    header::without(block, |f| {
        f.is(FIELD) && !key.is_ours(&f.value(), &message_id)
    })
}

/// Keeps a value on one line and free of our separator.
fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace("; tag=", "; tag:")
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_tag_is_recognised_and_forgeries_are_not() {
        let key = TraceKey::derive(b"0123456789abcdef0123456789abcdef");
        let other = TraceKey::derive(b"another server key, 32 bytes long");
        let field = key.field("decrypted; signature=good", "<1@x>");
        assert!(field.starts_with("X-Postern-PGP: decrypted; signature=good; tag="));
        let block = format!("Message-ID: <1@x>\r\n{field}Subject: s\r\n");
        assert_eq!(
            inspect(&key, block.as_bytes()),
            Seen {
                ours: true,
                forged: 0
            }
        );
        assert_eq!(
            inspect(&other, block.as_bytes()),
            Seen {
                ours: false,
                forged: 1
            }
        );
        // Same field on another message: not ours (bound to the Message-ID).
        let moved = format!("Message-ID: <2@x>\r\n{field}");
        assert!(!inspect(&key, moved.as_bytes()).ours);
        // A changed verdict with the old tag is a forgery.
        let edited = block.replace("good", "bad!");
        assert_eq!(inspect(&key, edited.as_bytes()).forged, 1);
        assert_eq!(strip_forged(&key, block.as_bytes()), block.as_bytes());
        assert_eq!(
            strip_forged(&other, block.as_bytes()),
            b"Message-ID: <1@x>\r\nSubject: s\r\n"
        );
        let f = key.field("a\r\nB: c; tag=x", "");
        assert!(
            !f.trim_end().contains('\n') && f.matches("; tag=").count() == 1,
            "{f}"
        );
    }
}
