//! RFC 5425: syslog over TLS with certificates the test makes; with a
//! client CA only senders with a certificate it signed get through
//! (mutual TLS, as ATNA secure nodes require).

use std::path::Path;
use std::pin::Pin;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use vellum_testkit::*;

use crate::common::*;

fn key() -> PKey<Private> {
    PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
}

fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, ca: bool) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = (uuid::Uuid::new_v4().as_u128() as u32) & 0x7fff_ffff;
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
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
        Some((c, k)) => {
            b.set_issuer_name(c.subject_name()).unwrap();
            b.sign(k, MessageDigest::sha256()).unwrap();
        }
        None => {
            b.set_issuer_name(&name).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
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
        let client = cert("pacs.example.org", &client_key, Some((&ca, &ca_key)), false);
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

async fn tls_connect(port: u16, pki: &Pki, client_cert: bool) -> Option<SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(Path::new(&pki.path("ca.pem"))).unwrap();
    if client_cert {
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

backend_tests! {
    async fn mutual_tls_sender_is_stored_and_one_without_a_certificate_is_not(backend) {
        let db = TestDb::new(backend).await;
        let pki = Pki::new();
        let app = spawn_syslog_app(&db.url, |raw| {
            raw.syslog.tls_addr = "127.0.0.1:0".into();
            raw.syslog.tls_cert = Some(pki.path("server.pem"));
            raw.syslog.tls_key = Some(pki.path("server.key"));
            raw.syslog.tls_client_ca = Some(pki.path("ca.pem"));
        }).await;
        let port = app.tls.unwrap();
        let fixtures = valid_fixtures();
        let mut s = tls_connect(port, &pki, true).await.expect("mutual TLS handshake");
        for (_, raw) in &fixtures {
            let msg = rfc5424(&String::from_utf8_lossy(raw));
            s.write_all(&octet_counted(&msg)).await.unwrap();
        }
        s.shutdown().await.unwrap();
        let events = app.wait_for(fixtures.len()).await;
        assert_eq!(events.len(), fixtures.len(), "{backend:?}");
        assert!(events
            .iter()
            .all(|e| message_detail(e, "syslog-transport").unwrap()["valueString"] == "tls"));
        // No client certificate: the handshake (or the first write) fails
        // and nothing more is stored.
        if let Some(mut s) = tls_connect(port, &pki, false).await {
            let msg = rfc5424(&one_line(&fixtures[0].1));
            let _ = s.write_all(&octet_counted(&msg)).await;
            let _ = s.shutdown().await;
        }
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
        assert_eq!(app.syslog_events().await.len(), fixtures.len(), "{backend:?}");
    }
}
