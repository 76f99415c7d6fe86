//! MLLP over TLS (openssl): a TLS listener answers TLS clients, refuses
//! plain TCP, and with a client CA requires a client certificate, which
//! names the sender (`auth.clients`) or has every message refused.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use vellum::config::GrantLines;
use vellum_testkit::mllp::*;
use vellum_testkit::tls::{tls_connect, tls_connect_as, Pki};
use vellum_testkit::*;

/// Sends one message; the ACK, or `None` when the connection fails/closes.
async fn call(s: &mut SslStream<TcpStream>, msg: &str) -> Option<Ack> {
    s.write_all(&frame(msg.as_bytes())).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(&[FS, CR]) {
            let text = String::from_utf8_lossy(&buf[1..buf.len() - 2]).to_string();
            return Some(Ack::parse(&text));
        }
    }
}

#[tokio::test]
async fn a_tls_listener_acks_tls_clients_and_refuses_plain_tcp() {
    let pki = Pki::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |s| {
        s.mllp_tls_cert = Some(pki.path("server.pem"));
        s.mllp_tls_key = Some(pki.path("server.key"));
    })
    .await;
    let mut s = tls_connect(app.mllp_port, &pki, false)
        .await
        .expect("TLS handshake");
    let ack = call(&mut s, &fixture("adt_a01.hl7")).await.expect("ACK");
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let (status, _, _) = read_event(&app.client, &app.http, ack.event_id()).await;
    assert_eq!(status, 200);
    // Plain MLLP to the TLS port: no ACK, the connection is closed.
    let mut plain = Client::connect(app.mllp_port).await;
    plain
        .send(&with_control_id(&fixture("adt_a01.hl7"), "PLAIN1"))
        .await;
    assert!(plain.closed_within(Duration::from_secs(10)).await);
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(
        (code, verdict["entries"].as_i64()),
        (0, Some(1)),
        "{verdict}"
    );
}

#[tokio::test]
async fn plain_and_tls_listeners_share_one_ledger() {
    let pki = Pki::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |s| {
        s.mllp_addr = "127.0.0.1:0,127.0.0.1:0".into();
        s.mllp_tls_addr = "127.0.0.1:0".into();
        s.mllp_tls_cert = Some(pki.path("server.pem"));
        s.mllp_tls_key = Some(pki.path("server.key"));
    })
    .await;
    let &[p1, p2, ptls] = app.mllp_ports.as_slice() else {
        panic!("three listeners: {:?}", app.mllp_ports)
    };
    assert_eq!(app.mllp_port, p1);
    assert!(p1 != p2 && p2 != ptls && p1 != ptls);
    // A message on each listener is ACKed AA and stored.
    let mut c1 = Client::connect(p1).await;
    let a1 = c1
        .call(&with_control_id(&fixture("adt_a01.hl7"), "L1"))
        .await;
    let mut c2 = Client::connect(p2).await;
    let a2 = c2
        .call(&with_control_id(&fixture("adt_a01.hl7"), "L2"))
        .await;
    let mut s = tls_connect(ptls, &pki, false).await.expect("TLS handshake");
    let a3 = call(&mut s, &with_control_id(&fixture("adt_a01.hl7"), "L3"))
        .await
        .expect("ACK");
    for a in [&a1, &a2, &a3] {
        assert_eq!(a.code(), "AA", "{}", a.text);
        assert_eq!(a.field("ZVL", 4), "Y", "{}", a.text);
        let (status, _, _) = read_event(&app.client, &app.http, a.event_id()).await;
        assert_eq!(status, 200);
    }
    // MSH-10 dedupe spans listeners: the same sender and control id on
    // listener 1, then 2 (and the TLS one) is one entry.
    let msg = with_control_id(&fixture("orm_o01.hl7"), "SHARED1");
    let first = c1.call(&msg).await;
    let second = c2.call(&msg).await;
    let third = call(&mut s, &msg).await.expect("ACK");
    assert_eq!(first.field("ZVL", 4), "Y", "{}", first.text);
    for a in [&second, &third] {
        assert_eq!(a.code(), "AA", "{}", a.text);
        assert_eq!(a.field("ZVL", 4), "N", "duplicate: {}", a.text);
        assert_eq!(a.event_id(), first.event_id());
    }
    // The TLS listener does not speak plain MLLP.
    let mut plain = Client::connect(ptls).await;
    plain
        .send(&with_control_id(&fixture("adt_a01.hl7"), "PLAIN1"))
        .await;
    assert!(plain.closed_within(Duration::from_secs(10)).await);
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(
        (code, verdict["entries"].as_i64()),
        (0, Some(4)),
        "{verdict}"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |s| {
        s.mllp_tls_cert = Some(pki.path("server.pem"));
        s.mllp_tls_key = Some(pki.path("server.key"));
        s.mllp_tls_client_ca = Some(pki.path("ca.pem"));
        s.auth.clients = GrantLines(vec!["CN=sender.example source".into()]);
    })
    .await;
    // Without a client certificate the server aborts the handshake (with
    // TLS 1.3 the client may only notice on its first read).
    if let Some(mut s) = tls_connect(app.mllp_port, &pki, false).await {
        assert!(call(&mut s, &fixture("orm_o01.hl7")).await.is_none());
    }
    let mut s = tls_connect(app.mllp_port, &pki, true)
        .await
        .expect("mTLS handshake");
    let ack = call(&mut s, &fixture("orm_o01.hl7")).await.expect("ACK");
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    // The message, and the refused handshake as a failed login (recorded
    // in the background).
    let (code, verdict) = verified_with(&db.url, 2).await;
    assert_eq!(
        (code, verdict["entries"].as_i64()),
        (0, Some(2)),
        "{verdict}"
    );
}

/// `vellum verify` once the ledger holds `entries` (refusals are recorded
/// in the background); the last verdict after 30 s otherwise.
async fn verified_with(db_url: &str, entries: i64) -> (i32, serde_json::Value) {
    for _ in 0..150 {
        let (code, verdict) = run_verify(db_url);
        if verdict["entries"].as_i64() == Some(entries) {
            return (code, verdict);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run_verify(db_url)
}

#[test]
fn tls_settings_are_validated() {
    use vellum::config::{RawSettings, Settings};
    let raw = RawSettings {
        mllp_tls_cert: Some("/nonexistent/cert.pem".into()),
        ..RawSettings::default()
    };
    let e = Settings::validate(raw.clone()).unwrap_err().to_string();
    assert!(e.contains("mllp_tls_cert"), "{e}");
    let raw = RawSettings {
        mllp_tls_key: Some("/nonexistent/key.pem".into()),
        ..raw
    };
    let e = Settings::validate(raw).unwrap_err().to_string();
    assert!(e.contains("not a readable file"), "{e}");
}

backend_tests! {
    async fn client_certificates_name_senders_and_scope_their_keys(backend) {
        let pki = Pki::new();
        for cn in ["pacs-a", "pacs-b", "viewer", "stranger"] {
            pki.client(cn);
        }
        let db = TestDb::new(backend).await;
        let app = spawn_mllp_app(&db.url, |s| {
            s.mllp_tls_cert = Some(pki.path("server.pem"));
            s.mllp_tls_key = Some(pki.path("server.key"));
            s.mllp_tls_client_ca = Some(pki.path("ca.pem"));
            s.auth.clients = GrantLines(vec![
                "CN=pacs-a source".into(),
                "CN=pacs-b source".into(),
                "CN=viewer auditor".into(),
            ]);
        })
        .await;
        let connect = |name: &'static str| {
            let pki = &pki;
            async move { tls_connect_as(app.mllp_port, pki, Some(name)).await.expect("mTLS handshake") }
        };
        // Two senders, one MSH-10: two events, each tagged with its sender.
        let msg = with_control_id(&fixture("orm_o01.hl7"), "SAME-ID-1");
        let (mut a, mut b) = (connect("pacs-a").await, connect("pacs-b").await);
        let ack_a = call(&mut a, &msg).await.expect("ACK");
        let ack_b = call(&mut b, &msg).await.expect("ACK");
        for (ack, sender) in [(&ack_a, "CN=pacs-a"), (&ack_b, "CN=pacs-b")] {
            assert_eq!(ack.code(), "AA", "{}", ack.text);
            assert_eq!(ack.field("ZVL", 4), "Y", "stored: {}", ack.text);
            let (status, event, _) = read_event(&app.client, &app.http, ack.event_id()).await;
            assert_eq!(status, 200);
            let tags = event["meta"]["tag"].as_array().cloned().unwrap_or_default();
            assert!(
                tags.iter().any(|t| t["system"] == vellum::vocabulary::SUBMITTER_SYSTEM && t["code"] == sender),
                "{event}"
            );
        }
        assert_ne!(ack_a.event_id(), ack_b.event_id());
        // A retry by a sender answers its own receipt.
        let again = call(&mut a, &msg).await.expect("ACK");
        assert_eq!((again.code(), again.field("ZVL", 4)), ("AA", "N"), "{}", again.text);
        assert_eq!(again.event_id(), ack_a.event_id());

        // Certificates that may not send: every message AR, nothing stored.
        for (name, why) in [
            ("viewer", "`CN=viewer` does not hold the source role"),
            ("stranger", "not listed in auth.clients"),
        ] {
            let mut s = connect(name).await;
            for id in ["REFUSED-1", "REFUSED-2"] {
                let ack = call(&mut s, &with_control_id(&fixture("orm_o01.hl7"), id))
                    .await
                    .expect("ACK");
                assert_eq!(ack.code(), "AR", "{}", ack.text);
                assert_eq!(ack.field("MSA", 2), id, "{}", ack.text);
                assert!(ack.field("ERR", 3).starts_with("207^") || ack.field("ERR", 1).contains("207"), "{}", ack.text);
                assert!(ack.text.contains(why), "{}", ack.text);
            }
        }
        // The two events, and each refused certificate once: the viewer's
        // as a use of a restricted function (DCM 110113), the stranger's
        // as a failed login (DCM 110114).
        let (code, verdict) = verified_with(&db.url, 4).await;
        assert_eq!((code, verdict["entries"].as_i64()), (0, Some(4)), "{verdict}");
    }
}
