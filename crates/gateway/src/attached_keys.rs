//! Keys attached to mail as `application/pgp-keys` parts (what "attach my public key" in a
//! mail client sends, and how MDPGP users exchange keys). Finding them is here; whether a
//! key may be imported is decided in [`crate::learn`]: from an authenticated local sender,
//! or when the key's own user ID is the sender's From address.

use mail_parser::MimeHeaders;

/// Marker searched in the spooled mail (streaming) before anything is parsed.
pub const MARKER: &[u8] = b"pgp-keys";

/// The decoded contents of every `application/pgp-keys` part.
pub fn key_parts(message: &[u8]) -> Vec<Vec<u8>> {
    let Some(parsed) = postern_pgp::mail::parse(message) else {
        return Vec::new();
    };
    parsed
        .parts
        .iter()
        .filter(|p| {
            p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("application")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("pgp-keys"))
            })
        })
        .map(|p| p.contents().to_vec())
        .filter(|c| !c.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_key_parts_in_any_transfer_encoding() {
        let m = b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n\
            --x\r\nContent-Type: text/plain\r\n\r\nmy key\r\n\
            --x\r\nContent-Type: application/pgp-keys; name=key.asc\r\nContent-Transfer-Encoding: base64\r\n\r\nLS0tLS1CRUdJTg==\r\n\
            --x\r\nContent-Type: Application/PGP-Keys\r\n\r\n-----BEGIN PGP PUBLIC KEY BLOCK-----\r\n\
            --x--\r\n";
        let parts = key_parts(m);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"-----BEGIN");
        assert!(parts[1].starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        assert!(key_parts(b"Subject: x\r\n\r\nno parts\r\n").is_empty());
    }
}
