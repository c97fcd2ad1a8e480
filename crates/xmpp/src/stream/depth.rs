//! The nesting depth of the XML stream, measured on the bytes before the parser sees them.
//!
//! Why here and not in the parser: rxml has no depth limit, and the minidom builder that
//! tokio-xmpp feeds (`xso`'s `ElementFromEvents`) recurses once per open element on every
//! event, as do minidom's serialiser and the `Drop` of an element tree. 5,000 levels (15 KB,
//! well under the size cap) overflowed a 2 MiB worker stack and aborted the process. So the
//! limit holds on the bytes: [`DepthGauge`] follows just enough of XML's lexical structure
//! (tags, quoted attribute values, comments, CDATA, processing instructions) to count open
//! elements, and reports where the first element deeper than the limit is completed. The
//! buffer above it ([`super::io::Io`]) hands the parser only the bytes before that point, so
//! no element deeper than the limit is ever built, converted, serialised or dropped.
//!
//! Its verdict only needs to agree with rxml on input rxml accepts: anything else ends the
//! stream as `not-well-formed` anyway. The property test below checks it against generated
//! well-formed documents split at every byte. Cost: one pass with `memchr` over text and
//! attribute bytes; server CPU per message in `bench/xmpp --baseline 59cf43d` was 0.91× (window
//! 32) and 0.96× (window 1) of the build without it (jemalloc arrived in the same change).

/// Lexical position within the stream, carried across reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Character data between tags.
    Text,
    /// Just after `<`.
    Open,
    /// Inside a start tag; `slash` when the previous byte was `/` (so `>` closes an empty
    /// element).
    StartTag { slash: bool },
    /// Inside a quoted attribute value of a start tag.
    Quoted(u8),
    /// Inside an end tag `</…>`.
    EndTag,
    /// After `<!`: `seen` bytes of `--` or `[CDATA[` matched so far.
    Bang { seen: u8, cdata: bool },
    /// Inside `<!-- … -->`; `dashes` counts the `-` just seen.
    Comment { dashes: u8 },
    /// Inside `<![CDATA[ … ]]>`; `brackets` counts the `]` just seen.
    CData { brackets: u8 },
    /// Inside `<? … ?>`; `question` when the previous byte was `?`.
    Pi { question: bool },
    /// Inside some other `<! … >` declaration (rxml refuses these; we only skip to `>`).
    Declaration,
}

/// Counts open elements across the chunks of one XML stream.
#[derive(Debug, Clone)]
pub struct DepthGauge {
    state: State,
    depth: usize,
    /// Deepest allowed depth, counting the stream element itself.
    max: usize,
}

impl DepthGauge {
    /// A gauge for a stream whose top-level elements may nest `max_stanza_depth` levels
    /// (the stanza itself is level 1; the `<stream:stream>` element around it is not counted).
    pub fn new(max_stanza_depth: usize) -> Self {
        Self {
            state: State::Text,
            depth: 0,
            max: max_stanza_depth + 1,
        }
    }

    /// Forgets the current stream element: after a stream restart (SASL success) the old
    /// `<stream:stream>` is abandoned, never closed.
    pub fn abandon_stream(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The limit this gauge enforces, as configured.
    pub fn max_stanza_depth(&self) -> usize {
        self.max - 1
    }

    /// Current depth, counting the stream element.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Scans the next chunk. Returns the offset of the `>` that completes the first start tag
    /// deeper than the limit; the gauge must not be fed after that.
    pub fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Text => match memchr::memchr(b'<', &bytes[i..]) {
                    Some(at) => {
                        i += at;
                        self.state = State::Open;
                    }
                    None => return None,
                },
                State::Open => {
                    self.state = match bytes[i] {
                        b'/' => State::EndTag,
                        b'?' => State::Pi { question: false },
                        b'!' => State::Bang {
                            seen: 0,
                            cdata: false,
                        },
                        b'>' => {
                            // `<>` is not XML; rxml refuses it. Count nothing.
                            State::Text
                        }
                        _ => State::StartTag { slash: false },
                    };
                }
                State::StartTag { slash } => {
                    let Some(at) = memchr::memchr3(b'>', b'\'', b'"', &bytes[i..]) else {
                        self.state = State::StartTag {
                            slash: bytes[bytes.len() - 1] == b'/',
                        };
                        return None;
                    };
                    let j = i + at;
                    let before_slash = if j > i { bytes[j - 1] == b'/' } else { slash };
                    match bytes[j] {
                        b'>' => {
                            self.state = State::Text;
                            // An empty element `<a/>` is as deep as `<a></a>`, it just
                            // closes at once.
                            if self.depth + 1 > self.max {
                                return Some(j);
                            }
                            if !before_slash {
                                self.depth += 1;
                            }
                        }
                        quote => self.state = State::Quoted(quote),
                    }
                    i = j;
                }
                State::Quoted(quote) => match memchr::memchr(quote, &bytes[i..]) {
                    Some(at) => {
                        i += at;
                        self.state = State::StartTag { slash: false };
                    }
                    None => return None,
                },
                State::EndTag => match memchr::memchr(b'>', &bytes[i..]) {
                    Some(at) => {
                        i += at;
                        self.depth = self.depth.saturating_sub(1);
                        self.state = State::Text;
                    }
                    None => return None,
                },
                State::Bang { seen, cdata } => {
                    const CDATA: &[u8] = b"[CDATA[";
                    let b = bytes[i];
                    self.state = match (seen, cdata, b) {
                        (0, _, b'-') => State::Bang {
                            seen: 1,
                            cdata: false,
                        },
                        (1, false, b'-') => State::Comment { dashes: 0 },
                        (0, _, b'[') => State::Bang {
                            seen: 1,
                            cdata: true,
                        },
                        (n, true, b) if usize::from(n) < CDATA.len() && CDATA[n as usize] == b => {
                            if usize::from(n) + 1 == CDATA.len() {
                                State::CData { brackets: 0 }
                            } else {
                                State::Bang {
                                    seen: n + 1,
                                    cdata: true,
                                }
                            }
                        }
                        (_, _, b'>') => State::Text,
                        _ => State::Declaration,
                    };
                }
                State::Comment { dashes } => {
                    self.state = match (dashes, bytes[i]) {
                        (d, b'-') => State::Comment {
                            dashes: (d + 1).min(2),
                        },
                        (2, b'>') => State::Text,
                        _ => State::Comment { dashes: 0 },
                    };
                }
                State::CData { brackets } => {
                    self.state = match (brackets, bytes[i]) {
                        (b, b']') => State::CData {
                            brackets: (b + 1).min(2),
                        },
                        (2, b'>') => State::Text,
                        _ => State::CData { brackets: 0 },
                    };
                }
                State::Pi { question } => {
                    self.state = match bytes[i] {
                        b'>' if question => State::Text,
                        b => State::Pi {
                            question: b == b'?',
                        },
                    };
                }
                State::Declaration => {
                    if bytes[i] == b'>' {
                        self.state = State::Text;
                    }
                }
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth after `doc` fed in pieces split at `splits`, or the offset it stopped at.
    fn feed(doc: &[u8], max: usize, splits: &[usize]) -> Result<usize, usize> {
        let mut gauge = DepthGauge::new(max);
        let mut start = 0;
        for &end in splits.iter().chain(std::iter::once(&doc.len())) {
            if let Some(at) = gauge.scan(&doc[start..end]) {
                return Err(start + at);
            }
            start = end;
        }
        Ok(gauge.depth())
    }

    fn nested(levels: usize) -> String {
        "<a>".repeat(levels) + &"</a>".repeat(levels)
    }

    #[test]
    fn counts_the_stream_element_and_stops_at_the_first_too_deep_tag() {
        let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client'>";
        let ok = format!("{header}{}", nested(64));
        assert_eq!(feed(ok.as_bytes(), 64, &[]), Ok(1));
        let deep = format!("{header}{}", nested(65));
        let stop = feed(deep.as_bytes(), 64, &[]).expect_err("too deep");
        // The `>` of the 65th <a>: the parser never sees that element completed.
        assert_eq!(stop, header.len() + 65 * 3 - 1);
    }

    #[test]
    fn empty_elements_attributes_comments_cdata_and_pis_do_not_count() {
        let doc = concat!(
            "<?xml version='1.0'?><s>",
            "<m a='x/>' b=\"<y>\" c='/'/>",
            "<m><![CDATA[</s></s><a><a>]]]]></m>",
            "<!-- </s> <a> - -><a> -->",
            "<?pi </s> > <a>?>",
            "<m a=\"1\" /><m/><n x='>'></n>",
            "</s>"
        );
        assert_eq!(feed(doc.as_bytes(), 1, &[]), Ok(0));
        assert!(feed(doc.as_bytes(), 0, &[]).is_err());
    }

    #[test]
    fn a_restart_abandons_the_old_stream_element() {
        let mut gauge = DepthGauge::new(2);
        assert_eq!(gauge.scan(b"<stream><auth/>"), None);
        gauge.abandon_stream();
        assert_eq!(gauge.scan(b"<stream><m><b>"), None);
        assert_eq!(gauge.depth(), 3);
        assert!(gauge.scan(b"<c>").is_some());
    }

    /// A small generator of well-formed XML whose depth is known by construction.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            // xorshift64*: fixed seeds, reproducible.
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }

        /// Appends an element; returns its depth (1 for a leaf).
        fn element(&mut self, out: &mut String, budget: usize) -> usize {
            let attrs = [
                "",
                " a='1'",
                " b=\"x > y / z\"",
                " c='&lt;/a&gt;' d=\"'\"",
                " e = '/'",
            ];
            let fillers = [
                "text",
                "&amp;&lt;",
                "<![CDATA[</x><y>]]>",
                "<!-- </x> -->",
                "<?p </x>?>",
                " ",
            ];
            out.push_str("<x");
            out.push_str(self.pick(&attrs));
            if budget == 0 || self.next().is_multiple_of(4) {
                out.push_str(self.pick(&["/>", " />"]));
                return 1;
            }
            out.push('>');
            let mut deepest = 0;
            for _ in 0..(self.next() % 3) {
                out.push_str(self.pick(&fillers));
                deepest = deepest.max(self.element(out, budget - 1));
            }
            out.push_str(self.pick(&fillers));
            out.push_str(self.pick(&["</x>", "</x >"]));
            deepest + 1
        }
    }

    #[test]
    fn agrees_with_the_construction_on_generated_documents_split_anywhere() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300 {
            let mut doc = String::from("<?xml version='1.0'?><stream>");
            let mut deepest = 0;
            for _ in 0..3 {
                deepest = deepest.max(g.element(&mut doc, 12));
            }
            let bytes = doc.as_bytes();
            let every_byte: Vec<usize> = (1..bytes.len()).collect();
            let mut splits: Vec<Vec<usize>> = vec![vec![], every_byte];
            splits.extend((1..bytes.len()).map(|at| vec![at]));
            for split in &splits {
                // Exactly as deep as allowed: never stopped, and back at the stream level.
                assert_eq!(feed(bytes, deepest, split), Ok(1), "{doc} {split:?}");
                // One level less allowed: stopped.
                assert!(feed(bytes, deepest - 1, split).is_err(), "{doc} {split:?}");
            }
        }
    }
}
