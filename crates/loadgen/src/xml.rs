//! Just enough XML to read an XMPP stream from a server: the stream header, then one
//! top-level element at a time as a small tree, then the stream end.
//!
//! A load generator must not spend the CPU it shares with the server on a full XML stack, so
//! this reader is namespace-unaware (prefixes are dropped from names, `xmlns` stays an
//! attribute) and only as strict as reading a well-behaved server needs. Everything it reads
//! is still peer data: sizes and depth are bounded, and bad input is an error, never a panic.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest element (or header) the reader buffers before giving up.
const MAX_ELEMENT: usize = 1024 * 1024;
/// Deepest nesting of one top-level element.
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML from the server: {0}")]
    Malformed(&'static str),
    #[error("element from the server larger than {MAX_ELEMENT} bytes")]
    TooLarge,
    #[error("element from the server nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("connection closed by the server")]
    Eof,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One element: local name, attributes as written, child elements and the concatenated text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The local name of the first child, e.g. the condition of a SASL failure.
    pub fn first_child_name(&self) -> Option<&str> {
        self.children.first().map(|c| c.name.as_str())
    }
}

/// What the server sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// `<stream:stream ...>`, children not included.
    StreamOpen(Element),
    /// A complete top-level element (stanza, features, SASL, ...).
    Element(Element),
    /// `</stream:stream>`.
    StreamClose,
}

/// Incremental reader over any byte stream; keep one per stream (a new one after STARTTLS).
#[derive(Default)]
pub struct XmlReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already turned into events.
    start: usize,
    /// Inside `<stream:stream>`: top-level elements are stanzas.
    in_stream: bool,
}

impl XmlReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing read is left unparsed (must hold before a STARTTLS upgrade).
    pub fn is_drained(&self) -> bool {
        self.buf[self.start..].iter().all(u8::is_ascii_whitespace)
    }

    /// The next event, reading from `io` as needed. Cancel-safe: bytes read stay buffered.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Event, XmlError> {
        loop {
            if let Some(event) = self.parse_buffered()? {
                return Ok(event);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.len() >= MAX_ELEMENT {
                return Err(XmlError::TooLarge);
            }
            self.buf.reserve(16 * 1024);
            if io.read_buf(&mut self.buf).await? == 0 {
                return Err(XmlError::Eof);
            }
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Event>, XmlError> {
        let mut p = Parser {
            s: &self.buf[self.start..],
            pos: 0,
        };
        loop {
            // Whitespace keepalives and anything else between top-level elements.
            p.skip_until_lt();
            self.start += p.pos;
            p.s = &p.s[p.pos..];
            p.pos = 0;
            if p.s.is_empty() {
                return Ok(None);
            }
            if p.starts_with(b"<?") || p.starts_with(b"<!--") {
                let end: &[u8] = if p.starts_with(b"<?") { b"?>" } else { b"-->" };
                match p.find(end) {
                    Some(i) => {
                        p.pos = i + end.len();
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            let event = if p.starts_with(b"</") {
                match p.find(b">") {
                    Some(i) => {
                        p.pos = i + 1;
                        self.in_stream = false;
                        Some(Event::StreamClose)
                    }
                    None => None,
                }
            } else if !self.in_stream {
                match p.start_tag()? {
                    Some((tag, empty)) => {
                        self.in_stream = !empty;
                        Some(Event::StreamOpen(tag.element))
                    }
                    None => None,
                }
            } else {
                p.element(0)?.map(Event::Element)
            };
            if event.is_some() {
                self.start += p.pos;
            }
            return Ok(event);
        }
    }
}

/// Escapes text for an attribute value or character data.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

struct StartTag {
    element: Element,
    /// The name as written (with prefix), to match the end tag.
    qname: String,
}

/// Parses one construct at a time from the start of `s`; `Ok(None)` means "need more bytes".
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn starts_with(&self, pat: &[u8]) -> bool {
        self.s[self.pos..].starts_with(pat)
    }

    fn find(&self, pat: &[u8]) -> Option<usize> {
        self.s[self.pos..]
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|i| i + self.pos)
    }

    fn skip_until_lt(&mut self) {
        self.pos = self.s[self.pos..]
            .iter()
            .position(|&b| b == b'<')
            .map_or(self.s.len(), |i| i + self.pos);
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    /// A name: up to whitespace, `=`, `/` or `>`.
    fn name(&mut self) -> Result<Option<&str>, XmlError> {
        let begin = self.pos;
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' | b'=' | b'/' | b'>' => {
                    if self.pos == begin {
                        return Err(XmlError::Malformed("empty name"));
                    }
                    return utf8(&self.s[begin..self.pos]).map(Some);
                }
                _ => self.pos += 1,
            }
        }
        Ok(None)
    }

    /// `<name attr='v' ...>` or `.../>`; returns the tag and whether it was empty.
    fn start_tag(&mut self) -> Result<Option<(StartTag, bool)>, XmlError> {
        self.pos += 1; // '<'
        let Some(qname) = self.name()? else {
            return Ok(None);
        };
        let qname = qname.to_owned();
        let mut element = Element {
            name: local(&qname).to_owned(),
            ..Element::default()
        };
        loop {
            self.skip_ws();
            let Some(&b) = self.s.get(self.pos) else {
                return Ok(None);
            };
            match b {
                b'>' => {
                    self.pos += 1;
                    return Ok(Some((StartTag { element, qname }, false)));
                }
                b'/' => match self.s.get(self.pos + 1) {
                    None => return Ok(None),
                    Some(b'>') => {
                        self.pos += 2;
                        return Ok(Some((StartTag { element, qname }, true)));
                    }
                    Some(_) => return Err(XmlError::Malformed("'/' inside a tag")),
                },
                _ => {
                    let Some(key) = self.name()? else {
                        return Ok(None);
                    };
                    let key = key.to_owned();
                    self.skip_ws();
                    match self.s.get(self.pos) {
                        None => return Ok(None),
                        Some(b'=') => self.pos += 1,
                        Some(_) => return Err(XmlError::Malformed("attribute without '='")),
                    }
                    self.skip_ws();
                    let quote = match self.s.get(self.pos) {
                        None => return Ok(None),
                        Some(&q @ (b'\'' | b'"')) => q,
                        Some(_) => return Err(XmlError::Malformed("unquoted attribute value")),
                    };
                    let begin = self.pos + 1;
                    let Some(len) = self.s[begin..].iter().position(|&c| c == quote) else {
                        return Ok(None);
                    };
                    let value = unescape(utf8(&self.s[begin..begin + len])?)?;
                    self.pos = begin + len + 1;
                    element.attrs.push((key, value));
                }
            }
        }
    }

    /// A whole element with its children.
    fn element(&mut self, depth: usize) -> Result<Option<Element>, XmlError> {
        if depth > MAX_DEPTH {
            return Err(XmlError::TooDeep);
        }
        let Some((StartTag { mut element, qname }, empty)) = self.start_tag()? else {
            return Ok(None);
        };
        if empty {
            return Ok(Some(element));
        }
        loop {
            let text_begin = self.pos;
            self.skip_until_lt();
            if self.pos >= self.s.len() {
                return Ok(None);
            }
            if self.pos > text_begin {
                element
                    .text
                    .push_str(&unescape(utf8(&self.s[text_begin..self.pos])?)?);
            }
            if self.starts_with(b"</") {
                let Some(end) = self.find(b">") else {
                    return Ok(None);
                };
                if self.s[self.pos + 2..end].trim_ascii() != qname.as_bytes() {
                    return Err(XmlError::Malformed("mismatched end tag"));
                }
                self.pos = end + 1;
                return Ok(Some(element));
            } else if self.starts_with(b"<![CDATA[") {
                let Some(end) = self.find(b"]]>") else {
                    return Ok(None);
                };
                element.text.push_str(utf8(&self.s[self.pos + 9..end])?);
                self.pos = end + 3;
            } else if self.starts_with(b"<!--") || self.starts_with(b"<?") {
                let pat: &[u8] = if self.starts_with(b"<?") {
                    b"?>"
                } else {
                    b"-->"
                };
                let Some(end) = self.find(pat) else {
                    return Ok(None);
                };
                self.pos = end + pat.len();
            } else {
                let Some(child) = self.element(depth + 1)? else {
                    return Ok(None);
                };
                element.children.push(child);
            }
        }
    }
}

fn local(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l)
}

fn utf8(b: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(b).map_err(|_| XmlError::Malformed("invalid UTF-8"))
}

fn unescape(s: &str) -> Result<String, XmlError> {
    if !s.contains('&') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .ok_or(XmlError::Malformed("unterminated entity"))?;
        let entity = &after[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or(XmlError::Malformed("unknown entity"))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes and collects the events.
    async fn events(input: &str, chunk: usize) -> Result<Vec<Event>, XmlError> {
        let bytes = input.as_bytes();
        let (mut tx, mut rx) = tokio::io::duplex(64 * 1024);
        let data = bytes.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in data.chunks(chunk) {
                tx.write_all(piece).await?;
                tx.flush().await?;
                tokio::task::yield_now().await;
            }
            Ok::<_, std::io::Error>(())
        });
        let mut reader = XmlReader::new();
        let mut out = Vec::new();
        loop {
            match reader.next(&mut rx).await {
                Ok(Event::StreamClose) => {
                    out.push(Event::StreamClose);
                    break;
                }
                Ok(e) => out.push(e),
                Err(XmlError::Eof) => break,
                Err(e) => return Err(e),
            }
        }
        writer.await.map_err(std::io::Error::other)??;
        Ok(out)
    }

    const STREAM: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='a&amp;b' version='1.0'>\n\
        <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms>\
        </stream:features> \
        <message to=\"b@x/r\" type='chat'><body>1 2 &lt;3&#x21;</body><!-- c --></message>\
        <presence/><iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>";

    #[tokio::test]
    async fn reads_a_stream_whole_and_byte_by_byte() -> Result<(), XmlError> {
        for chunk in [1, 7, STREAM.len()] {
            let ev = events(STREAM, chunk).await?;
            assert_eq!(ev.len(), 6, "chunk {chunk}: {ev:?}");
            let Event::StreamOpen(open) = &ev[0] else {
                panic!("no header: {ev:?}");
            };
            assert_eq!(open.name, "stream");
            assert_eq!(open.attr("id"), Some("a&b"));
            let Event::Element(features) = &ev[1] else {
                panic!("no features");
            };
            assert_eq!(features.name, "features");
            let mechs: Vec<_> = features
                .child("mechanisms")
                .map(|m| m.children.iter().map(|c| c.text.as_str()).collect())
                .unwrap_or_default();
            assert_eq!(mechs, ["PLAIN", "SCRAM-SHA-1"]);
            let Event::Element(msg) = &ev[2] else {
                panic!("no message");
            };
            assert_eq!(msg.attr("to"), Some("b@x/r"));
            assert_eq!(msg.child("body").map(|b| b.text.as_str()), Some("1 2 <3!"));
            assert_eq!(
                ev[3],
                Event::Element(Element {
                    name: "presence".into(),
                    ..Element::default()
                })
            );
            let Event::Element(iq) = &ev[4] else {
                panic!("no iq");
            };
            assert_eq!(iq.first_child_name(), Some("ping"));
            assert_eq!(ev[5], Event::StreamClose);
        }
        Ok(())
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        let head = "<stream:stream xmlns='jabber:client'>";
        for bad in [
            "<message><body>x</bod></message>",
            "<message a=b/>",
            "<message a='1' / >",
            "<m>&bogus;</m>",
            "<m>\u{0}&#xFFFFFFFF;</m>",
        ] {
            let r = events(&format!("{head}{bad}"), 3).await;
            assert!(r.is_err(), "{bad} parsed: {r:?}");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 2);
        assert!(matches!(
            events(&format!("{head}{deep}"), 64).await,
            Err(XmlError::TooDeep)
        ));
        let huge = format!("{head}<m>{}", "x".repeat(MAX_ELEMENT + 10));
        assert!(matches!(events(&huge, 4096).await, Err(XmlError::TooLarge)));
    }

    #[test]
    fn escapes_what_it_must() {
        assert_eq!(escape("a&b<'c'>\""), "a&amp;b&lt;&apos;c&apos;&gt;&quot;");
    }
}
