//! Encryption to several recipients, optionally signed by the sender, streaming.
//!
//! The pipeline is Sequoia's `Message → Armorer → Encryptor → [Signer] →
//! LiteralWriter`: output is ASCII-armored because it always ends up in mail.
//! Every valid encryption-capable key of each recipient gets a PKESK (mail clients
//! may hold only one of their subkeys), and the sender's cert is recorded as an
//! intended recipient in the signature (RFC 9580 §5.2.3.36) so a signed message
//! cannot be silently re-encrypted to someone else.

use std::io::{self, Write};

use sequoia_openpgp::Cert;
use sequoia_openpgp::armor;
use sequoia_openpgp::serialize::stream::{
    Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer,
};

use crate::cert::{POLICY, encryption_keys};
use crate::error::{PgpError, Result};
use crate::sign::signing_keypair;

/// A writer that encrypts what is written to it; call [`EncryptWriter::finish`]
/// at the end, or the output is truncated.
pub struct EncryptWriter<'a> {
    inner: Message<'a>,
}

/// Starts encrypting into `sink` for `recipients` (at least one), signed by
/// `signer` if given (a secret cert with an unlocked signing key).
///
/// Fails up front, before any byte is written, if a recipient has no usable
/// encryption key: the gateway decides what to do with such a recipient, we never
/// encrypt to a subset silently.
pub fn encrypt_writer<'a, W>(
    sink: W,
    recipients: impl IntoIterator<Item = &'a Cert>,
    signer: Option<&Cert>,
) -> Result<EncryptWriter<'a>>
where
    W: Write + Send + Sync + 'a,
{
    let recipients: Vec<&'a Cert> = recipients.into_iter().collect();
    if recipients.is_empty() {
        return Err(PgpError::NoRecipients);
    }
    let mut keys: Vec<Recipient<'a>> = Vec::new();
    for cert in &recipients {
        let valid = cert.with_policy(POLICY, None)?;
        let before = keys.len();
        if valid.alive().is_ok() && !crate::cert::is_revoked(cert, std::time::SystemTime::now()) {
            keys.extend(encryption_keys(&valid).map(Recipient::from));
        }
        if keys.len() == before {
            return Err(PgpError::NoEncryptionKey(cert.fingerprint()));
        }
    }
    let signer = signer.map(signing_keypair).transpose()?;

    let message = Message::new(sink);
    let message = Armorer::new(message).kind(armor::Kind::Message).build()?;
    let message = Encryptor::for_recipients(message, keys).build()?;
    let message = match signer {
        Some(keypair) => {
            let mut s = Signer::new(message, keypair)?;
            for cert in &recipients {
                s = s.add_intended_recipient(cert);
            }
            s.build()?
        }
        None => message,
    };
    let message = LiteralWriter::new(message).build()?;
    Ok(EncryptWriter { inner: message })
}

/// Encrypts `plaintext` in memory and returns the armored message.
pub fn encrypt<'a>(
    plaintext: &[u8],
    recipients: impl IntoIterator<Item = &'a Cert>,
    signer: Option<&Cert>,
) -> Result<String> {
    // Collected first so the borrow of the certs can shrink to that of `out`.
    let recipients: Vec<&Cert> = recipients.into_iter().collect();
    let mut out = Vec::new();
    let mut w = encrypt_writer(&mut out, recipients, signer)?;
    w.write_all(plaintext)?;
    w.finish()?;
    // Armor output is ASCII by construction.
    Ok(String::from_utf8(out).map_err(|e| anyhow::anyhow!(e))?)
}

impl EncryptWriter<'_> {
    /// Writes the signature (if any), the MDC/AEAD tag and the armor footer.
    pub fn finish(self) -> Result<()> {
        self.inner.finalize()?;
        Ok(())
    }
}

impl Write for EncryptWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
