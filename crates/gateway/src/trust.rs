//! Local vs outside sender: who may have mail signed with a server-held key.
//!
//! Never decided by the From header (anyone can write it). The rule is configured
//! ([`LocalSenders`]): the envelope sender's domain on the loopback-only embedded default,
//! or the MTA's evidence of authentication on production configs.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

use crate::config::LocalSenders;
use crate::header;

/// What the MTA told us about the client that submitted the mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// XFORWARD ADDR: the original client's IP address.
    pub client_addr: Option<IpAddr>,
    /// The newest Received field carries Postfix's `(Authenticated sender: …)` comment.
    pub authenticated: bool,
}

impl Evidence {
    /// Reads the authentication comment from the newest Received field of a header block.
    /// Only a continuation line that *starts* with the comment counts, as Postfix writes
    /// it: the `from` clause on the first line holds client-chosen text (the HELO name).
    pub fn from_header(block: &[u8], client_addr: Option<IpAddr>) -> Self {
        let authenticated = header::fields(block)
            .iter()
            .find(|f| f.is("received"))
            .is_some_and(|f| {
                f.raw.split(|&b| b == b'\n').skip(1).any(|line| {
                    line.trim_ascii_start()
                        .starts_with(b"(Authenticated sender:")
                })
            });
        Evidence {
            client_addr,
            authenticated,
        }
    }
}

/// Whether the envelope sender is one of ours under `rule`. `sender_domain_served` is
/// whether the envelope sender's domain is a served domain (the null sender never is).
pub fn is_local_sender(
    rule: LocalSenders,
    sender_domain_served: bool,
    evidence: &Evidence,
    trusted: &[Network],
) -> bool {
    if !sender_domain_served {
        return false;
    }
    match rule {
        LocalSenders::EnvelopeDomain => true,
        LocalSenders::Authenticated => {
            evidence.authenticated
                || evidence
                    .client_addr
                    .is_some_and(|ip| trusted.iter().any(|n| n.contains(ip)))
        }
    }
}

/// An IP network in CIDR notation (`192.0.2.0/24`, `::1/128`; a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `127.0.0.0/8`.
    pub fn loopback_v4() -> Self {
        Network {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        }
    }

    /// `::1/128`.
    pub fn loopback_v6() -> Self {
        Network {
            addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            prefix: 128,
        }
    }

    /// Whether `ip` lies in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a network such as \"192.0.2.0/24\"");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Network { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Network {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        assert!(net("192.0.2.0/24").contains("192.0.2.77".parse().unwrap()));
        assert!(!net("192.0.2.0/24").contains("192.0.3.1".parse().unwrap()));
        assert!(net("10.0.0.0/9").contains("10.127.0.1".parse().unwrap()));
        assert!(!net("10.0.0.0/9").contains("10.128.0.1".parse().unwrap()));
        assert!(Network::loopback_v4().contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(Network::loopback_v6().contains("::1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nonsense".parse::<Network>().is_err());
    }

    #[test]
    fn authenticated_sender_comes_only_from_the_newest_received_continuation() {
        let ours = b"Received: from [192.0.2.1] (unknown [192.0.2.1])\r\n\t(Authenticated sender: alice)\r\n\tby mx.example.org (Postfix) with ESMTPSA id 1\r\nReceived: from old\r\n";
        assert!(Evidence::from_header(ours, None).authenticated);
        let helo_trick = b"Received: from (Authenticated sender: x) (unknown [192.0.2.1])\r\n\tby mx (Postfix) with ESMTP\r\n";
        assert!(!Evidence::from_header(helo_trick, None).authenticated);
        let older = b"Received: from a by mx with ESMTP\r\nReceived: from b\r\n (Authenticated sender: x)\r\n";
        assert!(!Evidence::from_header(older, None).authenticated);
    }

    #[test]
    fn sender_rules() {
        let none = Evidence::default();
        let trusted = [Network::loopback_v4()];
        assert!(is_local_sender(
            LocalSenders::EnvelopeDomain,
            true,
            &none,
            &trusted
        ));
        assert!(!is_local_sender(
            LocalSenders::EnvelopeDomain,
            false,
            &none,
            &trusted
        ));
        assert!(!is_local_sender(
            LocalSenders::Authenticated,
            true,
            &none,
            &trusted
        ));
        let auth = Evidence {
            authenticated: true,
            client_addr: None,
        };
        assert!(is_local_sender(
            LocalSenders::Authenticated,
            true,
            &auth,
            &trusted
        ));
        assert!(!is_local_sender(
            LocalSenders::Authenticated,
            false,
            &auth,
            &trusted
        ));
        let lan = Evidence {
            authenticated: false,
            client_addr: Some("127.0.0.5".parse().unwrap()),
        };
        assert!(is_local_sender(
            LocalSenders::Authenticated,
            true,
            &lan,
            &trusted
        ));
    }
}
