//! WKD end to end: the real HTTPS listener with a certificate for example.org and
//! openpgpkey.example.org; `curl` fetches Alice's key by the direct and the advanced
//! method, `gpg` imports it, and the hash path is the one `gpg-wks-client
//! --print-wkd-hash` computes. FAILS without curl, gpg and gpg-wks-client (Debian: curl,
//! gnupg, gpg-wks-client).

mod common;

use std::process::Command;

use anyhow::{Context, Result, bail};
use common::*;
use postern_gateway::wkd;
use postern_pgp::KeySpec;
use tokio::sync::watch;

const WKS_CLIENT: &str = "/usr/lib/gnupg/gpg-wks-client";

/// Serves `gw`'s WKD routes for `domain` on Postern's HTTPS stack (port 0) with a
/// certificate for the domain and `openpgpkey.<domain>`, written as `ca.pem` into `dir`.
/// Returns the port, the CA file and the handle that keeps the listener running.
async fn serve_wkd(
    gw: &postern_gateway::Gateway,
    domain: &str,
    dir: &std::path::Path,
) -> Result<(u16, std::path::PathBuf, watch::Sender<bool>)> {
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(vec![domain.to_owned(), format!("openpgpkey.{domain}")])?;
    let cert = params.self_signed(&key)?;
    let pem = dir.join("ca.pem");
    std::fs::write(&pem, cert.pem())?;
    let labels = vec![wkd::server::WKD_LABEL.to_owned()];
    let tls = postern_http::tls::server_config(
        vec![postern_core::tls::Identity {
            domain: domain.into(),
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }],
        &labels,
    )?;
    let config = postern_http::HttpConfig {
        listen: vec!["127.0.0.1:0".parse()?],
        ..Default::default()
    };
    let listeners = postern_http::Listeners::bind(&config).await?;
    let port = listeners.https_addrs().first().context("bound")?.port();
    let sites = postern_http::Sites::from_config(&config, vec![domain.into()], labels, &listeners);
    let (stop, rx) = watch::channel(false);
    tokio::spawn(postern_http::serve(
        listeners,
        wkd::server::router(gw.clone()),
        sites,
        tls,
        config,
        rx,
    ));
    Ok((port, pem, stop))
}

/// `curl` over HTTPS with `host` resolved to the loopback listener; (status, body).
fn curl(ca: &std::path::Path, host: &str, port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    let out_file = ca.with_file_name(format!("body-{port}-{}", path.len()));
    let o = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}"])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .context("curl must be installed (Debian: curl)")?;
    if !o.status.success() {
        bail!("curl failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let code: u16 = String::from_utf8_lossy(&o.stdout).trim().parse()?;
    Ok((code, std::fs::read(&out_file).unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_keys_are_published_by_wkd_over_https() -> Result<()> {
    let h = Harness::start().await?;
    let alice = h
        .keys()
        .generate(KeySpec::new("Alice <alice@example.org>"))
        .await?;
    // An outside key and an admin-imported public key for a local address are not published.
    let other = Gpg::new()?;
    let bob_key = other.generate("bob@example.org")?;
    h.keys().import(&bob_key, None).await?;

    let (port, ca, _stop) = serve_wkd(&h.gateway, "example.org", h.dir.path()).await?;

    let o = Command::new(WKS_CLIENT)
        .args(["--print-wkd-hash", "alice@example.org"])
        .output()
        .context("gpg-wks-client must be installed (Debian: gpg-wks-client)")?;
    let printed = String::from_utf8_lossy(&o.stdout);
    let gpg_hash = printed
        .split_whitespace()
        .next()
        .context("no hash")?
        .to_owned();
    assert_eq!(gpg_hash, wkd::hash("alice"));

    let direct = format!("/.well-known/openpgpkey/hu/{gpg_hash}?l=alice");
    let advanced = format!("/.well-known/openpgpkey/example.org/hu/{gpg_hash}");
    let ca2 = ca.clone();
    let (d, a, policy, bob, wrong_l) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            curl(&ca2, "example.org", port, &direct)?,
            curl(&ca2, "openpgpkey.example.org", port, &advanced)?,
            curl(
                &ca2,
                "openpgpkey.example.org",
                port,
                "/.well-known/openpgpkey/example.org/policy",
            )?,
            curl(
                &ca2,
                "example.org",
                port,
                &format!("/.well-known/openpgpkey/hu/{}", wkd::hash("bob")),
            )?,
            curl(
                &ca2,
                "example.org",
                port,
                &format!("/.well-known/openpgpkey/hu/{gpg_hash}?l=bob"),
            )?,
        ))
    })
    .await??;
    assert_eq!(d.0, 200);
    assert_eq!(a, d, "advanced and direct serve the same key");
    assert_eq!(policy.0, 200);
    assert_eq!(bob.0, 404, "not a local user's key");
    assert_eq!(wrong_l.0, 404, "l= must hash to the name");

    let gpg = Gpg::new()?;
    let (_, status) = gpg.run_status(&["--import"], &d.1)?;
    assert!(status.contains(&alice.fingerprint().to_hex()), "{status}");
    Ok(())
}

/// WKD lookup: a gateway for `localhost` publishes Bob's key; ours has no key for him,
/// looks him up when Alice writes to him (advanced method fails, direct succeeds), imports
/// the key and encrypts; gpg with Bob's secret opens the mail. A recipient the directory
/// does not know gets plain mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_recipient_is_looked_up_by_wkd() -> Result<()> {
    // The publishing side.
    let pub_dir = tempfile::tempdir()?;
    let store =
        postern_store::Store::connect(&format!("sqlite://{}/postern.db", pub_dir.path().display()))
            .await?;
    let publisher = postern_gateway::Gateway::new(
        postern_gateway::GatewayConfig::default(),
        vec!["localhost".into()],
        pub_dir.path(),
        postern_accounts::Accounts::new(store),
    )?;
    publisher
        .keys
        .generate(KeySpec::new("Bob <bob@localhost>"))
        .await?;
    let (port, ca, _stop) = serve_wkd(&publisher, "localhost", pub_dir.path()).await?;

    // Our side: no key for Bob.
    let ca_file = ca.clone();
    let mut h = Harness::start_with(move |c| {
        c.wkd.lookup = true;
        c.wkd.lookup_port = port;
        c.wkd.lookup_ca_file = Some(ca_file);
        c.wkd.lookup_timeout = std::time::Duration::from_secs(3);
    })
    .await?;
    let alice = h.keys().generate(KeySpec::new("alice@example.org")).await?;
    assert!(h.keys().encryption_cert("bob@localhost").await?.is_none());

    let mail = b"From: alice@example.org\r\nTo: bob@localhost\r\nSubject: hi\r\n\r\nfound you\r\n";
    let (code, text) = h
        .send("alice@example.org", &["bob@localhost"], mail)
        .await?;
    assert_eq!(code, 250, "{text}");
    let out = h.sink.next().await?.data;
    assert!(find(&out, b"found you").is_none(), "plaintext leaked");
    let armored = armor(
        &out,
        "-----BEGIN PGP MESSAGE-----",
        "-----END PGP MESSAGE-----",
    )?;
    let bob = Gpg::new()?;
    let secret = publisher
        .keys
        .export_secret(&postern_gateway::Selector::parse("bob@localhost"))
        .await?;
    bob.import(secret.as_bytes())?;
    bob.import(postern_pgp::armored_public(&alice)?.as_bytes())?;
    let (plain, _) = bob.run_status(&["--decrypt"], armored)?;
    assert!(find(&plain, b"found you").is_some());

    let mail = b"From: alice@example.org\r\nTo: nobody@localhost\r\nSubject: hi\r\n\r\nplain\r\n";
    assert_eq!(
        h.send("alice@example.org", &["nobody@localhost"], mail)
            .await?
            .0,
        250
    );
    let out = h.sink.next().await?.data;
    assert!(find(&out, b"plain").is_some() && find(&out, b"BEGIN PGP MESSAGE").is_none());
    Ok(())
}
