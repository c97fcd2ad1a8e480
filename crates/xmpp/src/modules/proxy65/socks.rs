//! The SOCKS5 side of the proxy (RFC 1928, as XEP-0065 §5.3 uses it): no authentication,
//! `CONNECT` to a "domain name" that is the stream's SHA-1 hash, port 0. Anything else is
//! refused with the RFC's reply code before the connection is closed.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a connection was refused (the reply code sent is in the variant).
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("not SOCKS version 5")]
    Version,
    #[error("the client offers no method without authentication")]
    NoMethod,
    #[error("command {0} is not CONNECT")]
    Command(u8),
    #[error("address type {0} is not a domain name")]
    AddressType(u8),
    #[error("the address is not a stream hash")]
    NotAHash,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reply codes (RFC 1928 §6).
const SUCCEEDED: u8 = 0;
const GENERAL_FAILURE: u8 = 1;
const NOT_ALLOWED: u8 = 2;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_NOT_SUPPORTED: u8 = 8;

/// Reads the greeting and the CONNECT request; the requested hash (lowercase hex). The
/// reply is not sent yet: [`accept`] or [`refuse`] does that.
pub async fn handshake(s: &mut TcpStream) -> Result<String, SocksError> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(SocksError::Version);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        s.write_all(&[5, 0xff]).await?;
        return Err(SocksError::NoMethod);
    }
    s.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != 5 {
        return Err(SocksError::Version);
    }
    if req[1] != 1 {
        reply(s, COMMAND_NOT_SUPPORTED, "").await?;
        return Err(SocksError::Command(req[1]));
    }
    if req[3] != 3 {
        reply(s, ADDRESS_NOT_SUPPORTED, "").await?;
        return Err(SocksError::AddressType(req[3]));
    }
    let mut len = [0u8; 1];
    s.read_exact(&mut len).await?;
    let mut addr = vec![0u8; usize::from(len[0])];
    s.read_exact(&mut addr).await?;
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    let hash = String::from_utf8(addr)
        .ok()
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|h| h.to_ascii_lowercase());
    match hash {
        Some(h) => Ok(h),
        None => {
            reply(s, GENERAL_FAILURE, "").await?;
            Err(SocksError::NotAHash)
        }
    }
}

/// Tells the client it is connected (it waits for the activation from here).
pub async fn accept(s: &mut TcpStream, hash: &str) -> std::io::Result<()> {
    reply(s, SUCCEEDED, hash).await
}

/// Tells the client no (a third connection for one stream, the proxy full).
pub async fn refuse(s: &mut TcpStream) -> std::io::Result<()> {
    reply(s, NOT_ALLOWED, "").await
}

async fn reply(s: &mut TcpStream, code: u8, hash: &str) -> std::io::Result<()> {
    let mut out = vec![5, code, 0, 3, u8::try_from(hash.len()).unwrap_or(0)];
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(&[0, 0]);
    s.write_all(&out).await
}

/// XEP-0065 §5.3.2: SHA-1 of sid + initiator + target (full JIDs), lowercase hex.
pub fn stream_hash(sid: &str, initiator: &str, target: &str) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(sid.as_bytes());
    h.update(initiator.as_bytes());
    h.update(target.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_the_xep_example() {
        // XEP-0065 Example 12 names these three; the hash is SHA-1 of their concatenation.
        let h = stream_hash(
            "vxf9n471bn46",
            "requester@example.com/foo",
            "target@example.org/bar",
        );
        assert_eq!(h.len(), 40);
        assert_eq!(
            h,
            hex::encode(<sha1::Sha1 as sha1::Digest>::digest(
                b"vxf9n471bn46requester@example.com/footarget@example.org/bar"
            ))
        );
    }
}
