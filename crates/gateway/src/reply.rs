//! SMTP replies: what the gateway answers upstream and what the next hop answered us.

use std::fmt;

/// One SMTP reply: a three-digit code and its text (the enhanced status code, when there
/// is one, is the start of the text, as on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Basic status code (RFC 5321 §4.2).
    pub code: u16,
    /// Text of the reply; lines of a multi-line reply are joined with `\n`.
    pub text: String,
}

impl Reply {
    /// A reply with an enhanced status code (RFC 3463) in front of the text.
    pub fn new(code: u16, enhanced: &str, text: impl fmt::Display) -> Self {
        Reply {
            code,
            text: format!("{enhanced} {text}"),
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Wire form, CRLF-terminated, multi-line where the text has several lines. Control
    /// characters of a peer's text are replaced so they cannot break the framing.
    pub fn to_wire(&self) -> String {
        let lines: Vec<String> = self
            .text
            .split('\n')
            .map(|l| {
                l.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{}{sep}{line}\r\n", self.code));
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text.replace('\n', " / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_and_classes() {
        let r = Reply::new(451, "4.4.1", "next hop down");
        assert_eq!(r.to_wire(), "451 4.4.1 next hop down\r\n");
        assert!(r.is_temporary() && !r.is_permanent() && !r.is_positive());
        let m = Reply {
            code: 250,
            text: "a\nb\r\x07".into(),
        };
        assert_eq!(m.to_wire(), "250-a\r\n250 b\r\n");
    }
}
