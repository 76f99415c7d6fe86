//! MLLP over TLS (openssl): a TLS listener answers TLS clients, refuses
//! plain TCP, and with a client CA requires a client certificate.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use vellum_testkit::mllp::*;
use vellum_testkit::tls::{tls_connect, Pki};
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
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(
        (code, verdict["entries"].as_i64()),
        (0, Some(1)),
        "{verdict}"
    );
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
