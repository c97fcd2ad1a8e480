//! The SMTP envelope of one mail, as the MTA gave it to us.

use std::net::IpAddr;

/// Sender, recipients and the parameters that must travel on to the next hop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; empty for the null sender (bounces).
    pub from: String,
    /// Forward paths, in the order given.
    pub rcpts: Vec<String>,
    /// `BODY=8BITMIME` was given.
    pub eight_bit: bool,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// Client attributes from XFORWARD (Postfix), passed on if the next hop takes them.
    pub xforward: XForward,
}

/// XFORWARD attributes (Postfix XFORWARD_README): the original client of the MTA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XForward {
    /// `NAME ADDR PORT PROTO HELO IDENT SOURCE` values, as received (xtext kept).
    pub attrs: Vec<(String, String)>,
}

impl XForward {
    /// Attribute names we announce and accept.
    pub const NAMES: [&'static str; 7] =
        ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"];

    /// Parses the arguments of one XFORWARD command (`NAME=x ADDR=y`) into `self`;
    /// `Err` names the first attribute we do not know.
    pub fn add(&mut self, args: &str) -> Result<(), String> {
        let mut parsed = Vec::new();
        for item in args.split_whitespace() {
            let (name, value) = item.split_once('=').ok_or_else(|| item.to_owned())?;
            let name = name.to_ascii_uppercase();
            if !Self::NAMES.contains(&name.as_str()) {
                return Err(name);
            }
            parsed.push((name, value.to_owned()));
        }
        for (name, value) in parsed {
            self.attrs.retain(|(n, _)| *n != name);
            self.attrs.push((name, value));
        }
        Ok(())
    }

    /// The client address (`ADDR`, with an optional `IPv6:` prefix), if it is one.
    pub fn addr(&self) -> Option<IpAddr> {
        let v = self.attrs.iter().find(|(n, _)| n == "ADDR")?.1.as_str();
        v.strip_prefix("IPv6:").unwrap_or(v).parse().ok()
    }

    /// Whether nothing was forwarded.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
}

impl Envelope {
    /// The sender's domain, lowercased (empty for the null sender).
    pub fn sender_domain(&self) -> String {
        self.from
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xforward_attributes() {
        let mut x = XForward::default();
        x.add("NAME=client.example ADDR=192.0.2.7").unwrap();
        x.add("addr=IPv6:2001:db8::1 PROTO=ESMTP").unwrap();
        assert_eq!(x.addr(), "2001:db8::1".parse().ok());
        assert_eq!(x.attrs.len(), 3);
        assert_eq!(x.add("BOGUS=1"), Err("BOGUS".into()));
        assert!(x.add("noequals").is_err());
    }
}
