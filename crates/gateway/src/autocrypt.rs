//! Autocrypt Level 1 (<https://autocrypt.org/level1.html>), the gateway's half of it:
//!
//! - **Send**: outbound mail from a local sender whose key is held here carries
//!   `Autocrypt: addr=<From>; keydata=<minimal cert>`, so a correspondent's Autocrypt
//!   client (or another gateway) learns the key from ordinary mail. A header the client
//!   already wrote is left alone (it knows its own key best).
//! - **Learn**: an inbound `Autocrypt:` header whose `addr` is the From address of an
//!   outside sender is imported as that sender's key, so the next mail to them is
//!   encrypted. Never for a served domain (local users' keys are ours), never over a newer
//!   key for the address, and only the user ID for that address is kept (a stranger's
//!   cert cannot claim somebody else's address through us).
//!
//! Parsing follows §2.1: `addr` and `keydata` are required, `prefer-encrypt` optional,
//! `_`-prefixed attributes ignored, any other attribute makes the header invalid; more
//! than one valid header for the address means none (§2.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use postern_pgp::Cert;

use crate::Gateway;
use crate::header;

/// The field name.
pub const FIELD: &str = "Autocrypt";

/// One parsed `Autocrypt:` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutocryptHeader {
    /// The address the key is for, lowercased.
    pub addr: String,
    /// The binary cert.
    pub keydata: Vec<u8>,
}

/// Parses a header value (unfolded); `None` when it is not a valid Level 1 header.
pub fn parse(value: &str) -> Option<AutocryptHeader> {
    let mut addr = None;
    let mut keydata = None;
    for attr in value.split(';') {
        let (k, v) = attr.split_once('=')?;
        match k.trim() {
            "addr" => addr = Some(v.trim().to_lowercase()),
            "keydata" => {
                let b64: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                keydata = Some(B64.decode(b64).ok()?);
            }
            "prefer-encrypt" => {}
            k if k.starts_with('_') => {}
            _ => return None,
        }
    }
    Some(AutocryptHeader {
        addr: addr.filter(|a| a.contains('@'))?,
        keydata: keydata.filter(|k| !k.is_empty())?,
    })
}

/// The whole field, CRLF-terminated, keydata folded at 76 columns.
pub fn field(addr: &str, keydata: &[u8]) -> String {
    let b64 = B64.encode(keydata);
    let mut out = format!("{FIELD}: addr={addr}; keydata=\r\n");
    for chunk in b64.as_bytes().chunks(76) {
        out.push(' ');
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// The From header's address, lowercased.
pub fn from_address(block: &[u8]) -> Option<String> {
    header::first_value(block, "from").and_then(|v| header::first_address(&v))
}

/// The field to add to a local sender's outbound mail, if one applies: the From address
/// is the envelope sender (we vouch for no other), the mail has no Autocrypt header yet,
/// and `cert` (the sender's own, held here) yields a minimal cert for the address.
pub fn outbound_field(block: &[u8], envelope_from: &str, cert: &Cert) -> Option<String> {
    let from = from_address(block)?;
    if !from.eq_ignore_ascii_case(envelope_from)
        || header::fields(block).iter().any(|f| f.is(FIELD))
    {
        return None;
    }
    match postern_pgp::autocrypt_keydata(cert, &from) {
        Ok(data) => Some(field(&from, &data)),
        Err(e) => {
            tracing::debug!(error = %e, "no Autocrypt header: no minimal cert");
            None
        }
    }
}

/// Learns the key in an inbound mail's Autocrypt header (see the module doc). Failures are
/// logged, never fatal: a bad header only means nothing is learned.
pub async fn learn(gw: &Gateway, block: &[u8]) {
    let Some(from) = from_address(block) else {
        return;
    };
    let domain = postern_core::Address::domain_of(&from);
    if gw.is_local_domain(domain) {
        return;
    }
    let found: Vec<AutocryptHeader> = header::fields(block)
        .iter()
        .filter(|f| f.is(FIELD))
        .filter_map(|f| parse(&f.value()))
        .filter(|h| h.addr == from)
        .collect();
    let [h] = found.as_slice() else {
        return;
    };
    match crate::learn::outside_key(gw, &from, &h.keydata).await {
        Ok(Some(what)) => {
            tracing::info!(address = %from, ?what, "learned key from Autocrypt header")
        }
        Ok(None) => {}
        Err(why) => tracing::info!(address = %from, %why, "Autocrypt key not imported"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_per_level_1() {
        let data = [1u8, 2, 3, 250];
        let f = field("bob@partner.example", &data);
        let block = f.as_bytes();
        let value = header::first_value(block, "autocrypt").expect("field");
        assert_eq!(
            parse(&value),
            Some(AutocryptHeader {
                addr: "bob@partner.example".into(),
                keydata: data.to_vec()
            })
        );
        let ok = "addr=Bob@Partner.example; prefer-encrypt=mutual; _x=1; keydata=AQID +g==";
        assert_eq!(
            parse(ok).map(|h| h.addr),
            Some("bob@partner.example".into())
        );
        for bad in [
            "keydata=AQID",
            "addr=bob@partner.example",
            "addr=bob@partner.example; critical=1; keydata=AQID",
            "addr=bob@partner.example; keydata=!!!",
            "addr=bob; keydata=AQID",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_keydata_is_folded() {
        let f = field("a@b", &[7u8; 300]);
        assert!(f.lines().all(|l| l.len() <= 78), "{f}");
        assert!(f.ends_with("\r\n"));
    }

    #[test]
    fn outbound_only_for_the_envelope_sender_and_never_twice() {
        let cert =
            postern_pgp::generate(&postern_pgp::KeySpec::new("alice@example.org")).expect("keygen");
        let block = b"From: Alice <alice@example.org>\r\nTo: bob@partner.example\r\n";
        let f = outbound_field(block, "alice@example.org", &cert).expect("field");
        assert!(f.starts_with("Autocrypt: addr=alice@example.org; keydata=\r\n "));
        assert!(outbound_field(block, "mallory@example.org", &cert).is_none());
        let mut with = block.to_vec();
        with.extend_from_slice(b"Autocrypt: addr=alice@example.org; keydata=AQID\r\n");
        assert!(outbound_field(&with, "alice@example.org", &cert).is_none());
    }
}
