//! Whole mails: PGP/MIME (RFC 3156), inline PGP, RFC 9788 protected headers.
//!
//! # Building
//!
//! A mail is split into its *routing* header fields (From, To, Date, Received...),
//! which stay outside, and its *content* (the `Content-*` fields plus the body),
//! which becomes the inner MIME entity: encrypted whole into the
//! `application/octet-stream` part of `multipart/encrypted`, or signed as the first
//! part of `multipart/signed`. Inner bytes are taken as they are (attachments and
//! 8-bit text are untouched); what we add is written with CRLF, the line ending of
//! mail on the wire.
//!
//! # Opening
//!
//! [`decrypt_message`] gives back the mail as the sender wrote it: the outer
//! routing fields, then the decrypted inner entity (with the real Subject etc. if it
//! carried protected headers). Inline PGP in a `text/plain` part is decrypted in
//! place. [`verify_message`] checks `multipart/signed` and cleartext-signed mail.

use std::io::Write;

use mail_parser::PartType;
use sequoia_openpgp::{Cert, Fingerprint};

use crate::decrypt::decrypt;
use crate::encrypt::encrypt;
use crate::error::{PgpError, Result};
use crate::mime::{self, ContentType, Field};
use crate::sign::{DetachedSignature, sign_detached};
use crate::verify::{Verification, verify_detached, verify_inline};

/// Which OpenPGP structure a mail carries (only the outermost one counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgpFormat {
    /// `multipart/encrypted; protocol="application/pgp-encrypted"`.
    PgpMimeEncrypted,
    /// `multipart/signed; protocol="application/pgp-signature"`.
    PgpMimeSigned,
    /// `-----BEGIN PGP MESSAGE-----` inside a text/plain part.
    InlineEncrypted,
    /// `-----BEGIN PGP SIGNED MESSAGE-----` inside a text/plain part.
    InlineSigned,
    /// No OpenPGP structure.
    Plain,
}

/// A mail opened by [`decrypt_message`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedMessage {
    /// The decrypted mail, ready for delivery.
    pub message: Vec<u8>,
    /// What it was.
    pub format: PgpFormat,
    /// The cert whose secret key decrypted it.
    pub decrypted_with: Fingerprint,
    /// Signatures found: inside the OpenPGP message, and on a `multipart/signed`
    /// inner entity (sign-then-encrypt as RFC 3156 §6.1 allows).
    pub signatures: Vec<Verification>,
}

const ENCRYPTED_PROTOCOL: &str = "application/pgp-encrypted";
const SIGNATURE_PROTOCOL: &str = "application/pgp-signature";
const BEGIN_MESSAGE: &str = "-----BEGIN PGP MESSAGE-----";
const END_MESSAGE: &str = "-----END PGP MESSAGE-----";
const BEGIN_SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const END_SIGNATURE: &str = "-----END PGP SIGNATURE-----";
/// RFC 9788's obscured Subject for the outside of an encrypted mail.
const OBSCURED_SUBJECT: &str = "...";
/// Fields copied into the encrypted part as protected headers (RFC 9788 §2).
const PROTECTED: [&str; 9] = [
    "subject",
    "from",
    "to",
    "cc",
    "reply-to",
    "date",
    "message-id",
    "in-reply-to",
    "references",
];

/// Classifies a mail. Never fails: what cannot be parsed is [`PgpFormat::Plain`].
pub fn detect(message: &[u8]) -> PgpFormat {
    let ct = ContentType::of(mime::split(message).header);
    let protocol = ct.param("protocol").map(str::to_ascii_lowercase);
    match (ct.mime.as_str(), protocol.as_deref()) {
        ("multipart/encrypted", Some(ENCRYPTED_PROTOCOL)) => return PgpFormat::PgpMimeEncrypted,
        ("multipart/signed", Some(SIGNATURE_PROTOCOL)) => return PgpFormat::PgpMimeSigned,
        _ => {}
    }
    match inline_parts(message).first() {
        Some(p) if p.encrypted => PgpFormat::InlineEncrypted,
        Some(_) => PgpFormat::InlineSigned,
        None => PgpFormat::Plain,
    }
}

/// Encrypts a whole mail into PGP/MIME for `recipients`, signed by `signer` if
/// given (one combined OpenPGP message, RFC 3156 §6.2).
///
/// With `protected_headers`, the inner part carries copies of the routing fields
/// (Subject, From, To...) and `protected-headers="v1"`, and the outer Subject
/// becomes `...` (RFC 9788).
pub fn encrypt_message<'a>(
    message: &[u8],
    recipients: impl IntoIterator<Item = &'a Cert>,
    signer: Option<&Cert>,
    protected_headers: bool,
) -> Result<Vec<u8>> {
    let entity = mime::split(message);
    let fields = mime::fields(entity.header);
    let inner = inner_entity(&fields, entity.body, entity.eol, protected_headers);
    let armored = encrypt(&inner, recipients, signer)?;

    let boundary = mime::boundary(armored.as_bytes())?;
    let mut body = Vec::with_capacity(armored.len() + 512);
    write!(
        body,
        "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
         --{boundary}\r\n\
         Content-Type: application/pgp-encrypted\r\n\
         Content-Description: PGP/MIME version identification\r\n\
         \r\n\
         Version: 1\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\
         \r\n"
    )?;
    body.extend_from_slice(&mime::to_crlf(armored.as_bytes()));
    write!(body, "\r\n--{boundary}--\r\n")?;

    let content_type = format!(
        "multipart/encrypted; protocol=\"{ENCRYPTED_PROTOCOL}\";\r\n boundary=\"{boundary}\""
    );
    let obscure = protected_headers.then_some(OBSCURED_SUBJECT);
    Ok(outer_message(&fields, obscure, &content_type, &body))
}

/// Signs a whole mail as `multipart/signed` (RFC 3156 §5): the content becomes the
/// first part, in canonical CRLF form, and a detached signature over exactly those
/// bytes the second. `micalg` names the hash actually used.
///
/// The content is not re-encoded: a part with 8-bit text or trailing whitespace
/// can be altered by a relay and then fail to verify (RFC 3156 asks for 7-bit
/// transfer encodings); mail from current clients is already encoded that way.
pub fn sign_message(message: &[u8], signer: &Cert) -> Result<Vec<u8>> {
    let entity = mime::split(message);
    let fields = mime::fields(entity.header);
    let inner = inner_entity(&fields, entity.body, entity.eol, false);
    let part = mime::to_crlf(&inner);
    let signature = sign_detached(&part, signer)?;

    let boundary = mime::boundary(&part)?;
    let mut body = Vec::with_capacity(part.len() + 1024);
    write!(
        body,
        "This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n--{boundary}\r\n"
    )?;
    body.extend_from_slice(&part);
    write!(
        body,
        "\r\n--{boundary}\r\n\
         Content-Type: {SIGNATURE_PROTOCOL}; name=\"signature.asc\"\r\n\
         Content-Description: OpenPGP digital signature\r\n\
         Content-Disposition: attachment; filename=\"signature.asc\"\r\n\
         \r\n"
    )?;
    body.extend_from_slice(&mime::to_crlf(signature.armored.as_bytes()));
    write!(body, "\r\n--{boundary}--\r\n")?;

    let content_type = signed_content_type(&signature, &boundary);
    Ok(outer_message(&fields, None, &content_type, &body))
}

/// Decrypts a PGP/MIME or inline-PGP mail with `secret_certs`, verifying
/// signatures against `verify_certs`.
///
/// Fails with [`PgpError::NotPgp`] for a mail that is not encrypted; the gateway
/// then delivers it unchanged (as it does on any other error, with a header
/// saying why).
pub fn decrypt_message(
    message: &[u8],
    secret_certs: &[Cert],
    verify_certs: &[Cert],
) -> Result<OpenedMessage> {
    match detect(message) {
        PgpFormat::PgpMimeEncrypted => decrypt_pgp_mime(message, secret_certs, verify_certs),
        PgpFormat::InlineEncrypted => decrypt_inline(message, secret_certs, verify_certs),
        _ => Err(PgpError::NotPgp("encrypted")),
    }
}

/// Verifies a `multipart/signed` or inline cleartext-signed mail against `certs`.
/// Fails with [`PgpError::NotPgp`] if the mail is not signed that way.
pub fn verify_message(message: &[u8], certs: &[Cert]) -> Result<Vec<Verification>> {
    match detect(message) {
        PgpFormat::PgpMimeSigned => verify_pgp_mime(message, certs),
        PgpFormat::InlineSigned => {
            let mut results = Vec::new();
            for part in inline_parts(message).iter().filter(|p| !p.encrypted) {
                if let Some(block) = armor_block(&part.text, BEGIN_SIGNED, END_SIGNATURE) {
                    results.extend(verify_inline(
                        block.block.as_bytes(),
                        std::io::sink(),
                        certs,
                    )?);
                }
            }
            Ok(results)
        }
        _ => Err(PgpError::NotPgp("signed")),
    }
}

/// The `multipart/signed` Content-Type value for a signature (RFC 3156 §5).
pub fn signed_content_type(signature: &DetachedSignature, boundary: &str) -> String {
    format!(
        "multipart/signed; micalg={}; protocol=\"{SIGNATURE_PROTOCOL}\";\r\n boundary=\"{boundary}\"",
        signature.micalg()
    )
}

// ---------------------------------------------------------------------------
// Helpers.

/// The content of a mail as a MIME entity: its Content-* fields (RFC 2045 default
/// if none), optionally the protected copies of routing fields, a blank line, the
/// body.
fn inner_entity(fields: &[Field<'_>], body: &[u8], eol: &[u8], protected: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    let mut has_content_type = false;
    for f in fields.iter().filter(|f| f.is_content()) {
        if f.is("content-type") {
            has_content_type = true;
            if protected {
                out.extend_from_slice(&with_protected_param(f.raw, eol));
                continue;
            }
        }
        out.extend_from_slice(f.raw);
    }
    if !has_content_type {
        out.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii");
        if protected {
            out.extend_from_slice(b"; protected-headers=\"v1\"");
        }
        out.extend_from_slice(eol);
    }
    if protected {
        for f in fields.iter().filter(|f| PROTECTED.iter().any(|p| f.is(p))) {
            out.extend_from_slice(f.raw);
        }
    }
    out.extend_from_slice(eol);
    out.extend_from_slice(body);
    out
}

/// Appends `; protected-headers="v1"` to a raw Content-Type field.
fn with_protected_param(raw: &[u8], eol: &[u8]) -> Vec<u8> {
    let trimmed = raw.trim_ascii_end();
    let mut out = trimmed.to_vec();
    out.extend_from_slice(b"; protected-headers=\"v1\"");
    out.extend_from_slice(eol);
    out
}

/// Routing fields (CRLF), MIME-Version, the new Content-Type, blank line, body.
fn outer_message(
    fields: &[Field<'_>],
    obscured_subject: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2048);
    let mut has_version = false;
    for f in fields.iter().filter(|f| !f.is_content()) {
        if f.is("mime-version") {
            has_version = true;
        }
        match obscured_subject {
            Some(s) if f.is("subject") => {
                out.extend_from_slice(format!("Subject: {s}\r\n").as_bytes());
            }
            _ => out.extend_from_slice(&crlf_line(f.raw)),
        }
    }
    if !has_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    out.extend_from_slice(format!("Content-Type: {content_type}\r\n\r\n").as_bytes());
    out.extend_from_slice(body);
    out
}

/// A header field with CRLF line endings, ending in one even if the input's last
/// line had none.
fn crlf_line(raw: &[u8]) -> Vec<u8> {
    let mut v = mime::to_crlf(raw).into_owned();
    if !v.ends_with(b"\r\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// The decoded body of a part (undoing a Content-Transfer-Encoding if any).
fn decoded_body(part: &[u8]) -> Vec<u8> {
    match crate::mail::parse(part) {
        Some(m) => m.parts.first().map_or_else(
            || mime::split(part).body.to_vec(),
            |p| p.contents().to_vec(),
        ),
        None => mime::split(part).body.to_vec(),
    }
}

fn decrypt_pgp_mime(
    message: &[u8],
    secret_certs: &[Cert],
    verify_certs: &[Cert],
) -> Result<OpenedMessage> {
    let outer = mime::split(message);
    let ct = ContentType::of(outer.header);
    let boundary = ct
        .param("boundary")
        .ok_or(PgpError::Mime("multipart without boundary"))?;
    let parts = mime::multipart_parts(outer.body, boundary)?;
    let [control, payload] = parts.as_slice() else {
        return Err(PgpError::Mime(
            "multipart/encrypted needs exactly two parts",
        ));
    };
    if ContentType::of(mime::split(control).header).mime != ENCRYPTED_PROTOCOL {
        return Err(PgpError::Mime(
            "first part is not application/pgp-encrypted",
        ));
    }
    let ciphertext = decoded_body(payload);
    let (inner, report) = decrypt(&ciphertext, secret_certs, verify_certs)?;
    let mut signatures = report.signatures;
    if detect(&inner) == PgpFormat::PgpMimeSigned {
        signatures.extend(verify_pgp_mime(&inner, verify_certs)?);
    }

    let inner_entity = mime::split(&inner);
    let inner_fields = mime::fields(inner_entity.header);
    let protected = ContentType::of(inner_entity.header)
        .param("protected-headers")
        .is_some_and(|v| v.eq_ignore_ascii_case("v1"));
    let mut out = Vec::with_capacity(inner.len() + outer.header.len());
    for f in mime::fields(outer.header) {
        let replaced = protected && inner_fields.iter().any(|i| !i.is_content() && i.is(f.name));
        if !f.is_content() && !replaced {
            out.extend_from_slice(&crlf_line(f.raw));
        }
    }
    out.extend_from_slice(&inner);
    Ok(OpenedMessage {
        message: out,
        format: PgpFormat::PgpMimeEncrypted,
        decrypted_with: report.decrypted_with,
        signatures,
    })
}

fn verify_pgp_mime(message: &[u8], certs: &[Cert]) -> Result<Vec<Verification>> {
    let outer = mime::split(message);
    let ct = ContentType::of(outer.header);
    let boundary = ct
        .param("boundary")
        .ok_or(PgpError::Mime("multipart without boundary"))?;
    let parts = mime::multipart_parts(outer.body, boundary)?;
    let [signed, signature] = parts.as_slice() else {
        return Err(PgpError::Mime("multipart/signed needs exactly two parts"));
    };
    let signature = decoded_body(signature);
    // Relays may have turned CRLF into LF; the signature is over the CRLF form.
    verify_detached(&mime::to_crlf(signed), &signature, certs)
}

/// A text/plain part holding inline PGP, located in the raw mail.
struct InlinePart {
    /// Byte range of the whole part (header + body) in the raw mail.
    start: usize,
    body_start: usize,
    end: usize,
    /// Decoded text of the part.
    text: String,
    /// A PGP MESSAGE (true) or a cleartext-signed text (false).
    encrypted: bool,
}

/// The text/plain, non-attachment parts of the top-level mail that carry inline
/// PGP (forwarded `message/rfc822` mails are left alone).
fn inline_parts(message: &[u8]) -> Vec<InlinePart> {
    let Some(parsed) = crate::mail::parse(message) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for part in &parsed.parts {
        let PartType::Text(text) = &part.body else {
            continue;
        };
        let (start, body_start, end) = (
            part.offset_header as usize,
            part.offset_body as usize,
            part.offset_end as usize,
        );
        let Some(header) = message.get(start..body_start) else {
            continue;
        };
        let header = mime::split(header).header;
        let attachment = mime::fields(header).iter().any(|f| {
            f.is("content-disposition") && f.value().to_ascii_lowercase().starts_with("attachment")
        });
        if attachment || ContentType::of(header).mime != "text/plain" {
            continue;
        }
        let encrypted = text.contains(BEGIN_MESSAGE);
        if encrypted || text.contains(BEGIN_SIGNED) {
            out.push(InlinePart {
                start,
                body_start,
                end,
                text: text.to_string(),
                encrypted,
            });
        }
    }
    out
}

/// An armored block within a text, with the text around it.
struct Block<'a> {
    before: &'a str,
    block: &'a str,
    after: &'a str,
}

fn armor_block<'a>(text: &'a str, begin: &str, end: &str) -> Option<Block<'a>> {
    let b = text.find(begin)?;
    let e = b + text[b..].find(end)? + end.len();
    Some(Block {
        before: &text[..b],
        block: &text[b..e],
        after: &text[e..],
    })
}

/// Decrypts every inline PGP MESSAGE part in place. Each rewritten part becomes
/// `text/plain; charset=utf-8` with `8bit` transfer encoding; everything else
/// in the mail stays byte for byte.
fn decrypt_inline(
    message: &[u8],
    secret_certs: &[Cert],
    verify_certs: &[Cert],
) -> Result<OpenedMessage> {
    let parts: Vec<InlinePart> = inline_parts(message)
        .into_iter()
        .filter(|p| p.encrypted)
        .collect();
    let mut out = Vec::with_capacity(message.len());
    let mut copied = 0;
    let mut decrypted_with = None;
    let mut signatures = Vec::new();
    for part in &parts {
        let block = armor_block(&part.text, BEGIN_MESSAGE, END_MESSAGE)
            .ok_or(PgpError::NotPgp("encrypted"))?;
        let (plain, report) = decrypt(block.block.as_bytes(), secret_certs, verify_certs)?;
        decrypted_with.get_or_insert(report.decrypted_with);
        signatures.extend(report.signatures);

        let header_raw = message
            .get(part.start..part.body_start)
            .ok_or(PgpError::Mime("part offsets out of range"))?;
        let header = mime::split(header_raw);
        out.extend_from_slice(&message[copied..part.start]);
        for f in mime::fields(header.header) {
            if !(f.is("content-type") || f.is("content-transfer-encoding")) {
                out.extend_from_slice(&crlf_line(f.raw));
            }
        }
        out.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        let mut body = Vec::with_capacity(plain.len() + block.before.len() + block.after.len());
        body.extend_from_slice(block.before.as_bytes());
        body.extend_from_slice(&plain);
        body.extend_from_slice(block.after.as_bytes());
        out.extend_from_slice(&mime::to_crlf(&body));
        copied = part.end.min(message.len());
    }
    out.extend_from_slice(&message[copied..]);
    Ok(OpenedMessage {
        message: out,
        format: PgpFormat::InlineEncrypted,
        decrypted_with: decrypted_with.ok_or(PgpError::NotPgp("encrypted"))?,
        signatures,
    })
}

#[cfg(test)]
mod tests;
