//! RFC 6120 §4.9.1.2: an error in the client's stream header is answered with our own header,
//! the stream error and the footer. tokio-xmpp's `accept_stream` refuses a bad header by
//! closing the connection without a word, so the header is checked here first, on the bytes
//! the connection's [`super::io::Io`] holds before the XML layer reads them (nothing is
//! consumed). A few dozen lines of scanning for the one element whose errors must be
//! answered this way; everything after it is parsed by rxml as before.

use xmpp_parsers::stream_error::DefinedCondition;

const STREAMS: &str = "http://etherx.jabber.org/streams";
const CLIENT: &str = "jabber:client";

/// What the bytes received so far say about the stream header.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Not complete yet: read more.
    Incomplete,
    /// A header this server accepts (the XML layer reads it again).
    Fine,
    /// Refuse with this condition and text.
    Refuse(DefinedCondition, &'static str),
}

/// Checks the stream header at the start of `bytes` (after whitespace and an optional XML
/// declaration).
pub fn check(bytes: &[u8]) -> Verdict {
    let mut rest = trim_start(bytes);
    if rest.starts_with(b"<?") {
        let Some(end) = find(rest, b"?>") else {
            return incomplete_or_garbage(rest, b"<?xml");
        };
        rest = trim_start(&rest[end + 2..]);
    }
    if rest.is_empty() {
        return Verdict::Incomplete;
    }
    if rest[0] != b'<' {
        return Verdict::Refuse(DefinedCondition::NotWellFormed, "Not an XML stream");
    }
    let end = match tag_end(rest) {
        Ok(Some(end)) => end,
        Ok(None) => return Verdict::Incomplete,
        Err(()) => {
            return Verdict::Refuse(DefinedCondition::NotWellFormed, "Malformed stream header");
        }
    };
    let Ok(tag) = std::str::from_utf8(&rest[1..end]) else {
        return Verdict::Refuse(
            DefinedCondition::NotWellFormed,
            "Stream header is not UTF-8",
        );
    };
    let tag = tag.trim_end_matches('/');
    let name_end = tag
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(tag.len());
    let (name, attrs) = tag.split_at(name_end);
    let Some(attrs) = attributes(attrs) else {
        return Verdict::Refuse(DefinedCondition::NotWellFormed, "Malformed stream header");
    };
    let attr = |n: &str| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    let (prefix, local) = name.split_once(':').map_or(("", name), |(p, l)| (p, l));
    let ns = if prefix.is_empty() {
        attr("xmlns")
    } else {
        match attr(&format!("xmlns:{prefix}")) {
            Some(ns) => Some(ns),
            None => {
                return Verdict::Refuse(
                    DefinedCondition::BadNamespacePrefix,
                    "The stream element's prefix is not bound",
                );
            }
        }
    };
    if local != "stream" || ns != Some(STREAMS) {
        return Verdict::Refuse(
            DefinedCondition::InvalidNamespace,
            "Expected <stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
        );
    }
    if attr("xmlns") != Some(CLIENT) {
        return Verdict::Refuse(
            DefinedCondition::InvalidNamespace,
            "The content namespace must be jabber:client",
        );
    }
    let major = attr("version").and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    if major != Some(1) {
        return Verdict::Refuse(
            DefinedCondition::UnsupportedVersion,
            "XMPP 1.0 is required (version='1.0')",
        );
    }
    Verdict::Fine
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[n..]
}

/// Where `needle` first stands in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A declaration still arriving is incomplete; anything else starting with `<?` is garbage.
fn incomplete_or_garbage(rest: &[u8], expected: &[u8]) -> Verdict {
    let n = rest.len().min(expected.len());
    let control = rest
        .iter()
        .any(|c| *c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n'));
    if rest[..n].eq_ignore_ascii_case(&expected[..n]) && rest.len() < 256 && !control {
        Verdict::Incomplete
    } else {
        Verdict::Refuse(DefinedCondition::NotWellFormed, "Malformed XML declaration")
    }
}

/// The index of the `>` closing the tag that starts `b`, outside quoted values; `Err` at a
/// byte no tag can hold (a control character, or `<` where a tag cannot have one), so that
/// garbage is refused at once rather than waited on.
fn tag_end(b: &[u8]) -> Result<Option<usize>, ()> {
    let mut quote = None;
    for (i, c) in b.iter().enumerate().skip(1) {
        if *c < 0x20 && !matches!(c, b'\t' | b'\r' | b'\n') {
            return Err(());
        }
        match (quote, c) {
            (None, b'\'' | b'"') => quote = Some(*c),
            (Some(q), c) if q == *c => quote = None,
            (_, b'<') => return Err(()),
            (None, b'>') => return Ok(Some(i)),
            _ => {}
        }
    }
    Ok(None)
}

/// `name='value'` pairs (either quote); `None` when they do not parse.
fn attributes(mut s: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim();
        let value = s[eq + 1..].trim_start();
        let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let end = value[1..].find(quote)? + 1;
        out.push((name, &value[1..end]));
        s = &value[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' \
                        xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    #[test]
    fn a_proper_header_passes_whole_and_is_incomplete_in_pieces() {
        assert_eq!(check(GOOD.as_bytes()), Verdict::Fine);
        assert_eq!(
            check(format!("\n  {GOOD}<starttls/>").as_bytes()),
            Verdict::Fine
        );
        for cut in 0..GOOD.len() {
            assert_eq!(check(&GOOD.as_bytes()[..cut]), Verdict::Incomplete, "{cut}");
        }
        let other_prefix = "<s:stream xmlns:s='http://etherx.jabber.org/streams' \
                            xmlns=\"jabber:client\" version=\"1.0\">";
        assert_eq!(check(other_prefix.as_bytes()), Verdict::Fine);
    }

    #[test]
    fn bad_headers_get_the_condition_rfc_6120_names() {
        let cond = |h: &str| match check(h.as_bytes()) {
            Verdict::Refuse(c, _) => Some(c),
            _ => None,
        };
        assert_eq!(
            cond("\x16\x03\x01 garbage"),
            Some(DefinedCondition::NotWellFormed)
        );
        assert_eq!(
            cond("<stream:stream xmlns='jabber:client' version='1.0'>"),
            Some(DefinedCondition::BadNamespacePrefix)
        );
        assert_eq!(
            cond("<stream:stream xmlns:stream='urn:nope' xmlns='jabber:client' version='1.0'>"),
            Some(DefinedCondition::InvalidNamespace)
        );
        assert_eq!(
            cond(
                "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' version='1.0'>"
            ),
            Some(DefinedCondition::InvalidNamespace)
        );
        assert_eq!(
            cond(
                "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
            ),
            Some(DefinedCondition::UnsupportedVersion)
        );
        assert_eq!(
            cond(
                "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' version='2.0'>"
            ),
            Some(DefinedCondition::UnsupportedVersion)
        );
        assert_eq!(
            cond("<stream:stream version=1.0>"),
            Some(DefinedCondition::NotWellFormed)
        );
    }
}
