//! The header block of a spooled mail, byte-exact: finding its end, reading fields,
//! dropping fields. Only the header is ever held in memory for pass-through mail.

/// A header block and where the body starts.
#[derive(Debug, Clone)]
pub struct HeaderBlock {
    /// Header fields, each with its own line ending, without the blank line.
    pub fields: Vec<u8>,
    /// Offset of the body in the message (after the blank line); equal to the length read
    /// when the mail has no blank line in the part we looked at.
    pub body_offset: u64,
}

/// Splits the start of a message into its header block. `prefix` is what was read of the
/// message (at most a bounded amount); a header longer than that is treated as ending where
/// the prefix ends, which is safe because we only add and remove our own fields.
pub fn parse(prefix: &[u8]) -> HeaderBlock {
    let mut start = 0;
    while start < prefix.len() {
        let end = prefix[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(prefix.len(), |i| start + i + 1);
        let line = &prefix[start..end];
        if line == b"\r\n" || line == b"\n" {
            return HeaderBlock {
                fields: prefix[..start].to_vec(),
                body_offset: end as u64,
            };
        }
        if end == prefix.len() && !line.ends_with(b"\n") {
            break;
        }
        start = end;
    }
    // No blank line: all header (RFC 5322 allows a mail without body).
    HeaderBlock {
        fields: prefix[..start].to_vec(),
        body_offset: start as u64,
    }
}

/// One field, continuation lines included.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// The field name as written.
    pub name: &'a str,
    /// The whole field, name to final line ending.
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// Unfolded value, trimmed (lossy UTF-8).
    pub fn value(&self) -> String {
        let after = self
            .raw
            .iter()
            .position(|&b| b == b':')
            .map_or(&[][..], |i| &self.raw[i + 1..]);
        let unfolded: Vec<u8> = after
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
            .collect();
        String::from_utf8_lossy(&unfolded)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Case-insensitive name comparison.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// The fields of a header block, in order.
pub fn fields(block: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut field_start = 0;
    while start < block.len() {
        let end = block[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |i| start + i + 1);
        let continuation = start > 0 && matches!(block[start], b' ' | b'\t');
        if !continuation && start > field_start {
            out.push(field(&block[field_start..start]));
            field_start = start;
        }
        start = end;
    }
    if block.len() > field_start {
        out.push(field(&block[field_start..]));
    }
    out
}

/// The value of the first field called `name`.
pub fn first_value(block: &[u8], name: &str) -> Option<String> {
    fields(block).iter().find(|f| f.is(name)).map(Field::value)
}

/// The block without the fields for which `drop` is true.
pub fn without(block: &[u8], drop: impl Fn(&Field<'_>) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len());
    for f in fields(block) {
        if !drop(&f) {
            out.extend_from_slice(f.raw);
        }
    }
    out
}

/// The first address in an address field value (`"Alice" <a@b>` or `a@b`), lowercased.
pub fn first_address(value: &str) -> Option<String> {
    let candidate = match (value.find('<'), value.find('>')) {
        (Some(l), Some(r)) if l < r => &value[l + 1..r],
        _ => value.split([',', ' ']).find(|t| t.contains('@'))?,
    };
    let a = candidate.trim();
    a.contains('@').then(|| a.to_lowercase())
}

fn field(raw: &[u8]) -> Field<'_> {
    let name = raw
        .iter()
        .position(|&b| b == b':')
        .and_then(|i| std::str::from_utf8(&raw[..i]).ok())
        .map_or("", str::trim);
    Field { name, raw }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_and_fields() {
        let m = b"Received: from a\r\n\tby b\r\nSubject: hi\r\n\r\nbody\r\n";
        let h = parse(m);
        assert_eq!(h.body_offset as usize, m.len() - 6);
        let f = fields(&h.fields);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].value(), "from a by b");
        assert_eq!(first_value(&h.fields, "SUBJECT").as_deref(), Some("hi"));
        assert_eq!(without(&h.fields, |f| f.is("received")), b"Subject: hi\r\n");
        // No blank line: everything is header; an unterminated last line is left as body.
        assert_eq!(parse(b"A: b\r\n").body_offset, 6);
        assert_eq!(parse(b"A: b\r\nC: d").fields, b"A: b\r\n");
        // LF-only mail.
        assert_eq!(parse(b"A: b\n\nx").body_offset, 6);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            first_address("\"Alice\" <Alice@Example.org>").as_deref(),
            Some("alice@example.org")
        );
        assert_eq!(first_address("bob@x.y, c@d").as_deref(), Some("bob@x.y"));
        assert_eq!(first_address("undisclosed-recipients:;"), None);
    }
}
