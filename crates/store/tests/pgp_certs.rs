//! The pgp_certs tables on SQLite and PostgreSQL (`POSTERN_TEST_POSTGRES_URL`):
//! put, replace, look up by address, list, delete.

use postern_store::{PgpCertRow, Store};

fn row(fpr: &str, addresses: &[&str], secret: bool, created_at: i64) -> PgpCertRow {
    PgpCertRow {
        fingerprint: fpr.to_owned(),
        public_cert: vec![0x99, 1, 2, 0, 255],
        sealed_secret: secret.then(|| vec![0x95, 0, 7]),
        local: secret,
        created_at,
        updated_at_ms: 1,
        addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
    }
}

async fn scenario(store: Store, suffix: &str) {
    let a = format!("AAAA{suffix}");
    let b = format!("BBBB{suffix}");
    let alice = format!("alice-{suffix}@example.org");
    let bob = format!("bob-{suffix}@example.org");
    store
        .pgp_cert_put(&row(&a, &[&alice], true, 10))
        .await
        .expect("put a");
    store
        .pgp_cert_put(&row(&b, &[&alice, &bob], false, 5))
        .await
        .expect("put b");

    let for_alice = store.pgp_certs_for(&alice).await.expect("lookup");
    assert_eq!(
        for_alice
            .iter()
            .map(|c| c.fingerprint.as_str())
            .collect::<Vec<_>>(),
        vec![b.as_str(), a.as_str()],
        "oldest first"
    );
    let got = store.pgp_cert_get(&a).await.expect("get").expect("exists");
    assert_eq!(got, row(&a, &[&alice], true, 10));
    assert_eq!(
        store
            .pgp_cert_get(&b)
            .await
            .expect("get")
            .expect("b")
            .sealed_secret,
        None
    );

    // Replacing a row replaces its addresses too.
    let mut replaced = row(&b, &[&bob], false, 5);
    replaced.updated_at_ms = 99;
    store.pgp_cert_put(&replaced).await.expect("replace");
    assert_eq!(store.pgp_certs_for(&alice).await.expect("lookup").len(), 1);
    assert_eq!(
        store.pgp_cert_get(&b).await.expect("get"),
        Some(replaced.clone())
    );

    let listed = store.pgp_cert_list().await.expect("list");
    assert!(
        listed
            .iter()
            .any(|c| c.fingerprint == a && c.addresses == [alice.clone()])
    );

    assert!(store.pgp_cert_delete(&a).await.expect("delete"));
    assert!(!store.pgp_cert_delete(&a).await.expect("delete again"));
    assert!(
        store
            .pgp_certs_for(&alice)
            .await
            .expect("lookup")
            .is_empty()
    );
    assert_eq!(
        store.pgp_certs_for(&bob).await.expect("lookup"),
        vec![replaced]
    );
}

#[tokio::test]
async fn certs_are_stored_found_by_address_replaced_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/postern.db", dir.path().display());
    let store = Store::connect(&url).await.expect("connect sqlite");
    scenario(store, &format!("s{}", std::process::id())).await;
    if let Some(url) = postern_store::testing::postgres_url() {
        let store = Store::connect(&url).await.expect("connect postgres");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        scenario(store, &format!("p{}x{nanos}", std::process::id())).await;
    }
}
