//! mail-parser, bounded: every place that decodes a mail goes through [`parse`].
//!
//! mail-parser parses multipart trees iteratively into a flat part list, but each nested
//! `message/rfc822` (or `message/global`, or a child of `multipart/digest`) becomes a
//! `Message` inside its parent's part, and both `Drop` and the `into_owned` it runs on
//! encoded nested messages recurse once per level. A chain of 20,000 forwarded messages
//! (600 KB) would overflow a worker's stack and abort the process. So before mail-parser
//! sees a mail, [`nesting_bound`] computes an upper bound of that nesting from the bytes; a
//! mail over [`MAX_MESSAGE_NESTING`] is not decoded at all (callers treat it as opaque and
//! relay it unchanged), and the parsed tree is dismantled iteratively on drop.
//!
//! Multipart nesting alone is not limited here: it is flat in mail-parser (20,000 levels
//! are parsed and relayed; `crates/gateway/tests/deep_mime.rs` says so).

use std::borrow::Cow;
use std::ops::Deref;

use mail_parser::{Message, MessageParser, PartType};

/// Nested messages a mail may contain and still be decoded. Real mail forwards a handful.
pub const MAX_MESSAGE_NESTING: usize = 64;

/// mail-parser decodes base64/quoted-printable `message/*` parts this many levels deep.
const ENCODED_LEVELS: usize = 3;

/// A parsed mail whose nested messages are dropped one level at a time.
pub struct Mail<'x>(Message<'x>);

impl<'x> Deref for Mail<'x> {
    type Target = Message<'x>;

    fn deref(&self) -> &Message<'x> {
        &self.0
    }
}

impl Drop for Mail<'_> {
    fn drop(&mut self) {
        let mut pending = vec![std::mem::take(&mut self.0.parts)];
        while let Some(mut parts) = pending.pop() {
            for part in &mut parts {
                if let PartType::Message(nested) = &mut part.body {
                    pending.push(std::mem::take(&mut nested.parts));
                }
            }
            // `parts` goes here with its nested messages emptied: one level deep.
        }
    }
}

/// Parses `raw` with mail-parser, unless it nests messages deeper than
/// [`MAX_MESSAGE_NESTING`] (then `None`, as for a mail mail-parser cannot read).
pub fn parse(raw: &[u8]) -> Option<Mail<'_>> {
    if nesting_bound(raw, MAX_MESSAGE_NESTING).is_none() {
        tracing::warn!(
            limit = MAX_MESSAGE_NESTING,
            "mail nests messages too deeply to decode; treated as opaque"
        );
        return None;
    }
    MessageParser::default().parse(raw).map(Mail)
}

/// An upper bound of how deeply mail-parser would nest messages in `raw`, or `None` when it
/// exceeds `limit`.
///
/// Every nested message needs its own `message/…` content type or a `multipart/digest`
/// parent, whose type token must be written out literally (tokens are never encoded), so
/// the count of those tokens bounds the nesting of what is written in the clear. What
/// mail-parser decodes first (a base64 or quoted-printable `message/*` part, against RFC
/// 2046 §5.2.1 but accepted) is decoded here too and counted the same way.
pub fn nesting_bound(raw: &[u8], limit: usize) -> Option<usize> {
    let mut total = 0usize;
    let mut pending: Vec<(Cow<'_, [u8]>, usize)> = vec![(Cow::Borrowed(raw), 0)];
    while let Some((bytes, level)) = pending.pop() {
        for token in type_tokens(&bytes) {
            total += 1;
            if total > limit {
                return None;
            }
            if token.message
                && level < ENCODED_LEVELS
                && let Some(decoded) = encoded_body(&bytes, token.at)
            {
                pending.push((Cow::Owned(decoded), level + 1));
            }
        }
    }
    Some(total)
}

/// A `message /` or `digest` token, case-insensitive, at byte `at`.
struct Token {
    at: usize,
    message: bool,
}

fn type_tokens(bytes: &[u8]) -> impl Iterator<Item = Token> + '_ {
    let messages = ascii_case_insensitive(bytes, b"message").filter_map(move |at| {
        // `message/rfc822`, `message / rfc822`, `message(comment)/rfc822`.
        let rest = bytes[at + 7..]
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        matches!(rest, Some(b'/' | b'(')).then_some(Token { at, message: true })
    });
    let digests = ascii_case_insensitive(bytes, b"digest").map(|at| Token { at, message: false });
    messages.chain(digests)
}

/// Offsets of `needle` (lower-case ASCII) in `hay`, ignoring ASCII case; candidates are
/// found with memchr on the first byte in both cases.
fn ascii_case_insensitive<'a>(
    hay: &'a [u8],
    needle: &'static [u8],
) -> impl Iterator<Item = usize> + 'a {
    let first = needle[0];
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), hay).filter(move |&i| {
        hay.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// When the type token at `at` sits in a header block that also says
/// `Content-Transfer-Encoding: base64` or `quoted-printable`, the decoded body after that
/// block (base64: the lines that are base64; quoted-printable: up to a line starting with
/// `--`, where a boundary would be).
fn encoded_body(bytes: &[u8], at: usize) -> Option<Vec<u8>> {
    let start = block_start(bytes, at);
    let (header, body) = split_at_blank_line(&bytes[start..])?;
    let encoding = crate::mime::fields(header)
        .into_iter()
        .find(|f| f.is("content-transfer-encoding"))?
        .value()
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => {
            let end = lines(body)
                .find(|line| {
                    !line.iter().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n' | b' ' | b'\t')
                    })
                })
                .map_or(body.len(), |line| {
                    line.as_ptr() as usize - body.as_ptr() as usize
                });
            mail_parser::decoders::base64::base64_decode(&body[..end])
        }
        "quoted-printable" => {
            let end = lines(body)
                .find(|line| line.starts_with(b"--"))
                .map_or(body.len(), |line| {
                    line.as_ptr() as usize - body.as_ptr() as usize
                });
            mail_parser::decoders::quoted_printable::quoted_printable_decode(&body[..end])
        }
        _ => None,
    }
}

/// Where the header block holding byte `at` begins: after the previous blank line.
fn block_start(bytes: &[u8], at: usize) -> usize {
    let before = &bytes[..at];
    let lf_lf = memchr::memmem::rfind(before, b"\n\n").map(|i| i + 2);
    let crlf_crlf = memchr::memmem::rfind(before, b"\n\r\n").map(|i| i + 3);
    lf_lf.max(crlf_crlf).unwrap_or(0)
}

fn split_at_blank_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let entity = crate::mime::split(bytes);
    (!entity.body.is_empty()).then_some((entity.header, entity.body))
}

/// Lines with their line endings.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc822_chain(levels: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..levels {
            out.extend_from_slice(
                format!("Subject: level {i}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
            );
        }
        out.extend_from_slice(b"Subject: inner\r\n\r\nhello\r\n");
        out
    }

    #[test]
    fn a_plain_message_has_no_nesting_and_a_forward_has_one() {
        let plain = b"From: a@b\r\nSubject: a message about messages/\r\n\r\nmessage text\r\n";
        // "messages/" is no type token; one is counted only if it could be one.
        assert_eq!(nesting_bound(plain, 64), Some(0));
        let forward = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: text/plain\r\n\r\nsee below\r\n--b\r\n\
            Content-Type: Message/RFC822\r\n\r\nSubject: old\r\n\r\nold text\r\n--b--\r\n";
        assert_eq!(nesting_bound(forward, 64), Some(1));
        assert!(parse(forward).is_some());
    }

    #[test]
    fn a_deep_chain_is_over_the_bound_and_not_parsed() {
        let chain = rfc822_chain(20_000);
        assert_eq!(nesting_bound(&chain, MAX_MESSAGE_NESTING), None);
        assert!(parse(&chain).is_none());
        let ok = rfc822_chain(MAX_MESSAGE_NESTING);
        let parsed = parse(&ok).expect("within the bound");
        assert!(matches!(parsed.parts[0].body, PartType::Message(_)));
    }

    #[test]
    fn digests_and_encoded_nested_messages_count_too() {
        let digest = "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n".repeat(100);
        assert_eq!(nesting_bound(digest.as_bytes(), 64), None);
        // A chain hidden in base64 (and that inside quoted-printable): decoded and counted.
        let chain = rfc822_chain(100);
        let b64 = base64_lines(&chain);
        let mut mail = b"Subject: x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        mail.extend_from_slice(&b64);
        assert_eq!(nesting_bound(&mail, 64), None);
        assert_eq!(nesting_bound(&mail, 1000), Some(101));
        let mut qp =
            b"Content-Type: message/global\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                .to_vec();
        qp.extend_from_slice(
            &String::from_utf8_lossy(&mail)
                .replace('=', "=3D")
                .into_bytes(),
        );
        // Counted in the clear and decoded: an upper bound, not the exact depth.
        assert_eq!(nesting_bound(&qp, 64), None);
        assert!(nesting_bound(&qp, 1000).is_some_and(|n| n >= 102));
    }

    #[test]
    fn a_parsed_deep_tree_drops_without_recursion() {
        // Within a bound raised for the test, on a thread with a small stack: the recursive
        // drop of mail-parser's tree would overflow it.
        let chain = rfc822_chain(5_000);
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let parsed = MessageParser::default().parse(&chain[..]).map(Mail);
                assert!(parsed.is_some());
                drop(parsed);
            })
            .expect("thread");
        handle
            .join()
            .expect("dropped without overflowing the stack");
    }

    fn base64_lines(data: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(76) {
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}
