//! A real account backend for the interop suite (interop/xmpp/test_account_backends.py),
//! from the same harnesses the Rust tests use: starts Dovecot, slapd or MariaDB (a
//! Postfixadmin-style `mailbox` table, `{SHA512-CRYPT}` hashes) on loopback with the given
//! users, prints the `[accounts]` TOML that points Postern at it for DOMAIN, then a
//! line `END`, and stops the backend when its stdin closes.
//!
//! ```text
//! backend_fixture dovecot|imap|ldap|sql DOMAIN ADDRESS=PASSWORD...
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a test fixture: panics and prints

use std::io::Read as _;

use postern_tests::dovecot::{Dovecot, doveadm_pw};
use postern_tests::mariadb::MariaDb;
use postern_tests::slapd::{PEOPLE, SERVICE_DN, Slapd};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), Some(domain)) = (args.first(), args.get(1)) else {
        eprintln!("usage: backend_fixture dovecot|imap|ldap|sql DOMAIN ADDRESS=PASSWORD...");
        std::process::exit(2);
    };
    let users: Vec<(&str, &str)> = args[2..]
        .iter()
        .map(|a| a.split_once('=').expect("ADDRESS=PASSWORD"))
        .collect();
    let section = |backend: &str, body: String| {
        format!(
            "[accounts]\nby_domain = {{ \"{domain}\" = \"{backend}\" }}\n[accounts.{backend}]\n{body}"
        )
    };
    // Kept alive until stdin closes; dropping stops the backend.
    let mut mariadb = None;
    let (_dovecot, _slapd, toml) = match kind.as_str() {
        "dovecot" | "imap" => {
            let dovecot = Dovecot::start(&users);
            let toml = if kind == "dovecot" {
                section(
                    "dovecot",
                    format!(
                        "auth_socket = \"{}\"\nuserdb_socket = \"{}\"",
                        dovecot.auth_socket().display(),
                        dovecot.userdb_socket().display()
                    ),
                )
            } else {
                section(
                    "imap",
                    format!(
                        "url = \"imaps://localhost:{}\"\nca_file = \"{}\"",
                        dovecot.imaps_port,
                        dovecot.cert().display()
                    ),
                )
            };
            (Some(dovecot), None, toml)
        }
        "ldap" => {
            let people: Vec<(String, &str, &str)> = users
                .iter()
                .map(|(a, p)| (a.split('@').next().unwrap_or(a).to_owned(), *a, *p))
                .collect();
            let people: Vec<(&str, &str, &str)> = people
                .iter()
                .map(|(u, a, p)| (u.as_str(), *a, *p))
                .collect();
            let slapd = Slapd::start(&people);
            let toml = section(
                "ldap",
                format!(
                    "url = \"ldap://localhost:{}\"\nca_file = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\n\
                     bind_password_file = \"{}\"\nbase_dn = \"{PEOPLE}\"\n\
                     list_filter = \"(mail=*@{{domain}})\"",
                    slapd.ldap_port,
                    slapd.cert().display(),
                    slapd.service_password_file().display()
                ),
            );
            (None, Some(slapd), toml)
        }
        "sql" => {
            let db = MariaDb::start();
            let mut sql = String::from(
                "CREATE TABLE mail.mailbox (username VARCHAR(255) PRIMARY KEY, \
                 password VARCHAR(255) NOT NULL, domain VARCHAR(255) NOT NULL, \
                 active BOOLEAN NOT NULL DEFAULT TRUE);",
            );
            for (address, password) in &users {
                let domain = address.rsplit('@').next().unwrap_or("");
                // Test data from the command line: no quotes in it.
                assert!(!address.contains('\'') && !password.contains('\''));
                sql.push_str(&format!(
                    "INSERT INTO mail.mailbox (username, password, domain) VALUES ('{address}', '{}', '{domain}');",
                    doveadm_pw("SHA512-CRYPT", password)
                ));
            }
            db.root(&sql);
            let toml = section(
                "sql",
                format!(
                    "url = \"{}\"\n\
                     password_query = \"SELECT password FROM mailbox WHERE username = ? AND active\"\n\
                     list_query = \"SELECT username FROM mailbox WHERE domain = ? AND active\"",
                    db.postern_url()
                ),
            );
            mariadb = Some(db);
            (None, None, toml)
        }
        other => {
            eprintln!("unknown backend {other}");
            std::process::exit(2);
        }
    };
    println!("{toml}\nEND");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(mariadb);
}
