//! MLLP over TLS (openssl): a TLS listener answers TLS clients, refuses
//! plain TCP, and with a client CA requires a client certificate.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use vellum_testkit::mllp::*;
use vellum_testkit::*;

fn key() -> PKey<Private> {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    PKey::from_rsa(rsa).unwrap()
}

/// A certificate for `cn`, signed by `issuer` (self-signed when `None`).
fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, ca: bool) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    } else {
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    match issuer {
        Some((issuer_cert, issuer_key)) => {
            b.set_issuer_name(issuer_cert.subject_name()).unwrap();
            b.sign(issuer_key, MessageDigest::sha256()).unwrap();
        }
        None => {
            b.set_issuer_name(&name).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

fn rand_serial() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = key();
        let ca = cert("vellum test CA", &ca_key, None, true);
        let server_key = key();
        let server = cert("localhost", &server_key, Some((&ca, &ca_key)), false);
        let client_key = key();
        let client = cert("ris.example", &client_key, Some((&ca, &ca_key)), false);
        let write = |name: &str, pem: Vec<u8>| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca.to_pem().unwrap());
        write("server.pem", server.to_pem().unwrap());
        write("server.key", server_key.private_key_to_pem_pkcs8().unwrap());
        write("client.pem", client.to_pem().unwrap());
        write("client.key", client_key.private_key_to_pem_pkcs8().unwrap());
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Connects with TLS (trusting `ca`), optionally with a client certificate.
async fn tls_connect(port: u16, pki: &Pki, with_client_cert: bool) -> Option<SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(Path::new(&pki.path("ca.pem"))).unwrap();
    if with_client_cert {
        b.set_certificate_file(pki.path("client.pem"), SslFiletype::PEM)
            .unwrap();
        b.set_private_key_file(pki.path("client.key"), SslFiletype::PEM)
            .unwrap();
    }
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut s = SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.ok()?;
    Some(s)
}

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
