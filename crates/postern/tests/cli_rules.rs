//! `postern rules list` and `postern rules test` as an admin uses them: the real binary on
//! a config with rules, and `check-config` reporting every rule problem at once.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::path::Path;
use std::process::{Command, Output};

fn postern(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn config(dir: &Path, rules: &str) -> std::path::PathBuf {
    let key = dir.join("server.key");
    std::fs::write(&key, "rules-test-0123456789abcdef0123456789abcdef\n").unwrap();
    let path = dir.join("postern.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"example.org\"\n[gateway]\nserver_key_file = \"{}\"\n{rules}",
            dir.join("data").display(),
            key.display()
        ),
    )
    .unwrap();
    path
}

const RULES: &str = r#"
[[gateway.rules]]
name = "secure subject"
conditions = [{ subject_contains = "[secure]" }]
actions = [{ encrypt = true }, { stop = true }]

[[gateway.rules]]
name = "attachments to archive"
conditions = [{ has_attachments = true }]
actions = [{ copy_to = "archive@example.org" }]
"#;

#[test]
fn rules_list_and_test_show_what_the_gateway_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), RULES);
    let list = stdout(&postern(&cfg, &["rules", "list"]));
    assert!(
        list.starts_with("1 \"secure subject\": all of 1 condition(s)"),
        "{list}"
    );
    assert!(
        list.contains("condition(s) -> encrypt=true, stop=true\n"),
        "{list}"
    );
    assert!(
        list.contains(
            "2 \"attachments to archive\": all of 1 condition(s) -> copy_to=archive@example.org"
        ),
        "{list}"
    );

    let eml = dir.path().join("mail.eml");
    std::fs::write(
        &eml,
        "From: Alice <alice@example.org>\r\nTo: Bob <bob@partner.example>, carol@x.example\r\n\
         Subject: Plans [SECURE]\r\n\r\nhello\r\n",
    )
    .unwrap();
    let out = stdout(&postern(&cfg, &["rules", "test", eml.to_str().unwrap()]));
    assert_eq!(
        out,
        "from <alice@example.org> to bob@partner.example, carol@x.example\n\
         rule 1 \"secure subject\": matches\n\
         rule 2 \"attachments to archive\": skipped\n\
         result: encrypt\n"
    );

    let out = stdout(&postern(
        &cfg,
        &[
            "rules",
            "test",
            eml.to_str().unwrap(),
            "--from",
            "eve@other.example",
            "--to",
            "dave@example.org",
        ],
    ));
    assert!(
        out.starts_with("from <eve@other.example> to dave@example.org\n"),
        "{out}"
    );
}

#[test]
fn every_rule_problem_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        r#"
[[gateway.rules]]
name = "broken"
conditions = [{ sender = "re:(" }, { size_greater_than = "huge" }]
actions = [{ notify = { subject = "s", body = "b" } }]
"#,
    );
    let o = postern(&cfg, &["check-config"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(
        err.contains("gateway.rules[1] \"broken\": notify needs `to`"),
        "{err}"
    );
}
