//! `postern pgp`, `postern group` and `postern quarantine` as an admin uses them: the real
//! binary on a temporary data dir, keys checked with GnuPG (Debian: gnupg).

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(program: &str, envs: &[(&str, &Path)], args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn postern(config: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_postern"), &[], &all, stdin)
}

fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn gpg(home: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut all = vec![
        "--batch",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--trust-model",
        "always",
    ];
    all.extend_from_slice(args);
    let o = run("gpg", &[("GNUPGHOME", home)], &all, stdin);
    assert!(
        o.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// A config with its own server key file.
fn config(dir: &Path, key: &str) -> PathBuf {
    let key_file = dir.join(format!("{key}.key"));
    std::fs::write(
        &key_file,
        format!("{key}-0123456789abcdef0123456789abcdef\n"),
    )
    .unwrap();
    let path = dir.join(format!("{key}.toml"));
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"example.com\"\n[gateway]\nserver_key_file = \"{}\"\n",
            dir.join("data").display(),
            key_file.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn keys_are_generated_sealed_imported_exported_revoked_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "server");
    let gpg_home = dir.path().join("gnupg");
    std::fs::create_dir(&gpg_home).unwrap();

    let fpr = ok(postern(
        &cfg,
        &["pgp", "keygen", "Alice@Example.com", "--name", "Alice"],
        b"",
    ));
    let fpr = fpr.trim();
    assert_eq!(fpr.len(), 40, "{fpr}");
    let refused = postern(&cfg, &["pgp", "keygen", "x@elsewhere.org"], b"");
    assert!(!refused.status.success());

    // Public export is a cert gpg reads, with Alice's user ID.
    let public = ok(postern(&cfg, &["pgp", "export", "alice@example.com"], b""));
    assert!(public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    gpg(&gpg_home, &["--import"], public.as_bytes());
    let listed = String::from_utf8(gpg(&gpg_home, &["--list-keys", "--with-colons"], b"")).unwrap();
    assert!(listed.contains("Alice <alice@example.com>"), "{listed}");

    // The secret is sealed with the server key: another key cannot export it.
    let secret = ok(postern(&cfg, &["pgp", "export", "--secret", fpr], b""));
    assert!(secret.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    let other = config(dir.path(), "other");
    let wrong = postern(&other, &["pgp", "export", "--secret", fpr], b"");
    assert!(
        !wrong.status.success(),
        "unsealed with the wrong server key"
    );
    ok(postern(&other, &["pgp", "export", fpr], b""));

    // Import: two outside certs in one file, and a passphrase-protected secret key.
    for uid in ["bob@partner.example", "carol@partner.example"] {
        gpg(
            &gpg_home,
            &[
                "--passphrase",
                "",
                "--quick-gen-key",
                uid,
                "future-default",
                "default",
                "never",
            ],
            b"",
        );
    }
    gpg(
        &gpg_home,
        &[
            "--passphrase",
            "secret pass",
            "--quick-gen-key",
            "dave@example.com",
            "future-default",
            "default",
            "never",
        ],
        b"",
    );
    let ring = gpg(
        &gpg_home,
        &[
            "--armor",
            "--export",
            "bob@partner.example",
            "carol@partner.example",
        ],
        b"",
    );
    let ring_file = dir.path().join("ring.asc");
    std::fs::write(&ring_file, &ring).unwrap();
    let imported = ok(postern(
        &cfg,
        &["pgp", "import", ring_file.to_str().unwrap()],
        b"",
    ));
    assert_eq!(
        imported.lines().filter(|l| l.starts_with("new\t")).count(),
        2,
        "{imported}"
    );
    let again = ok(postern(&cfg, &["pgp", "import", "-"], &ring));
    assert_eq!(
        again
            .lines()
            .filter(|l| l.starts_with("unchanged\t"))
            .count(),
        2,
        "{again}"
    );

    let dave = gpg(
        &gpg_home,
        &[
            "--passphrase",
            "secret pass",
            "--armor",
            "--export-secret-keys",
            "dave@example.com",
        ],
        b"",
    );
    let dave_file = dir.path().join("dave.asc");
    std::fs::write(&dave_file, &dave).unwrap();
    let wrong_pass = postern(
        &cfg,
        &[
            "pgp",
            "import",
            "--passphrase-stdin",
            dave_file.to_str().unwrap(),
        ],
        b"nope\n",
    );
    assert!(!wrong_pass.status.success());
    ok(postern(
        &cfg,
        &[
            "pgp",
            "import",
            "--passphrase-stdin",
            dave_file.to_str().unwrap(),
        ],
        b"secret pass\n",
    ));

    let local = ok(postern(&cfg, &["pgp", "list", "--local"], b""));
    assert_eq!(local.lines().count(), 2, "{local}");
    assert!(local.contains("alice@example.com") && local.contains("dave@example.com"));
    let external = ok(postern(&cfg, &["pgp", "list", "--external"], b""));
    assert_eq!(external.lines().count(), 2, "{external}");

    // Revoke, then delete.
    assert!(
        ok(postern(
            &cfg,
            &[
                "pgp",
                "revoke",
                "alice@example.com",
                "--reason",
                "compromised"
            ],
            b""
        ))
        .contains(fpr)
    );
    let local = ok(postern(&cfg, &["pgp", "list", "--local"], b""));
    assert!(
        local
            .lines()
            .any(|l| l.starts_with(fpr) && l.contains("revoked")),
        "{local}"
    );
    assert!(
        ok(postern(
            &cfg,
            &["pgp", "delete", "bob@partner.example"],
            b""
        ))
        .starts_with("deleted ")
    );
    assert_eq!(
        ok(postern(&cfg, &["pgp", "list", "--external"], b""))
            .lines()
            .count(),
        1
    );
    assert!(
        !postern(&cfg, &["pgp", "export", "bob@partner.example"], b"")
            .status
            .success()
    );
}

#[test]
fn groups_and_quarantine_commands() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "server");
    ok(postern(&cfg, &["group", "add", "legal"], b""));
    assert!(
        !postern(&cfg, &["group", "add", "legal"], b"")
            .status
            .success()
    );
    ok(postern(
        &cfg,
        &["group", "add-member", "legal", "Alice@Example.com"],
        b"",
    ));
    ok(postern(
        &cfg,
        &["group", "add-member", "legal", "partner@outside.example"],
        b"",
    ));
    assert_eq!(
        ok(postern(&cfg, &["group", "members", "legal"], b"")),
        "alice@example.com\npartner@outside.example\n"
    );
    ok(postern(
        &cfg,
        &["group", "remove-member", "legal", "partner@outside.example"],
        b"",
    ));
    assert_eq!(ok(postern(&cfg, &["group", "list"], b"")), "legal\n");
    ok(postern(&cfg, &["group", "del", "legal"], b""));
    assert!(
        !postern(&cfg, &["group", "members", "legal"], b"")
            .status
            .success()
    );

    assert_eq!(ok(postern(&cfg, &["quarantine", "list"], b"")), "");
    assert!(
        !postern(&cfg, &["quarantine", "release", "nosuchid"], b"")
            .status
            .success()
    );
}
