//! Account scenarios on a temporary SQLite store.

use postern_accounts::{
    AccountError, AccountInfo, Accounts, ChannelBindings, ScramHash, ScramServer,
};
use postern_store::{RosterItem, Store, Subscription};
use sasl::client::Mechanism as _;
use sasl::client::mechanisms::Scram;
use sasl::common::ChannelBinding;
use sasl::common::scram::Sha256;

async fn accounts() -> (Accounts, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/postern.db", dir.path().display());
    let store = Store::connect(&url).await.expect("store");
    (Accounts::new(store), dir)
}

#[tokio::test]
async fn alice_logs_in_with_her_password_only_while_enabled() {
    let (accounts, _dir) = accounts().await;
    accounts
        .add("Alice@Example.com", "correct horse")
        .await
        .expect("add");
    assert!(matches!(
        accounts.add("alice@example.com", "other").await,
        Err(AccountError::Exists(_))
    ));

    assert!(
        accounts
            .verify_password("alice@example.com", "correct horse")
            .await
            .expect("verify")
    );
    assert!(
        accounts
            .verify_password("ALICE@example.COM", "correct horse")
            .await
            .expect("verify")
    );
    assert!(
        !accounts
            .verify_password("alice@example.com", "wrong horse")
            .await
            .expect("verify")
    );
    assert!(
        !accounts
            .verify_password("nobody@example.com", "correct horse")
            .await
            .expect("verify")
    );
    assert!(
        !accounts
            .verify_password("not an address", "x")
            .await
            .expect("verify")
    );
    assert!(
        accounts
            .is_active("alice@example.com")
            .await
            .expect("active")
    );

    accounts
        .set_disabled("alice@example.com", true)
        .await
        .expect("disable");
    assert!(
        !accounts
            .is_active("alice@example.com")
            .await
            .expect("active")
    );
    assert!(
        !accounts
            .verify_password("alice@example.com", "correct horse")
            .await
            .expect("verify")
    );
    assert!(
        accounts
            .scram_keys("alice@example.com", ScramHash::Sha256)
            .await
            .expect("keys")
            .is_none()
    );

    accounts
        .set_disabled("alice@example.com", false)
        .await
        .expect("enable");
    accounts
        .set_password("alice@example.com", "battery staple")
        .await
        .expect("passwd");
    assert!(
        !accounts
            .verify_password("alice@example.com", "correct horse")
            .await
            .expect("verify")
    );
    assert!(
        accounts
            .verify_password("alice@example.com", "battery staple")
            .await
            .expect("verify")
    );
    assert!(matches!(
        accounts.set_password("nobody@example.com", "x").await,
        Err(AccountError::NotFound(_))
    ));
    assert!(matches!(
        accounts.add("bob@example.com", "").await,
        Err(AccountError::InvalidPassword(_))
    ));
    assert!(matches!(
        accounts.add("bob", "pw").await,
        Err(AccountError::InvalidAddress(..))
    ));
}

#[tokio::test]
async fn passwords_are_stored_only_as_hashes() {
    let (accounts, dir) = accounts().await;
    let password = "Plaintext-Must-Not-Appear-42";
    accounts
        .add("alice@example.com", password)
        .await
        .expect("add");
    accounts
        .set_password("alice@example.com", password)
        .await
        .expect("passwd");

    let row = accounts
        .store()
        .account_get("alice", "example.com")
        .await
        .expect("get")
        .expect("row");
    assert!(row.credentials.password_hash.starts_with("$argon2id$"));

    // The database file, its WAL and shared-memory files: none holds the password.
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes())
        );
        scanned += bytes.len();
    }
    assert!(scanned > 0);
}

#[tokio::test]
async fn scram_login_with_stored_keys() {
    let (accounts, _dir) = accounts().await;
    accounts
        .add("alice@example.com", "pencil")
        .await
        .expect("add");

    for (password, expect_ok) in [("pencil", true), ("pen", false)] {
        let mut client = Scram::<Sha256>::new("alice@example.com", password, ChannelBinding::None)
            .expect("client");
        let mut server =
            ScramServer::new(ScramHash::Sha256, false, false, ChannelBindings::default());
        let first = server
            .client_first(&client.initial())
            .expect("client-first");
        let keys = accounts
            .scram_keys(&first.username, ScramHash::Sha256)
            .await
            .expect("keys");
        assert!(keys.is_some());
        let challenge = server.server_first(keys);
        let response = client.response(&challenge).expect("client-final");
        let result = server.client_final(&response);
        assert_eq!(result.is_ok(), expect_ok, "password {password:?}");
        if let Ok(success) = result {
            client.success(&success).expect("server signature");
        }
    }
    for hash in ScramHash::ALL {
        let keys = accounts
            .scram_keys("alice@example.com", hash)
            .await
            .expect("keys")
            .expect("some");
        assert_eq!(keys.salt.len(), 16);
        assert_eq!(keys.iterations, hash.default_iterations());
        assert_eq!(keys.stored_key.len(), hash.output_len());
    }
    assert!(
        accounts
            .scram_keys("bob@example.com", ScramHash::Sha1)
            .await
            .expect("keys")
            .is_none()
    );
}

#[tokio::test]
async fn list_and_delete() {
    let (accounts, _dir) = accounts().await;
    for address in ["bob@b.example", "alice@b.example", "zed@a.example"] {
        accounts.add(address, "pw").await.expect("add");
    }
    accounts
        .set_admin("zed@a.example", true)
        .await
        .expect("admin");
    accounts
        .set_disabled("bob@b.example", true)
        .await
        .expect("disable");
    let info = |address: &str, disabled, is_admin| AccountInfo {
        address: address.to_owned(),
        disabled,
        is_admin,
    };
    assert_eq!(
        accounts.list(None).await.expect("list"),
        [
            info("zed@a.example", false, true),
            info("alice@b.example", false, false),
            info("bob@b.example", true, false),
        ]
    );
    assert_eq!(
        accounts.list(Some("A.example")).await.expect("list").len(),
        1
    );
    assert!(accounts.is_admin("zed@a.example").await.expect("admin"));
    assert!(!accounts.is_admin("alice@b.example").await.expect("admin"));

    // Deleting takes the roster and group memberships along.
    let store = accounts.store();
    let contact = RosterItem {
        contact: "zed@a.example".into(),
        name: None,
        subscription: Subscription::Both,
        ask: false,
        groups: vec![],
    };
    store
        .roster_put("alice@b.example", &contact)
        .await
        .expect("roster");
    store
        .offline_push("alice@b.example", 1, "<message/>", 10)
        .await
        .expect("offline");
    accounts.group_add("staff").await.expect("group");
    accounts
        .group_add_member("staff", "alice@b.example")
        .await
        .expect("member");

    accounts.delete("ALICE@b.example").await.expect("delete");
    assert!(matches!(
        accounts.delete("alice@b.example").await,
        Err(AccountError::NotFound(_))
    ));
    assert!(!accounts.is_active("alice@b.example").await.expect("active"));
    assert!(
        store
            .roster_get("alice@b.example")
            .await
            .expect("roster")
            .1
            .is_empty()
    );
    assert!(
        store
            .offline_fetch("alice@b.example")
            .await
            .expect("offline")
            .is_empty()
    );
    assert!(
        accounts
            .group_members("staff")
            .await
            .expect("members")
            .is_empty()
    );
    assert_eq!(accounts.list(None).await.expect("list").len(), 2);
}

#[tokio::test]
async fn groups() {
    let (accounts, _dir) = accounts().await;
    accounts.group_add("legal").await.expect("add");
    accounts.group_add("board").await.expect("add");
    assert!(matches!(
        accounts.group_add("legal").await,
        Err(AccountError::GroupExists(_))
    ));
    assert!(matches!(
        accounts.group_add("").await,
        Err(AccountError::InvalidGroup(_))
    ));
    assert_eq!(
        accounts.group_list().await.expect("list"),
        ["board", "legal"]
    );

    assert!(
        accounts
            .group_add_member("legal", "Carol@Partner.example")
            .await
            .expect("add")
    );
    assert!(
        !accounts
            .group_add_member("legal", "carol@partner.example")
            .await
            .expect("again")
    );
    assert!(
        accounts
            .group_add_member("board", "carol@partner.example")
            .await
            .expect("add")
    );
    assert!(matches!(
        accounts
            .group_add_member("nope", "carol@partner.example")
            .await,
        Err(AccountError::NoSuchGroup(_))
    ));
    assert!(matches!(
        accounts.group_add_member("legal", "no address").await,
        Err(AccountError::InvalidAddress(..))
    ));
    assert_eq!(
        accounts.group_members("legal").await.expect("members"),
        ["carol@partner.example"]
    );
    assert_eq!(
        accounts
            .groups_of("CAROL@partner.example")
            .await
            .expect("of"),
        ["board", "legal"]
    );

    assert!(
        accounts
            .group_remove_member("legal", "carol@partner.example")
            .await
            .expect("rm")
    );
    assert!(
        !accounts
            .group_remove_member("legal", "carol@partner.example")
            .await
            .expect("rm")
    );
    accounts.group_del("board").await.expect("del");
    assert!(matches!(
        accounts.group_del("board").await,
        Err(AccountError::NoSuchGroup(_))
    ));
    assert!(matches!(
        accounts.group_members("board").await,
        Err(AccountError::NoSuchGroup(_))
    ));
    assert!(
        accounts
            .groups_of("carol@partner.example")
            .await
            .expect("of")
            .is_empty()
    );
}
