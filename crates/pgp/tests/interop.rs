//! Interop with the real tools: GnuPG (`gpg`) and Sequoia's `sq`.
//!
//! Every test here runs the tools and FAILS when one is missing: CI installs them
//! (Debian: `gnupg`, `sq`). Each tool gets a temporary home; nothing touches the
//! user's keyrings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use postern_pgp::{
    Cert, KeyAlgorithm, KeyProfile, KeySpec, PgpFormat, Verification, armored_public,
    armored_secret, decrypt_message, detect, encrypt_message, generate, parse_certs,
    select_encryption_cert, sign_message, verify_message,
};
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// The scenarios.

/// Alice (our key) mails Bob (our key) encrypted and signed; Bob reads it with gpg
/// and with sq, and both see Alice's good signature. Cv25519 and RSA.
#[test]
fn our_encrypted_mail_decrypts_and_verifies_with_gpg_and_sq() -> Result<()> {
    for algorithm in [KeyAlgorithm::Cv25519, KeyAlgorithm::Rsa2048] {
        let alice = key("Alice <alice@example.org>", algorithm, KeyProfile::Rfc4880);
        let bob = key("Bob <bob@example.org>", algorithm, KeyProfile::Rfc4880);
        let mail = sample_mail();
        let out = encrypt_message(&mail, [&bob], Some(&alice), false)?;
        let armored = armor_block(
            &out,
            "-----BEGIN PGP MESSAGE-----",
            "-----END PGP MESSAGE-----",
        )?;
        let expected_inner = inner_of(&mail);

        let gpg = Gpg::new()?;
        gpg.import(armored_secret(&bob)?.as_bytes())?;
        gpg.import(armored_public(&alice)?.as_bytes())?;
        let (plain, status) = gpg.run_status(&["--decrypt"], armored)?;
        assert_eq!(plain, expected_inner, "gpg plaintext ({algorithm})");
        // VALIDSIG <signing key> ... <primary key>: the last field is Alice's cert.
        let validsig = status
            .lines()
            .find(|l| l.contains("VALIDSIG"))
            .unwrap_or_default();
        assert!(
            validsig.ends_with(&alice.fingerprint().to_hex()),
            "{status}"
        );

        let sq = Sq::new()?;
        let plain = sq.decrypt(armored, &bob, &alice)?;
        assert_eq!(plain, expected_inner, "sq plaintext ({algorithm})");
    }
    Ok(())
}

/// Alice signs a mail as multipart/signed; `gpg --verify` and `sq verify` accept the
/// detached signature over the first part's exact (CRLF) bytes, and gpg's hash
/// algorithm is the one `micalg` names.
#[test]
fn our_signed_mail_verifies_with_gpg_and_sq() -> Result<()> {
    let alice = key(
        "alice@example.org",
        KeyAlgorithm::Cv25519,
        KeyProfile::Rfc4880,
    );
    let out = sign_message(&sample_mail(), &alice)?;
    let boundary = param(&out, "boundary")?;
    let micalg = param(&out, "micalg")?;
    let parts = parts(&out, &boundary)?;
    assert_eq!(parts.len(), 2);
    let sig = armor_block(
        parts[1],
        "-----BEGIN PGP SIGNATURE-----",
        "-----END PGP SIGNATURE-----",
    )?;

    let gpg = Gpg::new()?;
    gpg.import(armored_public(&alice)?.as_bytes())?;
    let data = gpg.file("part.eml", parts[0])?;
    let sigf = gpg.file("part.sig", sig)?;
    let (_, status) = gpg.run_status(&["--verify", path(&sigf), path(&data)], b"")?;
    let validsig = status
        .lines()
        .find(|l| l.contains("VALIDSIG"))
        .with_context(|| format!("no VALIDSIG in {status}"))?;
    assert!(
        validsig.contains(&alice.fingerprint().to_hex()),
        "{validsig}"
    );
    // VALIDSIG fields: ... <pubkey-algo> <hash-algo> ...; the 9th field after the tag.
    let hash_id: u8 = validsig
        .split_whitespace()
        .nth(9)
        .context("hash field")?
        .parse()?;
    let expected = match hash_id {
        8 => "pgp-sha256",
        9 => "pgp-sha384",
        10 => "pgp-sha512",
        11 => "pgp-sha224",
        other => bail!("unexpected hash id {other}"),
    };
    assert_eq!(micalg, expected);

    let sq = Sq::new()?;
    sq.verify_detached(parts[0], sig, &alice)?;
    Ok(())
}

/// Carol (a gpg user) mails Bob (our key) PGP/MIME encrypted and signed, with UTF-8
/// text and a binary attachment; our code returns exactly the mail she wrote and
/// reports her good signature. Also gpg's multipart/signed, inline encrypted and
/// cleartext-signed forms.
#[test]
fn gpg_mail_to_us_decrypts_and_verifies_with_our_code() -> Result<()> {
    let bob = key(
        "Bob <bob@example.org>",
        KeyAlgorithm::Cv25519,
        KeyProfile::Rfc4880,
    );
    let gpg = Gpg::new()?;
    gpg.import(armored_public(&bob)?.as_bytes())?;
    gpg.run(
        &[
            "--quick-gen-key",
            "Carol <carol@example.org>",
            "future-default",
            "default",
            "never",
        ],
        b"",
    )?;
    let carol =
        parse_certs(&gpg.run(&["--armor", "--export", "carol@example.org"], b"")?)?.remove(0);
    let bob_fpr = bob.fingerprint().to_hex();

    // PGP/MIME, encrypted + signed in one OpenPGP message, as Thunderbird does.
    let headers = "From: Carol <carol@example.org>\r\nTo: bob@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\n";
    let inner = inner_of(&sample_mail());
    let ct = gpg.run(
        &[
            "--armor",
            "--trust-model",
            "always",
            "--encrypt",
            "--sign",
            "-r",
            &bob_fpr,
            "-u",
            "carol@example.org",
        ],
        &inner,
    )?;
    let mut mail = format!(
        "{headers}Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"gpg\"\r\n\r\n\
--gpg\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
--gpg\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n"
    )
    .into_bytes();
    mail.extend_from_slice(&ct);
    mail.extend_from_slice(b"\r\n--gpg--\r\n");
    assert_eq!(detect(&mail), PgpFormat::PgpMimeEncrypted);
    let opened = decrypt_message(
        &mail,
        std::slice::from_ref(&bob),
        std::slice::from_ref(&carol),
    )?;
    let mut expected = headers.as_bytes().to_vec();
    expected.extend_from_slice(&inner);
    assert_eq!(opened.message, expected, "byte for byte");
    assert_eq!(opened.decrypted_with, bob.fingerprint());
    assert_good(&opened.signatures, &carol);

    // multipart/signed with a gpg detached signature over the CRLF first part.
    let sig = gpg.run(
        &["--armor", "--detach-sign", "-u", "carol@example.org"],
        &inner,
    )?;
    let mut signed = format!(
        "{headers}Content-Type: multipart/signed; micalg=pgp-sha512; protocol=\"application/pgp-signature\"; boundary=\"s\"\r\n\r\n--s\r\n"
    )
    .into_bytes();
    signed.extend_from_slice(&inner);
    signed.extend_from_slice(b"\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\n");
    signed.extend_from_slice(&sig);
    signed.extend_from_slice(b"\r\n--s--\r\n");
    assert_eq!(detect(&signed), PgpFormat::PgpMimeSigned);
    assert_good(
        &verify_message(&signed, std::slice::from_ref(&carol))?,
        &carol,
    );

    // Inline PGP: an encrypted text/plain body, and a cleartext-signed one.
    let text = "Hallo Bob, schöne Grüße!\n".as_bytes();
    let ct = gpg.run(
        &[
            "--armor",
            "--trust-model",
            "always",
            "--encrypt",
            "--sign",
            "-r",
            &bob_fpr,
            "-u",
            "carol@example.org",
        ],
        text,
    )?;
    let mut inline =
        format!("{headers}Content-Type: text/plain; charset=us-ascii\r\n\r\n").into_bytes();
    inline.extend_from_slice(&ct);
    assert_eq!(detect(&inline), PgpFormat::InlineEncrypted);
    let opened = decrypt_message(
        &inline,
        std::slice::from_ref(&bob),
        std::slice::from_ref(&carol),
    )?;
    assert!(String::from_utf8(opened.message)?.contains("Hallo Bob, schöne Grüße!\r\n"));
    assert_good(&opened.signatures, &carol);

    let clear = gpg.run(&["--clearsign", "-u", "carol@example.org"], text)?;
    let mut inline = format!("{headers}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").into_bytes();
    inline.extend_from_slice(&clear);
    assert_eq!(detect(&inline), PgpFormat::InlineSigned);
    assert_good(
        &verify_message(&inline, std::slice::from_ref(&carol))?,
        &carol,
    );
    Ok(())
}

/// Keys gpg made expired (with a faked clock) or revoked are never selected for
/// encryption; the valid one for the same address is.
#[test]
fn expired_and_revoked_gpg_keys_are_not_selected() -> Result<()> {
    let gpg = Gpg::new()?;
    let uid = "Erin <erin@example.org>";
    // Created in 2020, valid one day: long expired.
    gpg.run(
        &[
            "--faked-system-time",
            "20200101T000000!",
            "--yes",
            "--quick-gen-key",
            uid,
            "future-default",
            "default",
            "1d",
        ],
        b"",
    )?;
    // Created 2021, then revoked with the revocation certificate gpg stored.
    gpg.run(
        &[
            "--faked-system-time",
            "20210101T000000!",
            "--yes",
            "--quick-gen-key",
            uid,
            "future-default",
            "default",
            "never",
        ],
        b"",
    )?;
    // Created 2022, valid.
    gpg.run(
        &[
            "--faked-system-time",
            "20220101T000000!",
            "--yes",
            "--quick-gen-key",
            uid,
            "future-default",
            "default",
            "never",
        ],
        b"",
    )?;

    let certs = parse_certs(&gpg.run(&["--armor", "--export", "erin@example.org"], b"")?)?;
    assert_eq!(certs.len(), 3);
    let by_year = |year: u64| -> Result<&Cert> {
        let t =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((year - 1970) * 365 * 86_400);
        certs
            .iter()
            .find(|c| {
                let created = c.primary_key().key().creation_time();
                created >= t && created < t + std::time::Duration::from_secs(300 * 86_400)
            })
            .with_context(|| format!("no key from {year}"))
    };
    let (expired, to_revoke, valid) = (by_year(2020)?, by_year(2021)?, by_year(2022)?);

    let rev_file = gpg
        .home
        .path()
        .join("openpgp-revocs.d")
        .join(format!("{}.rev", to_revoke.fingerprint().to_hex()));
    let rev = std::fs::read_to_string(&rev_file).with_context(|| rev_file.display().to_string())?;
    // gpg guards the stored certificate with a ':' before the armor line.
    gpg.import(
        rev.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        )
        .as_bytes(),
    )?;
    let certs = parse_certs(&gpg.run(&["--armor", "--export", "erin@example.org"], b"")?)?;

    let now = SystemTime::now();
    let find = |fpr| {
        certs
            .iter()
            .find(|c| c.fingerprint() == fpr)
            .context("cert")
    };
    assert!(!postern_pgp::can_encrypt(find(expired.fingerprint())?, now));
    assert!(postern_pgp::is_revoked(find(to_revoke.fingerprint())?, now));
    assert!(!postern_pgp::can_encrypt(
        find(to_revoke.fingerprint())?,
        now
    ));
    let chosen = select_encryption_cert(&certs, "erin@example.org", now).context("a key")?;
    assert_eq!(chosen.fingerprint(), valid.fingerprint());

    let only_bad: Vec<Cert> = certs
        .iter()
        .filter(|c| c.fingerprint() != valid.fingerprint())
        .cloned()
        .collect();
    assert!(select_encryption_cert(&only_bad, "erin@example.org", now).is_none());
    Ok(())
}

/// v6 (RFC 9580) keys: GnuPG 2.2 cannot read them, so only `sq` is asked. With an
/// `sq` built on sequoia-openpgp 2 or later the mail must decrypt and verify; an
/// older `sq` (Debian 12 ships 0.27 on sequoia-openpgp 1.12) must refuse the v6
/// key, which is the documented reason v6 is opt-in.
#[test]
fn v6_keys_with_sq() -> Result<()> {
    let alice = key(
        "alice@example.org",
        KeyAlgorithm::Cv25519,
        KeyProfile::Rfc9580,
    );
    let bob = key(
        "bob@example.org",
        KeyAlgorithm::Cv25519,
        KeyProfile::Rfc9580,
    );
    let out = encrypt_message(&sample_mail(), [&bob], Some(&alice), false)?;
    let armored = armor_block(
        &out,
        "-----BEGIN PGP MESSAGE-----",
        "-----END PGP MESSAGE-----",
    )?;
    // Our own side always works.
    let opened = decrypt_message(
        &out,
        std::slice::from_ref(&bob),
        std::slice::from_ref(&alice),
    )?;
    assert_eq!(opened.message, sample_mail());
    assert_good(&opened.signatures, &alice);

    let sq = Sq::new()?;
    if sq.supports_v6 {
        assert_eq!(sq.decrypt(armored, &bob, &alice)?, inner_of(&sample_mail()));
        let signed = sign_message(&sample_mail(), &alice)?;
        let parts = parts(&signed, &param(&signed, "boundary")?)?;
        let sig = armor_block(
            parts[1],
            "-----BEGIN PGP SIGNATURE-----",
            "-----END PGP SIGNATURE-----",
        )?;
        sq.verify_detached(parts[0], sig, &alice)?;
    } else {
        eprintln!(
            "note: {} predates RFC 9580; checking that it refuses v6 keys",
            sq.version
        );
        assert!(sq.decrypt(armored, &bob, &alice).is_err());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Fixtures and helpers.

fn key(uid: &str, algorithm: KeyAlgorithm, profile: KeyProfile) -> Cert {
    let mut spec = KeySpec::new(uid);
    spec.algorithm = algorithm;
    spec.profile = profile;
    generate(&spec).expect("key generation")
}

/// UTF-8 text and a binary attachment; Content-* fields last so that the inner
/// entity is exactly the tail of the mail.
fn sample_mail() -> Vec<u8> {
    "From: Alice <alice@example.org>\r\n\
To: Bob <bob@example.org>\r\n\
Subject: Report\r\n\
Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\
Message-ID: <report@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\
\r\n\
--mixed\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Привет, Grüße, 你好 — attached.\r\n\
--mixed\r\n\
Content-Type: application/octet-stream; name=\"blob.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"blob.bin\"\r\n\
\r\n\
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh/w8fLz9PX29/j5+vv8/f7/\r\n\
--mixed--\r\n"
        .as_bytes()
        .to_vec()
}

/// The Content-* fields, blank line and body of `sample_mail`.
fn inner_of(mail: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(mail);
    let start = text.find("Content-Type:").expect("content type");
    mail[start..].to_vec()
}

fn assert_good(results: &[Verification], signer: &Cert) {
    assert!(
        matches!(results, [Verification::Good { signer: s, .. }] if *s == signer.fingerprint()),
        "{results:?}"
    );
}

fn armor_block<'a>(data: &'a [u8], begin: &str, end: &str) -> Result<&'a [u8]> {
    let b = find(data, begin.as_bytes()).context("armor begin")?;
    let e = b + find(&data[b..], end.as_bytes()).context("armor end")? + end.len();
    Ok(&data[b..e])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parameter of the top-level Content-Type (test-grade parsing).
fn param(mail: &[u8], name: &str) -> Result<String> {
    let text = String::from_utf8_lossy(mail);
    let header = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .replace("\r\n ", " ");
    let ct = header
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .context("content-type")?;
    let key = format!("{name}=");
    let at = ct.find(&key).context("param")? + key.len();
    Ok(ct[at..]
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .trim_matches('"')
        .to_owned())
}

/// Body parts between `--boundary` lines, without the CRLF before each delimiter.
fn parts<'a>(mail: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
    let delim = format!("\r\n--{boundary}");
    let mut out = Vec::new();
    let mut rest = &mail[find(mail, delim.as_bytes()).context("first delimiter")?..];
    loop {
        rest = &rest[delim.len()..];
        if rest.starts_with(b"--") {
            return Ok(out);
        }
        rest = &rest[2..]; // CRLF after the delimiter
        let next = find(rest, delim.as_bytes()).context("next delimiter")?;
        out.push(&rest[..next]);
        rest = &rest[next..];
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A throwaway GnuPG home, used with `--batch --pinentry-mode loopback` and an
/// empty passphrase.
struct Gpg {
    home: TempDir,
}

impl Gpg {
    fn new() -> Result<Self> {
        let home = TempDir::new()?;
        let gpg = Gpg { home };
        gpg.run(&["--version"], b"")
            .context("GnuPG (`gpg`) must be installed for these tests (Debian: gnupg)")?;
        Ok(gpg)
    }

    fn file(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let p = self.home.path().join(name);
        std::fs::write(&p, data)?;
        Ok(p)
    }

    fn import(&self, data: &[u8]) -> Result<()> {
        self.run(&["--import"], data).map(drop)
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
        let out = self.output(args, stdin)?;
        if !out.status.success() {
            bail!(
                "gpg {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }

    /// Runs with `--status-fd 2`; returns stdout and the status lines.
    fn run_status(&self, args: &[&str], stdin: &[u8]) -> Result<(Vec<u8>, String)> {
        let mut all = vec!["--status-fd", "2"];
        all.extend_from_slice(args);
        let out = self.output(&all, stdin)?;
        let status = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("gpg {args:?} failed: {status}");
        }
        Ok((out.stdout, status))
    }

    fn output(&self, args: &[&str], stdin: &[u8]) -> Result<Output> {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--no-tty",
            ])
            .args(args);
        run_with_stdin(cmd, stdin).context("running gpg (is GnuPG installed?)")
    }
}

/// `sq` with files in a temporary directory; adapts to the CLI of sq 0.x
/// (`--recipient-key`, `--signer-cert`) and 1.x (`--recipient-file`, `--signer-file`).
struct Sq {
    dir: TempDir,
    version: String,
    modern: bool,
    supports_v6: bool,
}

impl Sq {
    fn new() -> Result<Self> {
        let out = Command::new("sq")
            .arg("--version")
            .output()
            .context("Sequoia's `sq` must be installed for these tests (Debian: sq)")?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let major = |prefix: &str| -> Option<u32> {
            let at = version.find(prefix)? + prefix.len();
            version[at..].split('.').next()?.parse().ok()
        };
        let modern = major("sq ").is_some_and(|m| m >= 1);
        let supports_v6 = major("sequoia-openpgp ").is_some_and(|m| m >= 2);
        Ok(Sq {
            dir: TempDir::new()?,
            version,
            modern,
            supports_v6,
        })
    }

    fn file(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data)?;
        Ok(p)
    }

    fn decrypt(&self, ciphertext: &[u8], key: &Cert, signer: &Cert) -> Result<Vec<u8>> {
        let k = self.file("key.asc", armored_secret(key)?.as_bytes())?;
        let s = self.file("signer.asc", armored_public(signer)?.as_bytes())?;
        let m = self.file("msg.asc", ciphertext)?;
        let (kf, sf) = if self.modern {
            ("--recipient-file", "--signer-file")
        } else {
            ("--recipient-key", "--signer-cert")
        };
        self.run(&["decrypt", kf, path(&k), sf, path(&s), path(&m)])
    }

    fn verify_detached(&self, data: &[u8], sig: &[u8], signer: &Cert) -> Result<()> {
        let s = self.file("signer.asc", armored_public(signer)?.as_bytes())?;
        let d = self.file("data", data)?;
        let g = self.file("data.sig", sig)?;
        let sf = if self.modern {
            "--signer-file"
        } else {
            "--signer-cert"
        };
        let sig_flag = if self.modern {
            "--signature-file"
        } else {
            "--detached"
        };
        self.run(&["verify", sf, path(&s), sig_flag, path(&g), path(&d)])
            .map(drop)
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>> {
        let mut cmd = Command::new("sq");
        cmd.env("HOME", self.dir.path())
            .env("SEQUOIA_HOME", self.dir.path());
        if self.modern {
            cmd.arg("--batch");
        }
        cmd.args(args);
        let out = run_with_stdin(cmd, b"").context("running sq (is sq installed?)")?;
        if !out.status.success() {
            bail!(
                "sq {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }
}

fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Result<Output> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut pipe = child.stdin.take().context("stdin")?;
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("stdin writer panicked"))??;
    Ok(out)
}
