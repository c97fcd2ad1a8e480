//! The mail address `localpart@domain`: an account's login, its bare JID and its mail
//! address at once. [`Address::parse`] normalises (lowercase: mail addresses are compared
//! case-insensitively in practice) and refuses what a bare JID or a mail header cannot carry.

/// Longest localpart or domain accepted: the JID part limit of RFC 7622 §3.
pub const MAX_PART_LEN: usize = 1023;

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason}")]
pub struct AddressError {
    pub input: String,
    pub reason: &'static str,
}

/// A parsed, lowercase `localpart@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    localpart: String,
    domain: String,
}

impl Address {
    pub fn parse(address: &str) -> Result<Address, AddressError> {
        let invalid = |reason| AddressError {
            input: address.to_owned(),
            reason,
        };
        let (localpart, domain) = address.rsplit_once('@').ok_or_else(|| invalid("no @"))?;
        if localpart.is_empty() || domain.is_empty() {
            return Err(invalid("empty localpart or domain"));
        }
        if localpart.len() > MAX_PART_LEN || domain.len() > MAX_PART_LEN {
            return Err(invalid("too long"));
        }
        let bad = |c: char| c.is_whitespace() || c.is_control() || "@/\"&'<>:".contains(c);
        if localpart.chars().any(bad) || domain.chars().any(bad) {
            return Err(invalid("forbidden character"));
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(invalid("bad domain"));
        }
        Ok(Address {
            localpart: localpart.to_lowercase(),
            domain: domain.to_lowercase(),
        })
    }

    pub fn localpart(&self) -> &str {
        &self.localpart
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain part of something that looks like an address (what follows the last
    /// `@`; empty without one), as written: for routing decisions on envelope addresses that
    /// may be anything, compared case-insensitively by the caller.
    pub fn domain_of(address: &str) -> &str {
        address.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// What an API that takes an address accepts: an [`Address`] parsed once upstream (used as
/// is), or text (parsed here, so a bad one is an [`AddressError`]).
pub trait AsAddress {
    fn as_address(&self) -> Result<std::borrow::Cow<'_, Address>, AddressError>;
}

impl AsAddress for Address {
    fn as_address(&self) -> Result<std::borrow::Cow<'_, Address>, AddressError> {
        Ok(std::borrow::Cow::Borrowed(self))
    }
}

impl AsAddress for str {
    fn as_address(&self) -> Result<std::borrow::Cow<'_, Address>, AddressError> {
        Address::parse(self).map(std::borrow::Cow::Owned)
    }
}

impl AsAddress for String {
    fn as_address(&self) -> Result<std::borrow::Cow<'_, Address>, AddressError> {
        self.as_str().as_address()
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.localpart, self.domain)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_bad_ones_refused_with_a_reason() {
        let a = Address::parse("Alice@Example.COM").expect("valid");
        assert_eq!(a.to_string(), "alice@example.com");
        assert_eq!((a.localpart(), a.domain()), ("alice", "example.com"));
        for (bad, reason) in [
            ("alice", "no @"),
            ("@example.com", "empty localpart or domain"),
            ("a b@example.com", "forbidden character"),
            ("a@example..com", "bad domain"),
            ("a/b@example.com", "forbidden character"),
        ] {
            assert_eq!(
                Address::parse(bad).map_err(|e| e.reason),
                Err(reason),
                "{bad}"
            );
        }
        assert_eq!(Address::domain_of("X@Mail.Example"), "Mail.Example");
        assert_eq!(Address::domain_of("a@b@c.example"), "c.example");
        assert_eq!(Address::domain_of("nobody"), "");
    }
}
