//! The archive's durability contract, against the real binary in its own process: a message
//! the server acknowledged (XEP-0198 `<a/>`) is in the archive after a `kill -9` during a
//! message flood.
//!
#![allow(clippy::unwrap_used)] // test helpers panic on failure, like the tests

use postern_store::{ArchiveFilter, Page, Selection, Store};
use postern_tests::process::{postern, serve};
use postern_tests::{Raw, attr, trusting};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const SM: &str = "urn:xmpp:sm:3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_is_in_the_archive_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("postern.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"localhost\"\n\
             [xmpp]\nstarttls = [\"127.0.0.1:0\"]\ndirect_tls = []\n\
             [gateway]\nenabled = false\n[http]\nlisten = []\n[xmpp.proxy65]\nenabled = false\n",
            data.display()
        ),
    )
    .unwrap();
    for who in ["alice@localhost", "bob@localhost"] {
        postern(
            &config,
            &["account", "add", who, "--password-stdin"],
            "pw\n",
        );
    }
    let (mut server, addr, problems) = serve(&config);
    let cert = CertificateDer::from_pem_file(data.join("certs").join("localhost.crt")).unwrap();
    let tls = trusting(cert);
    let login = |jid: &'static str, resource: &'static str| {
        let tls = tls.clone();
        async move {
            let raw = Raw::connect(addr).await.unwrap();
            let mut raw = Raw::login_trusting(raw, tls, jid, "pw", resource)
                .await
                .unwrap();
            raw.send(&format!("<enable xmlns='{SM}'/>")).await.unwrap();
            raw.read_element("enabled").await.unwrap();
            raw
        }
    };
    let alice = login("alice@localhost", "a").await;
    let bob = login("bob@localhost", "b").await;

    // Two senders flood at once; each asks for an acknowledgement now and then and goes on
    // sending without waiting for it. The last answer each got counts.
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 100;
    let flood = |mut raw: Raw, from: &'static str, to: &'static str| async move {
        let mut acked = 0;
        for round in 0..ROUNDS {
            let mut batch = String::new();
            for i in 0..PER_ROUND {
                let n = round * PER_ROUND + i;
                batch.push_str(&format!(
                    "<message to='{to}' type='chat'><body>{from}-{n}</body></message>"
                ));
            }
            batch.push_str(&format!("<r xmlns='{SM}'/>"));
            raw.send(&batch).await.unwrap();
            if round >= 2 {
                // Read the answer to an earlier request, two rounds behind the sending.
                let a = raw.read_element("a").await.unwrap();
                acked = attr(&a, "h").unwrap().parse::<usize>().unwrap();
            }
        }
        // The answers to the last two: the last one covers everything sent, and the kill
        // follows at once, while routing may still be writing.
        for _ in 0..2 {
            let a = raw.read_element("a").await.unwrap();
            acked = attr(&a, "h").unwrap().parse::<usize>().unwrap();
        }
        (raw, acked)
    };
    let (alice_done, bob_done) = tokio::join!(
        flood(alice, "alice", "bob@localhost"),
        flood(bob, "bob", "alice@localhost")
    );
    // Killed right after the last answers: an answer given before the writes it covers were
    // committed would show here as acknowledged messages missing from the archive.
    server.kill().unwrap();
    server.wait().unwrap();
    let ((_a, alice_acked), (_b, bob_acked)) = (alice_done, bob_done);
    assert!(
        alice_acked > 0 && bob_acked > 0,
        "{alice_acked} {bob_acked}"
    );

    let store = Store::connect(&format!("sqlite://{}", data.join("postern.db").display()))
        .await
        .unwrap();
    let (all, complete) = store
        .archive_page(
            &Selection::Account("alice@localhost".into()),
            &ArchiveFilter::default(),
            Page {
                limit: 2 * ROUNDS * PER_ROUND,
                backwards: false,
            },
        )
        .await
        .unwrap();
    assert!(complete);
    let bodies: std::collections::HashSet<&str> = all.iter().map(|m| m.body.as_str()).collect();
    for (who, acked) in [("alice", alice_acked), ("bob", bob_acked)] {
        let missing: Vec<usize> = (0..acked)
            .filter(|n| !bodies.contains(format!("{who}-{n}").as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{who}: {} of {acked} acknowledged messages not archived, first {:?}; server said {:?}",
            missing.len(),
            &missing[..missing.len().min(5)],
            problems.lock().unwrap()
        );
    }
    eprintln!(
        "acknowledged: alice {alice_acked}, bob {bob_acked}; archived {}",
        all.len()
    );
}
