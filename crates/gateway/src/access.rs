//! Allow/deny lists by address, domain or group (`alice@example.org`, `example.org`,
//! `@legal`). Group membership comes from the shared account store, resolved by the caller
//! into [`Party::groups`] so matching itself is pure.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// One entry of an allow or deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Exactly this address (lowercased).
    Address(String),
    /// Every address of this domain (lowercased), not its subdomains.
    Domain(String),
    /// Every member of this group (`postern group ...`).
    Group(String),
}

/// Someone a list is checked against: their address and the groups they belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    /// Lowercased address.
    pub address: String,
    /// Names of the groups the address is a member of.
    pub groups: Vec<String>,
}

impl Party {
    /// A party with no groups.
    pub fn new(address: &str) -> Self {
        Party {
            address: address.to_lowercase(),
            groups: Vec::new(),
        }
    }

    /// The domain part of the address (empty for the null sender).
    pub fn domain(&self) -> &str {
        postern_core::Address::domain_of(&self.address)
    }
}

impl Pattern {
    /// Whether `party` is matched by this entry.
    pub fn matches(&self, party: &Party) -> bool {
        match self {
            Pattern::Address(a) => *a == party.address,
            Pattern::Domain(d) => d == party.domain(),
            Pattern::Group(g) => party.groups.iter().any(|m| m == g),
        }
    }
}

/// Whether any entry matches.
pub fn any_match(list: &[Pattern], party: &Party) -> bool {
    list.iter().any(|p| p.matches(party))
}

/// The allow/deny rule used everywhere: a deny match refuses; otherwise an empty allow
/// list allows everyone and a non-empty one only those it matches. Several parties (sender
/// and recipient) are checked together: any of them denied refuses, any allowed allows.
pub fn permitted(allow: &[Pattern], deny: &[Pattern], parties: &[&Party]) -> bool {
    if parties.iter().any(|p| any_match(deny, p)) {
        return false;
    }
    allow.is_empty() || parties.iter().any(|p| any_match(allow, p))
}

impl std::str::FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: &str| Err(format!("`{s}` is not an address, domain or @group: {why}"));
        if let Some(group) = s.strip_prefix('@') {
            if group.is_empty() || group.contains('@') {
                return bad("empty or malformed group name");
            }
            return Ok(Pattern::Group(group.to_owned()));
        }
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("empty or contains spaces");
        }
        if !s.contains('@') {
            return Ok(Pattern::Domain(s.to_lowercase()));
        }
        match postern_core::Address::parse(s) {
            Ok(address) => Ok(Pattern::Address(address.to_string())),
            Err(e) => bad(e.reason),
        }
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Address(a) => f.write_str(a),
            Pattern::Domain(d) => f.write_str(d),
            Pattern::Group(g) => write!(f, "@{g}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_parse_and_match() {
        let alice = Party {
            address: "alice@example.org".into(),
            groups: vec!["legal".into()],
        };
        assert!(p("Alice@Example.org").matches(&alice));
        assert!(p("example.org").matches(&alice));
        assert!(!p("sub.example.org").matches(&alice));
        assert!(p("@legal").matches(&alice));
        assert!(!p("@sales").matches(&alice));
        assert!("@".parse::<Pattern>().is_err());
        assert!("a b".parse::<Pattern>().is_err());
        assert!("@x@y".parse::<Pattern>().is_err());
        assert_eq!(p("@legal").to_string(), "@legal");
    }

    #[test]
    fn deny_wins_and_empty_allow_allows_all() {
        let alice = Party::new("alice@example.org");
        let bob = Party::new("bob@partner.example");
        assert!(permitted(&[], &[], &[&alice, &bob]));
        assert!(!permitted(&[], &[p("partner.example")], &[&alice, &bob]));
        assert!(permitted(&[p("alice@example.org")], &[], &[&alice, &bob]));
        assert!(!permitted(&[p("carol@example.org")], &[], &[&alice, &bob]));
        assert!(!permitted(
            &[p("example.org")],
            &[p("alice@example.org")],
            &[&alice]
        ));
    }
}
