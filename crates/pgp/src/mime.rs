//! Minimal byte-exact MIME handling: header fields, Content-Type parameters,
//! multipart splitting, CRLF canonicalization.
//!
//! Why our own and not only mail-parser: RFC 3156 signatures cover the exact bytes
//! of a body part, and rewriting a message must leave every header line and every
//! attachment byte we do not touch as it was. This module never decodes, it only
//! finds boundaries; mail-parser is used where decoding is needed (inline PGP).

use std::borrow::Cow;

use crate::error::{PgpError, Result};

/// A header block and the body after the blank line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entity<'a> {
    /// Header fields, each with its own line ending; excludes the blank line.
    pub header: &'a [u8],
    /// Everything after the blank line (may be empty).
    pub body: &'a [u8],
    /// The line ending the entity uses (`\r\n` or `\n`), for lines we add.
    pub eol: &'static [u8],
}

/// Splits an entity at its first empty line. An entity without an empty line is
/// all header (RFC 5322 allows no body). A leading empty line means no header.
pub(crate) fn split(raw: &[u8]) -> Entity<'_> {
    let eol: &'static [u8] = match raw.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && raw[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    };
    let mut start = 0;
    while start < raw.len() {
        let end = raw[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| start + i + 1);
        let line = &raw[start..end];
        if line == b"\r\n" || line == b"\n" {
            return Entity {
                header: &raw[..start],
                body: &raw[end..],
                eol,
            };
        }
        start = end;
    }
    Entity {
        header: raw,
        body: &[],
        eol,
    }
}

/// One header field, folded continuation lines included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    /// The name as written (compare case-insensitively).
    pub name: &'a str,
    /// The whole field, name to final line ending.
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The unfolded, trimmed value (lossy UTF-8: only used for structured fields).
    pub fn value(&self) -> String {
        let after = self
            .raw
            .iter()
            .position(|&b| b == b':')
            .map_or(&[][..], |i| &self.raw[i + 1..]);
        let unfolded: Vec<u8> = after
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        String::from_utf8_lossy(&unfolded).trim().to_owned()
    }

    /// Content-* fields describe the body and travel with it into a signed or
    /// encrypted part.
    pub fn is_content(&self) -> bool {
        self.name.len() > 8 && self.name[..8].eq_ignore_ascii_case("content-")
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Splits a header block into fields. A line that is neither a field nor a
/// continuation is kept as a nameless field so nothing is dropped.
pub(crate) fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    let mut field_start = 0;
    while start < header.len() {
        let end = header[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |i| start + i + 1);
        let continuation = matches!(header[start], b' ' | b'\t') && start > 0;
        if !continuation && start > field_start {
            out.push(field(&header[field_start..start]));
            field_start = start;
        }
        start = end;
    }
    if header.len() > field_start {
        out.push(field(&header[field_start..]));
    }
    out
}

fn field(raw: &[u8]) -> Field<'_> {
    let name = raw
        .iter()
        .position(|&b| b == b':')
        .and_then(|i| std::str::from_utf8(&raw[..i]).ok())
        .map_or("", str::trim);
    Field { name, raw }
}

/// A parsed Content-Type: lowercased `type/subtype` and its parameters
/// (names lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentType {
    pub mime: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// RFC 2045 default for an entity without Content-Type.
    pub fn default_text() -> Self {
        ContentType {
            mime: "text/plain".to_owned(),
            params: Vec::new(),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Content-Type of an entity's header block.
    pub fn of(header: &[u8]) -> Self {
        fields(header)
            .iter()
            .find(|f| f.is("content-type"))
            .map_or_else(Self::default_text, |f| Self::parse(&f.value()))
    }

    pub fn parse(value: &str) -> Self {
        let mut items = split_params(value).into_iter();
        let mime = items
            .next()
            .map(|m| m.trim().to_ascii_lowercase())
            .filter(|m| m.contains('/'))
            .unwrap_or_else(|| "text/plain".to_owned());
        let params = items
            .filter_map(|p| {
                let (n, v) = p.split_once('=')?;
                Some((n.trim().to_ascii_lowercase(), unquote(v.trim())))
            })
            .collect();
        ContentType { mime, params }
    }
}

/// Splits at `;` outside quoted strings.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                cur.push(c);
                quoted = !quoted;
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

/// The body parts of a multipart body (RFC 2046 §5.1.1), exact bytes: each part
/// runs from after its delimiter line to before the line ending that precedes
/// the next delimiter (that line ending belongs to the delimiter).
pub(crate) fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
    if boundary.is_empty() {
        return Err(PgpError::Mime("empty multipart boundary"));
    }
    let dash: Vec<u8> = [b"--".as_slice(), boundary.as_bytes()].concat();
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut start = 0;
    while start < body.len() {
        let end = body[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| start + i + 1);
        let line = &body[start..end];
        if let Some(rest) = line.strip_prefix(dash.as_slice()) {
            let closing = rest.starts_with(b"--");
            let rest = if closing { &rest[2..] } else { rest };
            if rest.iter().all(|b| b.is_ascii_whitespace()) {
                if let Some(ps) = part_start {
                    // Drop the line ending before the delimiter.
                    let mut pe = start;
                    if pe > ps && body[pe - 1] == b'\n' {
                        pe -= 1;
                        if pe > ps && body[pe - 1] == b'\r' {
                            pe -= 1;
                        }
                    }
                    parts.push(&body[ps..pe.max(ps)]);
                }
                if closing {
                    return Ok(parts);
                }
                part_start = Some(end);
            }
        }
        start = end;
    }
    Err(PgpError::Mime("multipart without closing delimiter"))
}

/// Canonical line endings (CRLF) as RFC 3156 requires for signed data; bytes that
/// are already CRLF are untouched (borrowed).
pub(crate) fn to_crlf(data: &[u8]) -> Cow<'_, [u8]> {
    let needs = data
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'));
    if !needs {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    Cow::Owned(out)
}

/// A fresh boundary that does not occur in `content`.
pub(crate) fn boundary(content: &[u8]) -> Result<String> {
    loop {
        let mut bytes = [0u8; 16];
        sequoia_openpgp::crypto::random(&mut bytes)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let b = format!("postern-{hex}");
        if !content.windows(b.len()).any(|w| w == b.as_bytes()) {
            return Ok(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_fields_keep_folding() {
        let raw = b"Subject: a\r\n b\r\nFrom: x@y\r\n\r\nbody\r\n";
        let e = split(raw);
        assert_eq!(e.body, b"body\r\n");
        assert_eq!(e.eol, b"\r\n");
        let f = fields(e.header);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "Subject");
        assert_eq!(f[0].raw, b"Subject: a\r\n b\r\n");
        assert_eq!(f[0].value(), "a b");
        assert_eq!(f[1].value(), "x@y");
    }

    #[test]
    fn content_type_parameters() {
        let ct = ContentType::parse(
            "Multipart/Signed; micalg=pgp-sha256;\tprotocol=\"application/pgp-signature\"; boundary=\"a;b\\\"c\"",
        );
        assert_eq!(ct.mime, "multipart/signed");
        assert_eq!(ct.param("MICALG"), Some("pgp-sha256"));
        assert_eq!(ct.param("protocol"), Some("application/pgp-signature"));
        assert_eq!(ct.param("boundary"), Some("a;b\"c"));
        assert_eq!(ContentType::of(b"From: a\r\n").mime, "text/plain");
    }

    #[test]
    fn multipart_parts_are_exact() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n\r\n--b\r\n\r\ntwo\r\n--b--\r\nepilogue";
        let parts = multipart_parts(body, "b").unwrap();
        assert_eq!(parts, vec![&b"A: 1\r\n\r\none\r\n"[..], &b"\r\ntwo"[..]]);
        assert!(multipart_parts(b"--b\r\nx\r\n", "b").is_err());
        // A line that merely starts with the boundary is content.
        let parts = multipart_parts(b"--b\r\n--bx\r\n--b--\r\n", "b").unwrap();
        assert_eq!(parts, vec![&b"--bx"[..]]);
    }

    #[test]
    fn crlf_canonicalization() {
        assert_eq!(&*to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert!(matches!(to_crlf(b"a\r\nb"), Cow::Borrowed(_)));
    }
}
