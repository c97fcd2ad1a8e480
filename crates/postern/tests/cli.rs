//! The admin CLI as an admin uses it: the real binary on a temporary data dir.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn postern(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("postern.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"example.com\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn accounts_are_added_listed_disabled_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let add = postern(
        &cfg,
        &["account", "add", "Alice@Example.com", "--password-stdin"],
        "pw one\n",
    );
    assert!(add.status.success(), "{}", text(&add));
    let again = postern(
        &cfg,
        &["account", "add", "alice@example.com", "--password-stdin"],
        "x\n",
    );
    assert!(
        !again.status.success(),
        "duplicate accepted: {}",
        text(&again)
    );

    let foreign = postern(
        &cfg,
        &["account", "add", "bob@other.org", "--password-stdin"],
        "x\n",
    );
    assert!(!foreign.status.success());
    assert!(text(&foreign).contains("not served"), "{}", text(&foreign));
    let empty = postern(
        &cfg,
        &["account", "add", "carol@example.com", "--password-stdin"],
        "\n",
    );
    assert!(!empty.status.success(), "empty password accepted");

    assert!(
        postern(&cfg, &["account", "disable", "alice@example.com"], "")
            .status
            .success()
    );
    let list = postern(&cfg, &["account", "list"], "");
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "alice@example.com\tdisabled"
    );
    assert!(
        postern(&cfg, &["account", "enable", "alice@example.com"], "")
            .status
            .success()
    );
    assert!(
        postern(
            &cfg,
            &["account", "passwd", "alice@example.com", "--password-stdin"],
            "pw two\n"
        )
        .status
        .success()
    );
    let list = postern(&cfg, &["account", "list", "example.com"], "");
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "alice@example.com"
    );

    // The password is not in the database in any form an attacker could read off.
    let db = std::fs::read(dir.path().join("data/postern.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("data/postern.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(6).any(|w| w == b"pw two"),
            "plaintext password stored"
        );
    }

    assert!(
        postern(&cfg, &["account", "del", "alice@example.com"], "")
            .status
            .success()
    );
    let list = postern(&cfg, &["account", "list"], "");
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");
    let missing = postern(&cfg, &["account", "del", "alice@example.com"], "");
    assert!(!missing.status.success());
}

#[test]
fn an_invalid_config_reports_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "database = \"mysql://x\"\n[[domain]]\nname = \"bad_name\"\ncert = \"/nope.pem\"\n[xmpp.limits]\nmax_stanza_size = \"1 KiB\"\n",
    )
    .unwrap();
    let out = postern(&path, &["check-config"], "");
    assert!(!out.status.success());
    let msg = text(&out);
    for needle in [
        "database",
        "bad_name",
        "`cert` and `key`",
        "max_stanza_size",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
    }
    std::fs::write(&path, "[[domain]]\nname = \"a.example\"\ntypo_key = 1\n").unwrap();
    let out = postern(&path, &["check-config"], "");
    assert!(!out.status.success());
    assert!(text(&out).contains("typo_key"), "{}", text(&out));
}
