//! RFC vectors, and the `sasl` crate's client as an independent implementation.

use sasl::client::Mechanism as _;
use sasl::client::mechanisms::Scram;
use sasl::common::ChannelBinding;
use sasl::common::scram::{ScramProvider, Sha1, Sha256};

use super::*;

fn keys(hash: ScramHash, password: &str, salt_b64: &str, iterations: u32) -> ScramKeys {
    let salt = B64.decode(salt_b64).expect("salt");
    ScramKeys::derive(hash, password.as_bytes(), &salt, iterations)
}

/// Replays a published exchange byte for byte.
fn replay(
    hash: ScramHash,
    salt: &str,
    nonce_suffix: &str,
    client_first: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) {
    let mut server = ScramServer::new(hash, false, false, ChannelBindings::default())
        .with_nonce_suffix(nonce_suffix);
    let first = server
        .client_first(client_first.as_bytes())
        .expect("client-first");
    assert_eq!(
        first,
        ClientFirst {
            username: "user".into(),
            authzid: None
        }
    );
    let sent = server.server_first(Some(keys(hash, "pencil", salt, 4096)));
    assert_eq!(String::from_utf8(sent).expect("utf8"), server_first);
    let fin = server
        .client_final(client_final.as_bytes())
        .expect("client-final");
    assert_eq!(String::from_utf8(fin).expect("utf8"), server_final);
}

#[test]
fn rfc5802_sha1_vector() {
    replay(
        ScramHash::Sha1,
        "QSXCR+Q6sek8bf92",
        "3rfcNHYJY1ZVvWVs7j",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    );
}

#[test]
fn rfc7677_sha256_vector() {
    replay(
        ScramHash::Sha256,
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

/// Runs a full exchange between the `sasl` crate's client and our server.
fn exchange<S: ScramProvider>(
    hash: ScramHash,
    client_password: &str,
    stored_password: Option<&str>,
    client_cb: ChannelBinding,
    plus: bool,
    plus_offered: bool,
    bindings: ChannelBindings,
) -> Result<(), ScramError> {
    let mut client = Scram::<S>::new("user", client_password, client_cb).expect("client");
    let mut server = ScramServer::new(hash, plus, plus_offered, bindings);
    let first = server.client_first(&client.initial())?;
    assert_eq!(first.username, "user");
    let stored =
        stored_password.map(|p| ScramKeys::derive(hash, p.as_bytes(), b"0123456789abcdef", 4096));
    let challenge = server.server_first(stored);
    let response = client.response(&challenge).expect("client-final");
    let success = server.client_final(&response)?;
    client
        .success(&success)
        .expect("client accepts the server signature");
    Ok(())
}

fn exporter(data: &[u8]) -> ChannelBindings {
    ChannelBindings {
        tls_exporter: Some(data.to_vec()),
        tls_server_end_point: None,
    }
}

#[test]
fn sasl_client_logs_in_with_sha1_and_sha256() {
    let none = ChannelBindings::default;
    exchange::<Sha1>(
        ScramHash::Sha1,
        "pencil",
        Some("pencil"),
        ChannelBinding::None,
        false,
        false,
        none(),
    )
    .expect("sha1");
    exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::None,
        false,
        false,
        none(),
    )
    .expect("sha256");
    // A client that cannot bind may use plain SCRAM even where -PLUS is offered.
    exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::None,
        false,
        true,
        exporter(b"x"),
    )
    .expect("n flag with plus offered");
}

#[test]
fn wrong_password_is_not_authorized() {
    let r = exchange::<Sha256>(
        ScramHash::Sha256,
        "wrong",
        Some("pencil"),
        ChannelBinding::None,
        false,
        false,
        ChannelBindings::default(),
    );
    assert_eq!(r, Err(ScramError::NotAuthorized));
    assert_eq!(ScramError::NotAuthorized.sasl_condition(), "not-authorized");
}

#[test]
fn unknown_user_is_not_authorized_and_gets_a_stable_salt() {
    let r = exchange::<Sha1>(
        ScramHash::Sha1,
        "pencil",
        None,
        ChannelBinding::None,
        false,
        false,
        ChannelBindings::default(),
    );
    assert_eq!(r, Err(ScramError::NotAuthorized));

    let probe = |user: &str| {
        let mut server =
            ScramServer::new(ScramHash::Sha256, false, false, ChannelBindings::default());
        server
            .client_first(format!("n,,n={user},r=abc").as_bytes())
            .expect("client-first");
        let first = String::from_utf8(server.server_first(None)).expect("utf8");
        first.split(',').skip(1).collect::<Vec<_>>().join(",")
    };
    assert_eq!(
        probe("ghost"),
        probe("ghost"),
        "same salt and iterations each time"
    );
    assert_ne!(probe("ghost"), probe("phantom"));
    assert!(probe("ghost").ends_with(",i=4096"));
}

#[test]
fn plus_with_matching_tls_exporter_succeeds() {
    exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::TlsExporter(b"exporter-bytes".to_vec()),
        true,
        true,
        exporter(b"exporter-bytes"),
    )
    .expect("sha256-plus");
    exchange::<Sha1>(
        ScramHash::Sha1,
        "pencil",
        Some("pencil"),
        ChannelBinding::TlsExporter(b"exporter-bytes".to_vec()),
        true,
        true,
        exporter(b"exporter-bytes"),
    )
    .expect("sha1-plus");
}

#[test]
fn plus_with_wrong_channel_binding_data_fails() {
    let r = exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::TlsExporter(b"what the client sees".to_vec()),
        true,
        true,
        exporter(b"what the server sees"),
    );
    assert_eq!(r, Err(ScramError::ChannelBindingMismatch));
}

#[test]
fn plus_with_unavailable_binding_type_fails() {
    let only_endpoint = ChannelBindings {
        tls_exporter: None,
        tls_server_end_point: Some(b"cert hash".to_vec()),
    };
    let r = exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::TlsExporter(b"x".to_vec()),
        true,
        true,
        only_endpoint,
    );
    assert_eq!(
        r,
        Err(ScramError::UnsupportedChannelBinding("tls-exporter".into()))
    );
    let r = exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::TlsExporter(b"x".to_vec()),
        true,
        false,
        ChannelBindings::default(),
    );
    assert_eq!(r, Err(ScramError::ChannelBindingUnavailable));
    assert_eq!(
        ScramError::ChannelBindingUnavailable.sasl_condition(),
        "encryption-required"
    );
}

#[test]
fn flag_y_when_plus_was_offered_is_a_downgrade() {
    let r = exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::Unsupported,
        false,
        true,
        exporter(b"x"),
    );
    assert_eq!(r, Err(ScramError::Downgrade));
    // Without -PLUS on offer, 'y' is an honest client and may log in.
    exchange::<Sha256>(
        ScramHash::Sha256,
        "pencil",
        Some("pencil"),
        ChannelBinding::Unsupported,
        false,
        false,
        ChannelBindings::default(),
    )
    .expect("y without plus offered");
}

#[test]
fn tls_server_end_point_binding_by_hand() {
    // The sasl crate has no tls-server-end-point, so build the client side by hand.
    let cb = b"certificate hash".to_vec();
    let bindings = ChannelBindings {
        tls_exporter: None,
        tls_server_end_point: Some(cb.clone()),
    };
    let hash = ScramHash::Sha512;
    let keys = ScramKeys::derive(hash, b"pencil", b"salty salt", 10_000);
    let run = |cb_sent: &[u8]| {
        let mut server = ScramServer::new(hash, true, true, bindings.clone());
        let header = "p=tls-server-end-point,,";
        let bare = "n=user,r=clientnonce";
        server.client_first(format!("{header}{bare}").as_bytes())?;
        let server_first =
            String::from_utf8(server.server_first(Some(keys.clone()))).expect("utf8");
        let nonce = server_first
            .split(',')
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .expect("nonce");
        let mut cbind = header.as_bytes().to_vec();
        cbind.extend_from_slice(cb_sent);
        let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
        let auth = format!("{bare},{server_first},{without_proof}");
        let salted = hash.salted_password(b"pencil", b"salty salt", 10_000);
        let client_key = hash.hmac(&salted, b"Client Key");
        let signature = hash.hmac(&hash.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let fin =
            server.client_final(format!("{without_proof},p={}", B64.encode(proof)).as_bytes())?;
        let expected = hash.hmac(&keys.server_key, auth.as_bytes());
        assert_eq!(fin, format!("v={}", B64.encode(expected)).into_bytes());
        Ok::<_, ScramError>(())
    };
    run(&cb).expect("sha512-plus with tls-server-end-point");
    assert_eq!(run(b"other"), Err(ScramError::ChannelBindingMismatch));
}

#[test]
fn gs2_header_must_be_echoed_unchanged() {
    // Client says 'n' in client-first but 'y' (eSws = "y,,") in client-final.
    let mut server = ScramServer::new(ScramHash::Sha1, false, false, ChannelBindings::default())
        .with_nonce_suffix("S");
    server.client_first(b"n,,n=user,r=C").expect("first");
    server.server_first(Some(keys(
        ScramHash::Sha1,
        "pencil",
        "QSXCR+Q6sek8bf92",
        4096,
    )));
    assert_eq!(
        server.client_final(b"c=eSws,r=CS,p=AAAA"),
        Err(ScramError::ChannelBindingMismatch)
    );
}

#[test]
fn wrong_nonce_is_rejected() {
    let mut server = ScramServer::new(ScramHash::Sha1, false, false, ChannelBindings::default())
        .with_nonce_suffix("S");
    server.client_first(b"n,,n=user,r=C").expect("first");
    server.server_first(Some(keys(
        ScramHash::Sha1,
        "pencil",
        "QSXCR+Q6sek8bf92",
        4096,
    )));
    assert_eq!(
        server.client_final(b"c=biws,r=CX,p=AAAA"),
        Err(ScramError::NotAuthorized)
    );
}

#[test]
fn client_first_parsing() {
    let parse = |msg: &[u8]| {
        ScramServer::new(ScramHash::Sha256, false, false, ChannelBindings::default())
            .client_first(msg)
    };
    assert_eq!(
        parse(b"n,a=admin=2Cboss,n=us=3Der=2C,r=abc,x=ext"),
        Ok(ClientFirst {
            username: "us=er,".into(),
            authzid: Some("admin,boss".into())
        })
    );
    assert!(matches!(parse(b"n,,n=user"), Err(ScramError::Malformed(_))));
    assert!(matches!(
        parse(b"n,,m=ext,n=user,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"n,,n=us=41er,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"n,,n=user="),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"n,,n=,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"x,,n=user,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"p=tls-exporter,,n=user,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"n,,n=user,r=a\x7fb"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"n,,n=\xff,r=abc"),
        Err(ScramError::Encoding(_))
    ));
    assert!(matches!(parse(b""), Err(ScramError::Malformed(_))));

    // -PLUS chosen but no 'p=' flag.
    let mut plus = ScramServer::new(ScramHash::Sha256, true, true, exporter(b"x"));
    assert!(matches!(
        plus.client_first(b"n,,n=user,r=abc"),
        Err(ScramError::Malformed(_))
    ));
}

#[test]
fn messages_out_of_order_fail() {
    let mut server = ScramServer::new(ScramHash::Sha256, false, false, ChannelBindings::default());
    assert_eq!(
        server.client_final(b"c=biws,r=a,p=AAAA"),
        Err(ScramError::OutOfOrder)
    );
    assert!(server.server_first(None).is_empty());
    let mut server = ScramServer::new(ScramHash::Sha256, false, false, ChannelBindings::default());
    server.client_first(b"n,,n=user,r=abc").expect("first");
    assert_eq!(
        server.client_first(b"n,,n=user,r=abc"),
        Err(ScramError::OutOfOrder)
    );
}

#[test]
fn server_nonce_is_client_nonce_plus_32_base64_chars() {
    let mut server = ScramServer::new(ScramHash::Sha256, false, false, ChannelBindings::default());
    server.client_first(b"n,,n=user,r=abc").expect("first");
    let first = String::from_utf8(server.server_first(None)).expect("utf8");
    let nonce = first
        .split(',')
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .expect("nonce");
    let suffix = nonce.strip_prefix("abc").expect("starts with client nonce");
    assert_eq!(B64.decode(suffix).expect("base64").len(), 24);
}

#[test]
fn mechanism_names() {
    assert_eq!(ScramHash::Sha256.mechanism_name(true), "SCRAM-SHA-256-PLUS");
    assert_eq!(ScramHash::Sha1.mechanism_name(false), "SCRAM-SHA-1");
}
