//! RFC 3156 structure and round trips; the interop proofs against gpg and sq live
//! in `tests/`.

use super::*;
use crate::keygen::{KeySpec, generate};

fn key(uid: &str) -> Cert {
    generate(&KeySpec::new(uid)).unwrap()
}

/// A mail with UTF-8 text and a binary attachment, content fields last (as most
/// clients write them) so that a round trip is byte-identical.
fn mail() -> Vec<u8> {
    "From: Alice <alice@example.org>\r\n\
To: bob@example.org\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Grüße aus Köln — 日本語\r\n\
--outer\r\n\
Content-Type: application/octet-stream; name=\"a.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"a.bin\"\r\n\
\r\n\
AAECAwQF/w==\r\n\
--outer--\r\n"
        .as_bytes()
        .to_vec()
}

fn header_value(message: &[u8], name: &str) -> Option<String> {
    mime::fields(mime::split(message).header)
        .iter()
        .find(|f| f.is(name))
        .map(Field::value)
}

#[test]
fn encrypted_mail_has_rfc3156_structure_and_round_trips() {
    let alice = key("alice@example.org");
    let bob = key("bob@example.org");
    let original = mail();
    let out = encrypt_message(&original, [&bob], Some(&alice), false).unwrap();

    // Outer: routing fields kept, one multipart/encrypted Content-Type.
    let outer = mime::split(&out);
    assert_eq!(
        header_value(&out, "from").as_deref(),
        Some("Alice <alice@example.org>")
    );
    assert_eq!(
        header_value(&out, "subject").as_deref(),
        Some("=?utf-8?q?Gr=C3=BC=C3=9Fe?=")
    );
    assert_eq!(
        mime::fields(outer.header)
            .iter()
            .filter(|f| f.is("content-type"))
            .count(),
        1
    );
    let ct = ContentType::of(outer.header);
    assert_eq!(ct.mime, "multipart/encrypted");
    assert_eq!(ct.param("protocol"), Some("application/pgp-encrypted"));
    assert!(!out.windows(2).enumerate().any(|(i, w)| w[1] == b'\n'
        && (i == 0 || w[0] != b'\r')
        && !String::from_utf8_lossy(&out[..i]).contains("-----BEGIN")));

    // Exactly two parts: the version part and the armored octet-stream.
    let parts = mime::multipart_parts(outer.body, ct.param("boundary").unwrap()).unwrap();
    assert_eq!(parts.len(), 2);
    let control = mime::split(parts[0]);
    assert_eq!(
        ContentType::of(control.header).mime,
        "application/pgp-encrypted"
    );
    assert_eq!(control.body, b"Version: 1\r\n");
    let payload = mime::split(parts[1]);
    assert_eq!(
        ContentType::of(payload.header).mime,
        "application/octet-stream"
    );
    assert!(payload.body.starts_with(b"-----BEGIN PGP MESSAGE-----\r\n"));
    assert!(payload.body.ends_with(b"-----END PGP MESSAGE-----\r\n"));
    // Nothing readable leaks.
    assert!(!String::from_utf8_lossy(&out).contains("Köln"));

    assert_eq!(detect(&out), PgpFormat::PgpMimeEncrypted);
    let opened = decrypt_message(
        &out,
        std::slice::from_ref(&bob),
        std::slice::from_ref(&alice),
    )
    .unwrap();
    assert_eq!(opened.message, original);
    assert_eq!(opened.decrypted_with, bob.fingerprint());
    assert!(
        matches!(&opened.signatures[..], [Verification::Good { signer, .. }] if *signer == alice.fingerprint())
    );
}

#[test]
fn protected_headers_hide_the_subject_and_come_back() {
    let bob = key("bob@example.org");
    let original = mail();
    let out = encrypt_message(&original, [&bob], None, true).unwrap();
    assert_eq!(header_value(&out, "subject").as_deref(), Some("..."));
    assert!(!String::from_utf8_lossy(&out).contains("Gr=C3"));

    let opened = decrypt_message(&out, &[bob], &[]).unwrap();
    let m = &opened.message;
    assert_eq!(
        header_value(m, "subject").as_deref(),
        Some("=?utf-8?q?Gr=C3=BC=C3=9Fe?=")
    );
    assert_eq!(
        mime::fields(mime::split(m).header)
            .iter()
            .filter(|f| f.is("subject"))
            .count(),
        1
    );
    let ct = ContentType::of(mime::split(m).header);
    assert_eq!(ct.mime, "multipart/mixed");
    assert_eq!(ct.param("protected-headers"), Some("v1"));
    assert!(opened.signatures.is_empty());
    // The body is intact.
    assert!(m.ends_with(mime::split(&original).body));
}

#[test]
fn mail_without_content_type_gets_the_rfc2045_default_inside() {
    let bob = key("bob@example.org");
    let original = b"From: a@example.org\r\nSubject: hi\r\n\r\nplain text\r\n";
    let out = encrypt_message(original, [&bob], None, false).unwrap();
    assert_eq!(header_value(&out, "mime-version").as_deref(), Some("1.0"));
    let opened = decrypt_message(&out, &[bob], &[]).unwrap();
    assert_eq!(
        opened.message,
        b"From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\nplain text\r\n"
    );
}

#[test]
fn signed_mail_has_rfc3156_structure_and_verifies() {
    let alice = key("alice@example.org");
    let original = mail();
    let out = sign_message(&original, &alice).unwrap();
    let outer = mime::split(&out);
    let ct = ContentType::of(outer.header);
    assert_eq!(ct.mime, "multipart/signed");
    assert_eq!(ct.param("protocol"), Some("application/pgp-signature"));
    let micalg = ct.param("micalg").unwrap().to_owned();
    assert!(micalg.starts_with("pgp-sha"), "{micalg}");

    let parts = mime::multipart_parts(outer.body, ct.param("boundary").unwrap()).unwrap();
    assert_eq!(parts.len(), 2);
    // First part: the content entity, byte for byte.
    assert_eq!(mime::split(parts[0]).body, mime::split(&original).body);
    assert_eq!(
        ContentType::of(mime::split(parts[0]).header).mime,
        "multipart/mixed"
    );
    let sig = mime::split(parts[1]);
    assert_eq!(
        ContentType::of(sig.header).mime,
        "application/pgp-signature"
    );
    assert!(sig.body.starts_with(b"-----BEGIN PGP SIGNATURE-----\r\n"));
    // micalg names the hash in the signature.
    let detached =
        crate::verify::verify_detached(parts[0], sig.body, std::slice::from_ref(&alice)).unwrap();
    assert!(matches!(detached[..], [Verification::Good { .. }]));

    assert_eq!(detect(&out), PgpFormat::PgpMimeSigned);
    let v = verify_message(&out, std::slice::from_ref(&alice)).unwrap();
    assert!(
        matches!(&v[..], [Verification::Good { signer, .. }] if *signer == alice.fingerprint())
    );

    // A relay that converted to LF does not break it; a changed byte does.
    let lf: Vec<u8> = out.iter().copied().filter(|&b| b != b'\r').collect();
    assert!(matches!(
        verify_message(&lf, std::slice::from_ref(&alice)).unwrap()[..],
        [Verification::Good { .. }]
    ));
    let tampered = String::from_utf8(out.clone())
        .unwrap()
        .replace("Köln", "Koln");
    assert!(matches!(
        verify_message(tampered.as_bytes(), std::slice::from_ref(&alice)).unwrap()[..],
        [Verification::Bad { .. }]
    ));
    assert!(matches!(
        verify_message(&out, &[]).unwrap()[..],
        [Verification::UnknownKey { .. }]
    ));
}

#[test]
fn sign_then_encrypt_reports_the_inner_signature() {
    let alice = key("alice@example.org");
    let bob = key("bob@example.org");
    let signed = sign_message(&mail(), &alice).unwrap();
    let out = encrypt_message(&signed, [&bob], None, false).unwrap();
    let opened = decrypt_message(&out, &[bob], &[alice]).unwrap();
    assert_eq!(opened.message, signed);
    assert!(matches!(opened.signatures[..], [Verification::Good { .. }]));
}

#[test]
fn inline_pgp_is_recognised_and_decrypted_in_place() {
    let alice = key("alice@example.org");
    let bob = key("bob@example.org");
    let armored =
        crate::encrypt::encrypt("Geheim: äöü\n".as_bytes(), [&bob], Some(&alice)).unwrap();

    // Top-level text/plain, LF line endings inside the armor as clients send it.
    let top = format!(
        "From: alice@example.org\r\nSubject: inline\r\nContent-Type: text/plain; charset=us-ascii\r\n\
Content-Transfer-Encoding: 7bit\r\n\r\nHi Bob,\r\n\r\n{}\r\nBye\r\n",
        armored.replace('\n', "\r\n")
    );
    assert_eq!(detect(top.as_bytes()), PgpFormat::InlineEncrypted);
    let opened = decrypt_message(
        top.as_bytes(),
        std::slice::from_ref(&bob),
        std::slice::from_ref(&alice),
    )
    .unwrap();
    let text = String::from_utf8(opened.message.clone()).unwrap();
    assert!(
        text.starts_with("From: alice@example.org\r\nSubject: inline\r\n"),
        "{text}"
    );
    assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
    // The armor's own last line ending plus the blank line after it.
    assert!(
        text.ends_with("\r\n\r\nHi Bob,\r\n\r\nGeheim: äöü\r\n\r\n\r\nBye\r\n"),
        "{text}"
    );
    assert!(!text.contains("BEGIN PGP"));
    assert!(matches!(opened.signatures[..], [Verification::Good { .. }]));

    // Nested in multipart/alternative, quoted-printable: the part is rewritten,
    // the HTML sibling and the rest stay byte for byte.
    let qp = armored.replace('=', "=3D").replace('\n', "\r\n");
    let nested = format!(
        "From: alice@example.org\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p>encrypted</p>\r\n--b--\r\n"
    );
    assert_eq!(detect(nested.as_bytes()), PgpFormat::InlineEncrypted);
    let opened = decrypt_message(nested.as_bytes(), &[bob], &[alice]).unwrap();
    let text = String::from_utf8(opened.message).unwrap();
    assert!(
        text.ends_with(
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Geheim: äöü\r\n\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>encrypted</p>\r\n--b--\r\n"
        ),
        "{text}"
    );
}

#[test]
fn cleartext_signed_mail_verifies() {
    use sequoia_openpgp::serialize::stream::{Message, Signer};
    let alice = key("alice@example.org");
    let mut csf = Vec::new();
    {
        let keypair = crate::sign::signing_keypair(&alice).unwrap();
        let m = Message::new(&mut csf);
        let mut w = Signer::new(m, keypair)
            .unwrap()
            .cleartext()
            .build()
            .unwrap();
        w.write_all(b"I agree.\n").unwrap();
        w.finalize().unwrap();
    }
    let mail = format!(
        "From: alice@example.org\r\nContent-Type: text/plain\r\n\r\n{}",
        String::from_utf8(csf).unwrap().replace('\n', "\r\n")
    );
    assert_eq!(detect(mail.as_bytes()), PgpFormat::InlineSigned);
    let v = verify_message(mail.as_bytes(), std::slice::from_ref(&alice)).unwrap();
    assert!(matches!(v[..], [Verification::Good { .. }]));
    let forged = mail.replace("I agree.", "I agree!");
    assert!(matches!(
        verify_message(forged.as_bytes(), &[alice]).unwrap()[..],
        [Verification::Bad { .. }]
    ));
}

#[test]
fn plain_and_malformed_mail() {
    let bob = key("bob@example.org");
    let plain = b"From: a@example.org\r\n\r\nhello\r\n";
    assert_eq!(detect(plain), PgpFormat::Plain);
    assert!(matches!(
        decrypt_message(plain, std::slice::from_ref(&bob), &[]),
        Err(PgpError::NotPgp(_))
    ));
    assert!(matches!(
        verify_message(plain, &[]),
        Err(PgpError::NotPgp(_))
    ));

    let no_close = b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n--x\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--x\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n";
    assert_eq!(detect(no_close), PgpFormat::PgpMimeEncrypted);
    assert!(matches!(
        decrypt_message(no_close, std::slice::from_ref(&bob), &[]),
        Err(PgpError::Mime(_))
    ));

    let garbled = b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n--x\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--x\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nAAAA\r\n-----END PGP MESSAGE-----\r\n--x--\r\n";
    assert!(decrypt_message(garbled, std::slice::from_ref(&bob), &[]).is_err());
    assert!(decrypt_message(b"", &[bob], &[]).is_err());
}

/// RFC 3156 §4's example, verbatim apart from line endings: recognised, and the
/// ciphertext part is found.
#[test]
fn rfc3156_encrypted_sample_is_recognised() {
    let sample = b"Content-Type: multipart/encrypted; boundary=foo;\r\n   protocol=\"application/pgp-encrypted\"\r\n\r\n\
--foo\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
--foo\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nVersion: 2.6.2\r\n\r\n\
hIwDY32hYGCE8MkBA/wOu7d45aUxF4Q0RKJprD3v5Z9K1YcRJ2fve87lMlDlx4Oj\r\n=zap9\r\n-----END PGP MESSAGE-----\r\n\r\n--foo--\r\n";
    assert_eq!(detect(sample), PgpFormat::PgpMimeEncrypted);
    let outer = mime::split(sample);
    let parts = mime::multipart_parts(outer.body, "foo").unwrap();
    assert_eq!(parts.len(), 2);
    assert!(decoded_body(parts[1]).starts_with(b"-----BEGIN PGP MESSAGE-----"));
    // Not decryptable by anyone here: an error, never a panic.
    assert!(decrypt_message(sample, &[key("x@example.org")], &[]).is_err());
}
