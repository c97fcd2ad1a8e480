//! Store scenarios, each run against SQLite in a temporary directory and against the
//! PostgreSQL database `POSTERN_TEST_POSTGRES_URL` names (unset, they fail, unless
//! `POSTERN_TEST_SKIP_POSTGRES=1`: `postern_store::testing::postgres_url`). Names carry a
//! per-test suffix so tests can share one PostgreSQL database and run in parallel.
//!
//! A local PostgreSQL for these tests (Debian, PostgreSQL 15):
//!
//! ```text
//! pg_ctlcluster 15 main start
//! su postgres -c "psql -c \"CREATE ROLE postern LOGIN PASSWORD 'postern' CREATEDB;\""
//! su postgres -c "psql -c 'CREATE DATABASE postern_test OWNER postern;'"
//! POSTERN_TEST_POSTGRES_URL=postgres://postern:postern@127.0.0.1/postern_test cargo test -p postern-store
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use postern_store::{
    AccountRow, Backend, Confirmation, Credentials, RosterItem, ScramCredential, Store, StoreError,
    Subscription,
};
use sqlx::Row as _;

/// Runs `scenario(store, suffix)` on every available backend.
async fn on_each_backend<F, Fut>(scenario: F)
where
    F: Fn(Store, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/postern.db", dir.path().display());
    let store = Store::connect(&url).await.expect("connect sqlite");
    assert_eq!(store.backend(), Backend::Sqlite);
    scenario(store, unique()).await;

    if let Some(url) = postern_store::testing::postgres_url() {
        let store = Store::connect(&url).await.expect("connect postgres");
        assert_eq!(store.backend(), Backend::Postgres);
        scenario(store, unique()).await;
    }
}

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}x{}x{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn item(contact: &str, sub: Subscription, groups: &[&str]) -> RosterItem {
    RosterItem {
        contact: contact.to_owned(),
        name: None,
        subscription: sub,
        ask: false,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn scram(seed: u8) -> ScramCredential {
    ScramCredential {
        salt: vec![seed; 16],
        iterations: 4096 + u32::from(seed),
        stored_key: vec![seed, 0, 255, seed],
        server_key: vec![255, seed, 0],
    }
}

fn credentials(seed: u8) -> Credentials {
    Credentials {
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$seed{seed}"),
        scram_sha1: scram(seed),
        scram_sha256: scram(seed + 1),
        scram_sha512: scram(seed + 2),
    }
}

fn account(localpart: &str, domain: &str) -> AccountRow {
    AccountRow {
        localpart: localpart.to_owned(),
        domain: domain.to_owned(),
        credentials: credentials(1),
        disabled: false,
        is_admin: false,
        created_at_ms: 1_700_000_000_000,
    }
}

#[tokio::test]
async fn sqlite_file_and_directory_are_created_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/deeper/postern.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.expect("connect");
    assert!(path.exists());

    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("column");
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .expect("pragma")
        .try_get(0)
        .expect("column");
    assert_eq!(fk, 1);

    // Reopening runs the (already applied) migrations again without harm.
    store
        .roster_put("a@x", &item("b@x", Subscription::Both, &[]))
        .await
        .expect("put");
    drop(store);
    let store = Store::connect(&url).await.expect("reconnect");
    assert_eq!(store.roster_version("a@x").await.expect("version"), 1);
}

#[tokio::test]
async fn unsupported_url_is_rejected_without_leaking_the_password() {
    let err = Store::connect("mysql://root:hunter2@localhost/db")
        .await
        .expect_err("mysql");
    assert!(matches!(err, StoreError::UnsupportedUrl(_)));
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test]
async fn roster_versions_items_and_groups() {
    on_each_backend(|store, u| async move {
        let owner = format!("alice{u}@example.com");
        assert_eq!(store.roster_version(&owner).await.expect("version"), 0);
        assert_eq!(store.roster_get(&owner).await.expect("get"), (0, vec![]));

        let mut bob = item(
            "bob@example.com",
            Subscription::To,
            &["Friends", "Work", "Friends"],
        );
        bob.name = Some("Bob".to_owned());
        bob.ask = true;
        assert_eq!(store.roster_put(&owner, &bob).await.expect("put"), 1);
        let carol = item("carol@example.com", Subscription::None, &[]);
        assert_eq!(store.roster_put(&owner, &carol).await.expect("put"), 2);
        let aaron = item("aaron@example.com", Subscription::Both, &["Z", "A"]);
        assert_eq!(store.roster_put(&owner, &aaron).await.expect("put"), 3);

        let (version, items) = store.roster_get(&owner).await.expect("get");
        assert_eq!(version, 3);
        let contacts: Vec<_> = items.iter().map(|i| i.contact.as_str()).collect();
        assert_eq!(
            contacts,
            ["aaron@example.com", "bob@example.com", "carol@example.com"]
        );
        assert_eq!(items[0].groups, ["A", "Z"]);
        assert_eq!(items[1].groups, ["Friends", "Work"], "duplicates dropped");
        assert_eq!(items[1].name.as_deref(), Some("Bob"));
        assert!(items[1].ask);
        assert_eq!(items[1].subscription, Subscription::To);
        assert_eq!(items[2].name, None);

        // Update replaces name, state and groups.
        let bob2 = item("bob@example.com", Subscription::Both, &["Work"]);
        assert_eq!(store.roster_put(&owner, &bob2).await.expect("put"), 4);
        let got = store
            .roster_item(&owner, "bob@example.com")
            .await
            .expect("item");
        assert_eq!(got, Some(bob2));
        assert_eq!(
            store
                .roster_item(&owner, "nobody@example.com")
                .await
                .expect("item"),
            None
        );

        // Removing bumps the version; removing a missing item does not.
        assert_eq!(
            store
                .roster_remove(&owner, "bob@example.com")
                .await
                .expect("rm"),
            Some(5)
        );
        assert_eq!(
            store
                .roster_remove(&owner, "bob@example.com")
                .await
                .expect("rm"),
            None
        );
        assert_eq!(store.roster_version(&owner).await.expect("version"), 5);
        let (_, items) = store.roster_get(&owner).await.expect("get");
        assert_eq!(items.len(), 2);

        // Re-adding after removal starts with no stale groups.
        let bob3 = item("bob@example.com", Subscription::None, &[]);
        store.roster_put(&owner, &bob3).await.expect("put");
        let got = store
            .roster_item(&owner, "bob@example.com")
            .await
            .expect("item");
        assert_eq!(got.map(|i| i.groups), Some(vec![]));

        // Other owners are untouched.
        let other = format!("zed{u}@example.com");
        assert_eq!(store.roster_get(&other).await.expect("get"), (0, vec![]));
    })
    .await;
}

#[tokio::test]
async fn subscription_strings_round_trip() {
    for s in [
        Subscription::None,
        Subscription::To,
        Subscription::From,
        Subscription::Both,
    ] {
        assert_eq!(Subscription::parse(s.as_str()), Some(s));
    }
    assert_eq!(Subscription::parse("remove"), None);
    assert_eq!(Subscription::parse("BOTH"), None);
}

#[tokio::test]
async fn pending_inbound_subscriptions() {
    on_each_backend(|store, u| async move {
        let owner = format!("alice{u}@example.com");
        store
            .pending_in_put(&owner, "bob@x", "<presence type='subscribe'/>")
            .await
            .expect("put");
        store
            .pending_in_put(&owner, "anna@x", "<presence/>")
            .await
            .expect("put");
        store
            .pending_in_put(&owner, "bob@x", "<presence id='2'/>")
            .await
            .expect("upsert");
        let list = store.pending_in_list(&owner).await.expect("list");
        assert_eq!(
            list,
            [
                ("anna@x".to_owned(), "<presence/>".to_owned()),
                ("bob@x".to_owned(), "<presence id='2'/>".to_owned())
            ]
        );
        assert!(store.pending_in_remove(&owner, "bob@x").await.expect("rm"));
        assert!(!store.pending_in_remove(&owner, "bob@x").await.expect("rm"));
        assert_eq!(store.pending_in_list(&owner).await.expect("list").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn offline_messages_respect_the_limit_and_come_back_in_order() {
    on_each_backend(|store, u| async move {
        let owner = format!("alice{u}@example.com");
        let other = format!("bob{u}@example.com");
        for i in 0..3 {
            let stored = store
                .offline_push(&owner, 1000 + i, &format!("<m n='{i}'/>"), 3)
                .await;
            assert!(stored.expect("push"));
        }
        assert!(
            !store
                .offline_push(&owner, 2000, "<m/>", 3)
                .await
                .expect("push over limit")
        );
        assert!(
            store
                .offline_push(&other, 2000, "<other/>", 3)
                .await
                .expect("other owner")
        );

        let msgs = store.offline_fetch(&owner).await.expect("fetch");
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].xml, "<m n='0'/>");
        assert_eq!(msgs[2].stamp_ms, 1002);
        assert!(msgs.windows(2).all(|w| w[0].id < w[1].id));

        // Another owner's ids are not deleted through this owner.
        let other_ids: Vec<i64> = store
            .offline_fetch(&other)
            .await
            .expect("fetch")
            .iter()
            .map(|m| m.id)
            .collect();
        store
            .offline_delete(&owner, &other_ids)
            .await
            .expect("delete");
        assert_eq!(store.offline_fetch(&other).await.expect("fetch").len(), 1);

        store
            .offline_delete(&owner, &[msgs[0].id, msgs[2].id])
            .await
            .expect("delete");
        let left = store.offline_fetch(&owner).await.expect("fetch");
        assert_eq!(left, vec![msgs[1].clone()]);
        store
            .offline_delete(&owner, &[])
            .await
            .expect("empty delete");

        // More ids than one DELETE statement takes.
        let many = format!("many{u}@example.com");
        for i in 0..5 {
            store
                .offline_push(&many, i, "<m/>", 10)
                .await
                .expect("push");
        }
        let mut ids: Vec<i64> = store
            .offline_fetch(&many)
            .await
            .expect("fetch")
            .iter()
            .map(|m| m.id)
            .collect();
        ids.extend(-1200..-1);
        store
            .offline_delete(&many, &ids)
            .await
            .expect("chunked delete");
        assert!(store.offline_fetch(&many).await.expect("fetch").is_empty());
    })
    .await;
}

#[tokio::test]
async fn deleting_an_owner_clears_roster_pending_and_offline() {
    on_each_backend(|store, u| async move {
        let owner = format!("alice{u}@example.com");
        store
            .roster_put(&owner, &item("b@x", Subscription::Both, &["G"]))
            .await
            .expect("put");
        store
            .pending_in_put(&owner, "c@x", "<presence/>")
            .await
            .expect("pending");
        store
            .offline_push(&owner, 1, "<m/>", 10)
            .await
            .expect("offline");

        store
            .roster_delete_owner(&owner)
            .await
            .expect("delete owner");
        let (version, items) = store.roster_get(&owner).await.expect("get");
        assert!(items.is_empty());
        assert!(version > 1, "version keeps growing so stale caches resync");
        assert!(
            store
                .pending_in_list(&owner)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(store.offline_fetch(&owner).await.expect("fetch").is_empty());
    })
    .await;
}

#[tokio::test]
async fn account_rows() {
    on_each_backend(|store, u| async move {
        let domain = format!("d{u}.example");
        let other_domain = format!("c{u}.example");
        let alice = account("alice", &domain);
        assert!(store.account_insert(&alice).await.expect("insert"));
        assert!(!store.account_insert(&alice).await.expect("duplicate"));
        assert!(
            store
                .account_insert(&account("bob", &domain))
                .await
                .expect("insert")
        );
        assert!(
            store
                .account_insert(&account("zoe", &other_domain))
                .await
                .expect("insert")
        );

        assert_eq!(
            store.account_get("alice", &domain).await.expect("get"),
            Some(alice.clone())
        );
        assert_eq!(
            store.account_get("nobody", &domain).await.expect("get"),
            None
        );

        assert!(
            store
                .account_set_credentials("alice", &domain, &credentials(7))
                .await
                .expect("set")
        );
        assert!(
            !store
                .account_set_credentials("nobody", &domain, &credentials(7))
                .await
                .expect("set")
        );
        assert!(
            store
                .account_set_disabled("alice", &domain, true)
                .await
                .expect("disable")
        );
        assert!(
            store
                .account_set_admin("bob", &domain, true)
                .await
                .expect("admin")
        );
        assert!(
            !store
                .account_set_disabled("nobody", &domain, true)
                .await
                .expect("disable")
        );
        let got = store
            .account_get("alice", &domain)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(got.credentials, credentials(7));
        assert!(got.disabled);
        assert!(!got.is_admin);

        let list = store.account_list(Some(&domain)).await.expect("list");
        let names: Vec<_> = list
            .iter()
            .map(|a| (a.localpart.as_str(), a.disabled, a.is_admin))
            .collect();
        assert_eq!(names, [("alice", true, false), ("bob", false, true)]);
        let all = store.account_list(None).await.expect("list all");
        let ours: Vec<_> = all
            .iter()
            .filter(|a| a.domain == domain || a.domain == other_domain)
            .map(|a| a.localpart.as_str())
            .collect();
        assert_eq!(
            ours,
            ["zoe", "alice", "bob"],
            "sorted by domain, then localpart"
        );

        // Deleting an account takes its memberships and roster with it.
        let address = format!("alice@{domain}");
        let group = format!("g{u}");
        store.group_create(&group).await.expect("group");
        store
            .group_add_member(&group, &address)
            .await
            .expect("member");
        store
            .roster_put(&address, &item("b@x", Subscription::Both, &[]))
            .await
            .expect("roster");
        assert!(
            store
                .account_delete("alice", &domain)
                .await
                .expect("delete")
        );
        assert!(
            !store
                .account_delete("alice", &domain)
                .await
                .expect("delete again")
        );
        assert_eq!(
            store.account_get("alice", &domain).await.expect("get"),
            None
        );
        assert_eq!(
            store.group_members(&group).await.expect("members"),
            Some(vec![])
        );
        assert!(
            store
                .roster_get(&address)
                .await
                .expect("roster")
                .1
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn backend_confirmations_round_trip() {
    on_each_backend(|store, u| async move {
        let domain = format!("k{u}.example");
        assert_eq!(
            store
                .account_confirmation("alice", &domain)
                .await
                .expect("read"),
            None
        );
        store
            .account_insert(&account("alice", &domain))
            .await
            .expect("insert");
        let none = store
            .account_confirmation("alice", &domain)
            .await
            .expect("read");
        assert_eq!(none, Some(Confirmation::default()), "never confirmed");
        let tagged = Confirmation {
            at_ms: 1_700_000_000_123,
            tag: Some("ab".repeat(32)),
        };
        for c in [
            tagged.clone(),
            Confirmation {
                at_ms: 5,
                tag: None,
            },
            tagged,
        ] {
            assert!(
                store
                    .account_set_confirmation("alice", &domain, &c)
                    .await
                    .expect("set")
            );
            let back = store
                .account_confirmation("alice", &domain)
                .await
                .expect("read");
            assert_eq!(back, Some(c));
        }
        let absent = Confirmation::default();
        assert!(
            !store
                .account_set_confirmation("bob", &domain, &absent)
                .await
                .expect("set")
        );
    })
    .await;
}

#[tokio::test]
async fn groups_and_members() {
    on_each_backend(|store, u| async move {
        let legal = format!("legal{u}");
        let board = format!("board{u}");
        assert!(store.group_create(&legal).await.expect("create"));
        assert!(!store.group_create(&legal).await.expect("duplicate"));
        assert!(store.group_create(&board).await.expect("create"));
        let list = store.group_list().await.expect("list");
        assert!(list.contains(&legal) && list.contains(&board));
        assert!(list.windows(2).all(|w| w[0] <= w[1]), "sorted");

        assert_eq!(
            store.group_members(&legal).await.expect("members"),
            Some(vec![])
        );
        assert_eq!(
            store.group_members("no-such-group").await.expect("members"),
            None
        );
        assert!(store.group_add_member(&legal, "bob@x").await.expect("add"));
        assert!(
            store
                .group_add_member(&legal, "alice@x")
                .await
                .expect("add")
        );
        assert!(
            !store
                .group_add_member(&legal, "bob@x")
                .await
                .expect("add again")
        );
        assert!(store.group_add_member(&board, "bob@x").await.expect("add"));
        assert!(matches!(
            store.group_add_member("no-such-group", "bob@x").await,
            Err(StoreError::NoSuchGroup(_))
        ));
        assert_eq!(
            store.group_members(&legal).await.expect("members"),
            Some(vec!["alice@x".to_owned(), "bob@x".to_owned()])
        );
        let mut expected = vec![board.clone(), legal.clone()];
        expected.sort();
        let mut of_bob = store.groups_of("bob@x").await.expect("groups of");
        of_bob.retain(|g| g.ends_with(&u));
        assert_eq!(of_bob, expected);

        assert!(
            store
                .group_remove_member(&legal, "bob@x")
                .await
                .expect("remove")
        );
        assert!(
            !store
                .group_remove_member(&legal, "bob@x")
                .await
                .expect("remove again")
        );
        assert!(matches!(
            store.group_remove_member("no-such-group", "bob@x").await,
            Err(StoreError::NoSuchGroup(_))
        ));

        assert!(store.group_delete(&board).await.expect("delete"));
        assert!(!store.group_delete(&board).await.expect("delete again"));
        assert_eq!(store.group_members(&board).await.expect("members"), None);
        assert!(
            !store
                .groups_of("bob@x")
                .await
                .expect("groups")
                .contains(&board)
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_roster_writes_get_distinct_versions() {
    on_each_backend(|store, u| async move {
        let owner = format!("alice{u}@example.com");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                let owner = owner.clone();
                tokio::spawn(async move {
                    let contact = format!("c{i}@x");
                    store
                        .roster_put(&owner, &item(&contact, Subscription::None, &["G"]))
                        .await
                })
            })
            .collect();
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.expect("join").expect("put"));
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=16).collect::<Vec<i64>>());
        assert_eq!(store.roster_get(&owner).await.expect("get").1.len(), 16);
    })
    .await;
}

#[tokio::test]
async fn blocklists_add_remove_and_go_with_the_account() {
    on_each_backend(|store, u| async move {
        let local = format!("blocker{u}");
        let owner = format!("{local}@example.com");
        store
            .account_insert(&account(&local, "example.com"))
            .await
            .expect("account");
        let jids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        store
            .block(&owner, &jids(&["spam.example", "bob@x", "carol@x/phone"]))
            .await
            .expect("block");
        store.block(&owner, &jids(&["bob@x"])).await.expect("again");
        assert_eq!(
            store.blocklist(&owner).await.expect("list"),
            jids(&["bob@x", "carol@x/phone", "spam.example"])
        );
        assert!(
            store
                .blocklist("other@example.com")
                .await
                .expect("other")
                .is_empty()
        );
        store
            .unblock(&owner, &jids(&["bob@x"]))
            .await
            .expect("unblock");
        assert_eq!(
            store.blocklist(&owner).await.expect("list"),
            jids(&["carol@x/phone", "spam.example"])
        );
        assert!(
            store
                .account_delete(&local, "example.com")
                .await
                .expect("delete")
        );
        assert!(store.blocklist(&owner).await.expect("list").is_empty());
        store
            .block(&owner, &jids(&["a@x", "b@x"]))
            .await
            .expect("block");
        store.unblock(&owner, &[]).await.expect("unblock all");
        assert!(store.blocklist(&owner).await.expect("list").is_empty());
    })
    .await;
}

#[tokio::test]
async fn fast_tokens_expire_rotate_and_go_with_a_new_password_or_the_account() {
    on_each_backend(|store, u| async move {
        use postern_store::FastToken;
        let local = format!("fast{u}");
        let owner = format!("{local}@example.com");
        store
            .account_insert(&account(&local, "example.com"))
            .await
            .expect("account");
        let token = |secret: &str, issued_ms: i64, expires_ms: i64| FastToken {
            secret: secret.to_owned(),
            issued_ms,
            expires_ms,
        };
        let mech = "HT-SHA-256-NONE";
        for t in [
            token("old", 100, 10_000),
            token("new", 200, 10_000),
            token("stale", 50, 150),
        ] {
            store
                .fast_token_add(&owner, "phone", mech, &t)
                .await
                .expect("add");
        }
        store
            .fast_token_add(&owner, "laptop", mech, &token("other", 100, 10_000))
            .await
            .expect("add");
        // Expired ones are gone, newest first, per device and mechanism.
        let live = store
            .fast_tokens(&owner, "phone", mech, 160)
            .await
            .expect("list");
        assert_eq!(
            live,
            vec![token("new", 200, 10_000), token("old", 100, 10_000)]
        );
        assert!(
            store
                .fast_tokens(&owner, "phone", "OTHER", 160)
                .await
                .expect("l")
                .is_empty()
        );
        // Using "new" retires what was issued before it; one token can go alone.
        store
            .fast_tokens_delete(&owner, "phone", 200, None)
            .await
            .expect("rotate");
        assert_eq!(
            store
                .fast_tokens(&owner, "phone", mech, 160)
                .await
                .expect("l"),
            vec![token("new", 200, 10_000)]
        );
        store
            .fast_tokens_delete(&owner, "phone", 0, Some("new"))
            .await
            .expect("one");
        assert!(
            store
                .fast_tokens(&owner, "phone", mech, 160)
                .await
                .expect("l")
                .is_empty()
        );
        // New credentials revoke every device's tokens.
        let before = store
            .account_get(&local, "example.com")
            .await
            .expect("get")
            .expect("row");
        let creds = before.credentials.clone();
        assert!(
            store
                .account_set_credentials(&local, "example.com", &creds)
                .await
                .expect("set")
        );
        assert!(
            store
                .fast_tokens(&owner, "laptop", mech, 160)
                .await
                .expect("l")
                .is_empty()
        );
        // And the account's deletion.
        store
            .fast_token_add(&owner, "laptop", mech, &token("again", 300, 10_000))
            .await
            .expect("add");
        assert!(
            store
                .account_delete(&local, "example.com")
                .await
                .expect("delete")
        );
        assert!(
            store
                .fast_tokens(&owner, "laptop", mech, 160)
                .await
                .expect("l")
                .is_empty()
        );
    })
    .await;
}

fn archived(
    n: usize,
    from: &str,
    to: &str,
    body: &str,
    stamp_us: i64,
) -> postern_store::NewArchived {
    let bare = |j: &str| j.split('/').next().unwrap_or(j).to_owned();
    let resource = |j: &str| {
        j.split_once('/')
            .map(|(_, r)| r.to_owned())
            .unwrap_or_default()
    };
    postern_store::NewArchived {
        uid: format!("u{n}-{}", unique()),
        stamp_us,
        sender: bare(from),
        sender_resource: resource(from),
        recipient: bare(to),
        recipient_resource: resource(to),
        kind: "chat".into(),
        body: body.into(),
        xml: format!("<message><body>{body}</body></message>"),
        parties: vec![
            postern_store::Party {
                owner: bare(from),
                peer: bare(to),
                visible: true,
            },
            postern_store::Party {
                owner: bare(to),
                peer: bare(from),
                visible: !body.contains("hidden"),
            },
        ],
    }
}

/// Expiry and the domain filter find a message's parties through its sender and recipient:
/// a party that is neither is refused, and nothing of the batch is written.
#[tokio::test]
async fn archive_refuses_a_party_that_is_neither_side() {
    use postern_store::{ArchiveFilter, Selection};
    on_each_backend(|store, s| async move {
        let (alice, bob) = (format!("alice@{s}.test"), format!("bob@{s}.test"));
        let good = archived(1, &alice, &bob, "fine", 1_000);
        let mut stray = archived(2, &alice, &bob, "stray", 2_000);
        stray.parties[1].owner = format!("mallory@{s}.test");
        let err = store
            .archive_insert(&[good, stray])
            .await
            .expect_err("a stray party is refused");
        assert!(err.to_string().contains("mallory@"), "{err}");
        let all = ArchiveFilter::default();
        for owner in [&alice, &bob] {
            let n = store
                .archive_count(&Selection::Account(owner.clone()), &all)
                .await
                .expect("count");
            assert_eq!(n, 0, "nothing of the refused batch is written");
        }
    })
    .await;
}

#[tokio::test]
async fn archive_pages_filters_and_searches_alike_on_both_databases() {
    use postern_store::{ArchiveFilter, Page, Selection, With};
    on_each_backend(|store, s| async move {
        let (alice, bob, carol) = (
            format!("alice@{s}.test"),
            format!("bob@{s}.test"),
            format!("carol@{s}.test"),
        );
        let mut batch = Vec::new();
        for i in 0..30 {
            let (from, to) = if i % 2 == 0 {
                (format!("{alice}/phone"), bob.clone())
            } else {
                (format!("{bob}/desk"), alice.clone())
            };
            batch.push(archived(
                i,
                &from,
                &to,
                &format!("message {i} about Lunch-plans"),
                1_000 + i as i64,
            ));
        }
        batch.push(archived(
            30,
            &format!("{carol}/x"),
            &alice,
            "hidden from alice, Café",
            2_000,
        ));
        // The first half's party rows moved into their index, the rest still in the log:
        // readers see both.
        store.archive_insert(&batch[..15]).await.expect("insert");
        while store.archive_flush(7).await.expect("flush") > 0 {}
        store.archive_insert(&batch[15..]).await.expect("insert");
        let own = Selection::Own(alice.clone());
        let all = ArchiveFilter::default();

        // Forward paging: 10, 10, 10 (the last one complete), oldest first.
        let page = |backwards| Page {
            limit: 10,
            backwards,
        };
        let (p1, done) = store
            .archive_page(&own, &all, page(false))
            .await
            .expect("page");
        assert!(!done);
        assert_eq!(p1.len(), 10);
        assert_eq!(p1[0].uid, batch[0].uid);
        let mut after = ArchiveFilter {
            after: Some(p1[9].id),
            ..all.clone()
        };
        let (p2, _) = store
            .archive_page(&own, &after, page(false))
            .await
            .expect("page");
        assert_eq!(p2[0].uid, batch[10].uid);
        after.after = Some(p2[9].id);
        let (p3, done) = store
            .archive_page(&own, &after, page(false))
            .await
            .expect("page");
        assert!(
            done,
            "the third page is the last: carol's message is not in alice's own view"
        );
        assert_eq!(p3.len(), 10);
        assert_eq!(p3[9].uid, batch[29].uid);

        // Backwards: the newest ten, still oldest first.
        let (last, done) = store
            .archive_page(&own, &all, page(true))
            .await
            .expect("page");
        assert!(!done);
        assert_eq!(last[0].uid, batch[20].uid);
        assert_eq!(last[9].uid, batch[29].uid);

        // The admin log of alice's account has carol's message too; carol's own view has it.
        let account = Selection::Account(alice.clone());
        assert_eq!(
            store.archive_count(&account, &all).await.expect("count"),
            31
        );
        assert_eq!(store.archive_count(&own, &all).await.expect("count"), 30);
        assert_eq!(
            store
                .archive_count(&Selection::Own(carol.clone()), &all)
                .await
                .expect("count"),
            1
        );
        assert_eq!(
            store
                .archive_count(&Selection::Domain(format!("{s}.test")), &all)
                .await
                .expect("count"),
            31
        );

        // With: bare and full JIDs.
        let with = |bare: &str, resource: Option<&str>| ArchiveFilter {
            with: Some(With {
                bare: bare.to_owned(),
                resource: resource.map(str::to_owned),
            }),
            ..ArchiveFilter::default()
        };
        assert_eq!(
            store
                .archive_count(&own, &with(&bob, None))
                .await
                .expect("count"),
            30
        );
        assert_eq!(
            store
                .archive_count(&own, &with(&bob, Some("desk")))
                .await
                .expect("count"),
            15
        );
        assert_eq!(
            store
                .archive_count(&own, &with(&bob, Some("phone")))
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            store
                .archive_count(&own, &with(&carol, None))
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            store
                .archive_count(&Selection::Everyone, &with(&carol, None))
                .await
                .expect("count"),
            1
        );

        // Time range, inclusive at both ends.
        let range = ArchiveFilter {
            start_us: Some(1_005),
            end_us: Some(1_009),
            ..all.clone()
        };
        assert_eq!(store.archive_count(&own, &range).await.expect("count"), 5);

        // Words: split at punctuation, case-folded, every word needed; no FTS5 syntax leaks.
        let words = |w: &str| ArchiveFilter {
            words: Some(w.to_owned()),
            ..all.clone()
        };
        assert_eq!(
            store
                .archive_count(&account, &words("LUNCH plans"))
                .await
                .expect("count"),
            30
        );
        assert_eq!(
            store
                .archive_count(&account, &words("lunch-PLANS 7"))
                .await
                .expect("count"),
            1
        );
        assert_eq!(
            store
                .archive_count(&account, &words("café"))
                .await
                .expect("count"),
            1
        );
        assert_eq!(
            store
                .archive_count(&account, &words("lunch dinner"))
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            store
                .archive_count(&account, &words("lunch* \"(plans\" ^"))
                .await
                .expect("count"),
            30
        );
        assert_eq!(
            store
                .archive_count(&account, &words("  ,;  "))
                .await
                .expect("count"),
            0
        );

        // Ids, by uid, only within what the selection reads.
        let uids = vec![
            batch[3].uid.clone(),
            batch[30].uid.clone(),
            "nope".to_owned(),
        ];
        let found = store.archive_ids(&own, &uids).await.expect("ids");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, batch[3].uid);
        let ids = ArchiveFilter {
            ids: Some(vec![found[0].1]),
            ..all.clone()
        };
        let (one, _) = store
            .archive_page(&own, &ids, page(false))
            .await
            .expect("page");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].body, "message 3 about Lunch-plans");
        assert_eq!(one[0].sender_resource, "desk");

        let (first, last) = store
            .archive_bounds(&own)
            .await
            .expect("bounds")
            .expect("some");
        assert_eq!(
            (first.uid, last.uid),
            (batch[0].uid.clone(), batch[29].uid.clone())
        );
        assert!(
            store
                .archive_bounds(&Selection::Own(format!("nobody@{s}.test")))
                .await
                .expect("bounds")
                .is_none()
        );

        // A deleted account's messages leave its own view, not the admin log.
        store
            .account_delete("carol", &format!("{s}.test"))
            .await
            .expect("delete");
        assert_eq!(
            store
                .archive_count(&Selection::Own(carol.clone()), &all)
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            store
                .archive_count(&Selection::Account(carol.clone()), &all)
                .await
                .expect("count"),
            1
        );

        // A batch is all or nothing: a duplicate uid fails it whole.
        let dup = vec![archived(40, &alice, &bob, "new", 3_000), batch[0].clone()];
        assert!(store.archive_insert(&dup).await.is_err());
        assert_eq!(
            store.archive_count(&account, &all).await.expect("count"),
            31
        );
    })
    .await;
}

#[tokio::test]
async fn archive_preferences_round_trip() {
    use postern_store::ArchivePrefs;
    on_each_backend(|store, s| async move {
        let owner = format!("alice@{s}.test");
        assert_eq!(store.archive_prefs(&owner).await.expect("prefs"), None);
        let prefs = ArchivePrefs {
            default_mode: "roster".into(),
            always: vec![format!("bob@{s}.test"), format!("both@{s}.test")],
            never: vec![format!("both@{s}.test"), format!("eve@{s}.test/x")],
        };
        store.set_archive_prefs(&owner, &prefs).await.expect("set");
        let got = store
            .archive_prefs(&owner)
            .await
            .expect("prefs")
            .expect("some");
        assert_eq!(got.default_mode, "roster");
        assert_eq!(got.always, vec![format!("bob@{s}.test")]);
        assert_eq!(
            got.never,
            vec![format!("both@{s}.test"), format!("eve@{s}.test/x")]
        );
        let again = ArchivePrefs {
            default_mode: "never".into(),
            always: vec![],
            never: vec![],
        };
        store.set_archive_prefs(&owner, &again).await.expect("set");
        assert_eq!(
            store.archive_prefs(&owner).await.expect("prefs"),
            Some(again)
        );
    })
    .await;
}

fn upload(id: &str, owner: &str, size: i64, now: i64) -> postern_store::Upload {
    postern_store::Upload {
        id: id.to_owned(),
        owner: owner.to_owned(),
        domain: owner.split('@').nth(1).unwrap_or_default().to_owned(),
        filename: "f.bin".into(),
        size,
        content_type: "application/octet-stream".into(),
        state: postern_store::UploadState::Slot,
        created_ms: now,
        slot_expires_ms: now + 1000,
        stored_ms: None,
        sha256: None,
    }
}

#[tokio::test]
async fn upload_slots_quotas_single_use_and_expiry() {
    use postern_store::{QuotaExceeded, UploadFilter, UploadQuota, UploadState};
    on_each_backend(|store, s| async move {
        let (alice, bob) = (
            format!("alice{s}@u{s}.example"),
            format!("bob{s}@u{s}.example"),
        );
        let id = |n: &str| format!("{n}{s}");
        let now = 1_000_000;
        let quota = UploadQuota {
            per_owner: Some(100),
            per_domain: Some(150),
        };
        assert_eq!(
            store
                .upload_reserve(&upload(&id("a1"), &alice, 60, now), quota, now)
                .await
                .unwrap(),
            Ok(())
        );
        // The open slot counts: 60 + 60 > 100.
        assert_eq!(
            store
                .upload_reserve(&upload(&id("a2"), &alice, 60, now), quota, now)
                .await
                .unwrap(),
            Err(QuotaExceeded::Owner {
                used: 60,
                limit: 100
            })
        );
        assert_eq!(
            store
                .upload_reserve(&upload(&id("b1"), &bob, 80, now), quota, now)
                .await
                .unwrap(),
            Ok(())
        );
        // The domain's together: 60 + 80 + 20 > 150.
        assert_eq!(
            store
                .upload_reserve(&upload(&id("b2"), &bob, 20, now), quota, now)
                .await
                .unwrap(),
            Err(QuotaExceeded::Domain {
                used: 140,
                limit: 150
            })
        );
        // Space frees when the open slot expires (or, with a retention, the oldest file).
        assert_eq!(
            store
                .upload_retry_at(&alice, false, now, None)
                .await
                .unwrap(),
            Some(now + 1000)
        );
        assert_eq!(
            store
                .upload_retry_at(&format!("u{s}.example"), true, now, Some(5))
                .await
                .unwrap(),
            Some(now + 1000)
        );
        assert_eq!(
            store
                .upload_retry_at(&alice, false, now + 1000, None)
                .await
                .unwrap(),
            None
        );
        // Single use: one claim wins; a failed PUT gives the slot back; stored is final.
        assert!(store.upload_claim(&id("a1"), now).await.unwrap().is_some());
        assert!(store.upload_claim(&id("a1"), now).await.unwrap().is_none());
        store.upload_release(&id("a1")).await.unwrap();
        let claimed = store
            .upload_claim(&id("a1"), now)
            .await
            .unwrap()
            .expect("claimed again");
        assert_eq!(claimed.state, UploadState::Uploading);
        assert!(
            store
                .upload_stored(&id("a1"), now + 5, "abc")
                .await
                .unwrap()
        );
        assert!(
            !store
                .upload_stored(&id("a1"), now + 6, "abd")
                .await
                .unwrap(),
            "stored once"
        );
        assert_eq!(
            store
                .upload_retry_at(&alice, false, now + 2000, Some(100))
                .await
                .unwrap(),
            Some(now + 105),
            "the stored file frees its space when it expires"
        );
        assert!(store.upload_claim(&id("a1"), now).await.unwrap().is_none());
        let row = store.upload(&id("a1")).await.unwrap().expect("row");
        assert_eq!(
            (row.state, row.stored_ms, row.sha256.as_deref()),
            (UploadState::Stored, Some(now + 5), Some("abc"))
        );
        // An expired slot cannot be claimed, and no longer counts against the quota.
        let later = now + 2000;
        assert!(
            store
                .upload_claim(&id("b1"), later)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.upload_usage(&bob, later).await.unwrap(), 0);
        assert_eq!(store.upload_usage(&alice, later).await.unwrap(), 60);
        // Expiry: the unused slot now; the stored file only once it is older than the cutoff.
        let due: Vec<String> = store
            .uploads_expired(later, Some(now), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert!(
            due.contains(&id("b1")) && !due.contains(&id("a1")),
            "{due:?}"
        );
        // A legal hold keeps alice's files past their time; lifted, they expire.
        store
            .hold_place(&postern_store::Hold {
                owner: alice.clone(),
                reason: "case 1".into(),
                actor: "test".into(),
                since_ms: now,
            })
            .await
            .unwrap();
        let held: Vec<String> = store
            .uploads_expired(later, Some(now + 10), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert!(!held.contains(&id("a1")), "{held:?}");
        assert!(store.hold_lift(&alice).await.unwrap());
        let due: Vec<String> = store
            .uploads_expired(later, Some(now + 10), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert!(due.contains(&id("a1")), "{due:?}");
        let listed = store
            .uploads(&UploadFilter {
                owner: Some(alice.clone()),
                stored_only: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        // An interrupted PUT is given back at start.
        assert_eq!(
            store
                .upload_reserve(&upload(&id("a3"), &alice, 10, later), quota, later)
                .await
                .unwrap(),
            Ok(())
        );
        assert!(
            store
                .upload_claim(&id("a3"), later)
                .await
                .unwrap()
                .is_some()
        );
        assert!(store.uploads_reset_interrupted().await.unwrap() >= 1);
        assert_eq!(
            store.upload(&id("a3")).await.unwrap().expect("row").state,
            UploadState::Slot
        );
        assert!(store.upload_delete(&id("a1")).await.unwrap());
        assert!(!store.upload_delete(&id("a1")).await.unwrap());
    })
    .await;
}
