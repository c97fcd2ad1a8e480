//! The `sql` account backend against a real PostgreSQL (the test database,
//! `POSTERN_TEST_POSTGRES_URL`) and a real MariaDB (`postern_tests::mariadb`, Postern reading
//! as a user that may only SELECT), each holding a Postfixadmin-style `mailbox` table: hashes made by
//! Dovecot (`{SHA512-CRYPT}`, a bare bcrypt) checked natively; the listed accounts exist
//! before their first login; SQL in a user name stays data; a password changed in the table
//! stops SCRAM at once (the hash is compared, not only `scram_ttl`); a mailbox made inactive
//! loses its live session; the table gone → `<temporary-auth-failure/>`, back → logins, and
//! the database dropping Postern's connections costs nothing.

#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use std::time::Duration;

use postern_tests::backend_login::{Login, accounts, config, wait_until};
use postern_tests::dovecot::doveadm_pw;
use postern_tests::mariadb::MariaDb;
use postern_tests::process::serve;
use sqlx::AnyPool;
use sqlx::Row as _;

async fn exec(db: &AnyPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Where the table lives and how this database spells things.
struct Db {
    /// The test's own connection.
    admin: AnyPool,
    /// What Postern connects with.
    url: String,
    /// `schema.mailbox` or `mail.mailbox`.
    table: String,
    /// The query parameter: `$1`, `?`.
    p: fn(usize) -> String,
    postgres: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_backend_on_postgresql() {
    let Some(url) = postern_store::testing::postgres_url() else {
        return;
    };
    sqlx::any::install_default_drivers();
    let admin = AnyPool::connect(&url).await.unwrap();
    let schema = format!("sqlb_{}", std::process::id());
    exec(&admin, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
    exec(&admin, &format!("CREATE SCHEMA {schema}")).await;
    let db = Db {
        admin,
        url,
        table: format!("{schema}.mailbox"),
        p: |n| format!("${n}"),
        postgres: true,
    };
    scenario(&db).await;
    exec(&db.admin, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_backend_on_mariadb() {
    let maria = MariaDb::start();
    sqlx::any::install_default_drivers();
    let db = Db {
        admin: AnyPool::connect(&maria.admin_url()).await.unwrap(),
        url: maria.postern_url(),
        table: "mail.mailbox".into(),
        p: |_| "?".into(),
        postgres: false,
    };
    scenario(&db).await;
}

async fn scenario(db: &Db) {
    let (table, p) = (db.table.as_str(), db.p);
    let url = &db.url;
    // Postfixadmin's columns that matter here.
    exec(
        &db.admin,
        &format!(
            "CREATE TABLE {table} (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255) NOT NULL, \
             local_part VARCHAR(255) NOT NULL, domain VARCHAR(255) NOT NULL, active BOOLEAN NOT NULL DEFAULT TRUE)"
        ),
    )
    .await;
    let bcrypt = doveadm_pw("BLF-CRYPT", "bob's mail pw");
    let bare_bcrypt = bcrypt.trim_start_matches("{BLF-CRYPT}");
    assert!(bare_bcrypt.starts_with("$2"), "{bcrypt}");
    for (user, hash) in [
        ("alice", doveadm_pw("SHA512-CRYPT", "alice's mail pw")),
        ("bob", bare_bcrypt.to_owned()),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (username, password, local_part, domain) VALUES ({}, {}, {}, 'mail.test')",
            p(1),
            p(2),
            p(3)
        )))
        .bind(format!("{user}@mail.test"))
        .bind(hash)
        .bind(user.to_owned())
        .execute(&db.admin)
        .await
        .unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "sql",
        &format!(
            "url = \"{url}\"\n\
             password_query = \"SELECT password FROM {table} WHERE username = {p1} AND active\"\n\
             list_query = \"SELECT username FROM {table} WHERE domain = {p1} AND active\"\n\
             sync_interval = \"1s\"\nscram_ttl = \"1h\"",
            p1 = p(1),
        ),
    );
    let (mut server, addr, problems) = serve(&cfg);
    let login = Login::to(dir.path(), addr);
    let (alice, bob) = ("alice@mail.test", "bob@mail.test");

    wait_until("the table's accounts listed", || {
        let out = accounts(&cfg);
        out.contains(alice) && out.contains(bob)
    });
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(
        scram.contains("not-authorized"),
        "no SCRAM before a PLAIN login: {scram}"
    );
    assert!(login.plain(alice, "wrong").await.contains("not-authorized"));
    let ok = login.plain(alice, "alice's mail pw").await;
    assert!(ok.contains("<success"), "{{SHA512-CRYPT}}: {ok}");
    let ok = login.plain(bob, "bob's mail pw").await;
    assert!(ok.contains("<success"), "bare bcrypt: {ok}");
    // SQL in the user name is a parameter's value: it matches no row. (A JID cannot hold
    // `'` or `"`, so no string literal can be closed anyway; these are the SQL
    // metacharacters one can hold: comment, statement end, escape, wildcard.)
    for injected in [
        "alice--@mail.test",
        "alice;@mail.test",
        "alice\\@mail.test",
        "%@mail.test",
    ] {
        let answer = login.plain(injected, "alice's mail pw").await;
        assert!(answer.contains("not-authorized"), "{injected}: {answer}");
    }

    // A changed hash stops SCRAM at once, though scram_ttl is an hour.
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(scram.contains("<success"), "SCRAM after PLAIN: {scram}");
    let token = login.fast_token(alice, "alice's mail pw").await;
    assert!(login.fast(alice, &token).await.contains("<success"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET password = {} WHERE username = {}",
        p(1),
        p(2)
    )))
    .bind(doveadm_pw("SHA512-CRYPT", "new pw"))
    .bind(alice.to_owned())
    .execute(&db.admin)
    .await
    .unwrap();
    let scram = login.scram(alice, "alice's mail pw").await;
    assert!(
        scram.contains("not-authorized"),
        "SCRAM after the change: {scram}"
    );
    assert!(
        login
            .plain(alice, "alice's mail pw")
            .await
            .contains("not-authorized")
    );
    assert!(login.plain(alice, "new pw").await.contains("<success"));
    assert!(login.scram(alice, "new pw").await.contains("<success"));

    // Bob's mailbox made inactive: his session closed at the next sync, SCRAM and PLAIN
    // refused at once.
    assert!(login.scram(bob, "bob's mail pw").await.contains("<success"));
    let mut session = login.bound(bob, "bob's mail pw", "desk").await;
    exec(
        &db.admin,
        &format!("UPDATE {table} SET active = FALSE WHERE username = '{bob}'"),
    )
    .await;
    assert!(
        login
            .scram(bob, "bob's mail pw")
            .await
            .contains("not-authorized")
    );
    let closed = tokio::time::timeout(Duration::from_secs(15), session.read_to_close())
        .await
        .expect("the session is closed within a few sync intervals")
        .unwrap();
    assert!(closed.contains("<not-authorized"), "{closed}");

    // The database dropping Postern's connections: the next login opens new ones.
    if db.postgres {
        exec(
            &db.admin,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
                 AND query LIKE '%{table}%'"
            ),
        )
        .await;
    } else {
        let ids = sqlx::query(
            "SELECT CAST(id AS CHAR) FROM information_schema.processlist WHERE user = 'postern'",
        )
        .fetch_all(&db.admin)
        .await
        .unwrap();
        assert!(!ids.is_empty(), "Postern keeps connections");
        for row in ids {
            let id: String = row.try_get(0).unwrap();
            exec(&db.admin, &format!("KILL {id}")).await;
        }
    }
    let ok = login.plain(alice, "new pw").await;
    assert!(
        ok.contains("<success"),
        "after the connections were dropped: {ok}"
    );
    // The table gone (a broken database): no answer, which is no refusal; then back.
    let (away, back) = if db.postgres {
        (
            format!("ALTER TABLE {table} RENAME TO mailbox_away"),
            format!("ALTER TABLE {table}_away RENAME TO mailbox"),
        )
    } else {
        (
            format!("RENAME TABLE {table} TO {table}_away"),
            format!("RENAME TABLE {table}_away TO {table}"),
        )
    };
    exec(&db.admin, &away).await;
    let down = login.plain(alice, "new pw").await;
    assert!(down.contains("temporary-auth-failure"), "{down}");
    exec(&db.admin, &back).await;
    assert!(login.plain(alice, "new pw").await.contains("<success"));

    server.kill().unwrap();
    let _ = server.wait();
    let problems = problems.lock().unwrap();
    assert!(
        problems.iter().any(|l| l.contains("account backend SQL ")),
        "the outage is logged: {problems:?}"
    );
    // `user:password@` of the URL, as it would appear unredacted.
    let userinfo = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap();
    assert!(userinfo.contains(':'), "{url}");
    assert!(
        !problems.iter().any(|l| l.contains(&format!("{userinfo}@"))),
        "the database password stays out of the log: {problems:?}"
    );
}
