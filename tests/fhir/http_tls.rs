//! HTTPS on the real `vellum serve` binary: TLS clients are served, plain
//! HTTP is not, and a SIGHUP makes new connections see a replaced
//! certificate without a restart.

use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::X509;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use vellum_testkit::tls::Pki;
use vellum_testkit::*;

/// A TLS connection trusting only `ca`, or `None` if the handshake fails.
async fn connect(port: u16, ca: &str, max: Option<SslVersion>) -> Option<SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(Path::new(ca)).unwrap();
    if let Some(v) = max {
        b.set_max_proto_version(Some(v)).unwrap();
        b.set_min_proto_version(Some(v)).unwrap();
    }
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let mut s = SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.ok()?;
    Some(s)
}

/// The response (status line and body) to one HTTP/1.1 request on `s`
/// (`GET path` with the dev token).
async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    path: &str,
) -> String {
    let auth = format!("Bearer {DEV_TOKEN}");
    send(s, &format!("GET {path}"), Some(&auth), "").await
}

/// `request` is `METHOD path`; `body` is FHIR JSON when not empty.
async fn send<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    request: &str,
    authorization: Option<&str>,
    body: &str,
) -> String {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!(
        "{request} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn port_of(server: &ServerProcess) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// Waits (up to 30 s) until a handshake trusting `ca` succeeds.
async fn wait_for_cert(server: &mut ServerProcess, ca: &str) -> SslStream<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("vellum exited: {status}");
        }
        if let Some(s) = connect(port_of(server), ca, None).await {
            return s;
        }
        assert!(Instant::now() < deadline, "no TLS handshake within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn served(s: &SslStream<TcpStream>) -> Vec<u8> {
    s.ssl().peer_certificate().unwrap().to_der().unwrap()
}

fn der_of(pem_file: &str) -> Vec<u8> {
    X509::from_pem(&std::fs::read(pem_file).unwrap())
        .unwrap()
        .to_der()
        .unwrap()
}

#[tokio::test]
async fn https_serves_tls_12_plus_and_reloads_the_certificate_on_sighup() {
    let (old, new) = (Pki::new(), Pki::new());
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
    std::fs::copy(old.path("server.pem"), &cert).unwrap();
    std::fs::copy(old.path("server.key"), &key).unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = spawn_server_process(
        &db.url,
        &[
            ("VELLUM_HTTP_TLS_CERT", cert.to_str().unwrap()),
            ("VELLUM_HTTP_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    let mut s = wait_for_cert(&mut server, &old.path("ca.pem")).await;
    assert_eq!(served(&s), der_of(&old.path("server.pem")));
    let response = get(&mut s, "/fhir/metadata").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("CapabilityStatement"));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .unwrap();
    let response = get(&mut plain, "/healthz").await;
    assert!(!response.starts_with("HTTP/1.1 200"), "{response}");
    // TLS 1.1 and older are refused; TLS 1.2 and 1.3 are served.
    let port = port_of(&server);
    assert!(connect(port, &old.path("ca.pem"), Some(SslVersion::TLS1_1))
        .await
        .is_none());
    for v in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
        let mut s = connect(port, &old.path("ca.pem"), Some(v)).await.unwrap();
        assert!(get(&mut s, "/healthz").await.starts_with("HTTP/1.1 200"));
    }

    // Replace the files, SIGHUP: new connections see the new certificate.
    std::fs::copy(new.path("server.pem"), &cert).unwrap();
    std::fs::copy(new.path("server.key"), &key).unwrap();
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut s = wait_for_cert(&mut server, &new.path("ca.pem")).await;
    assert_eq!(served(&s), der_of(&new.path("server.pem")));
    assert!(get(&mut s, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(connect(port, &old.path("ca.pem"), None).await.is_none());
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test]
async fn a_mapped_client_certificate_is_the_caller_without_a_token() {
    let pki = Pki::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let mut server = spawn_server_process(
        &db.url,
        &[
            ("VELLUM_HTTP_TLS_CERT", cert.as_str()),
            ("VELLUM_HTTP_TLS_KEY", key.as_str()),
            ("VELLUM_HTTP_TLS_CLIENT_CA", ca.as_str()),
            ("VELLUM_AUTH_CLIENTS", "CN=sender.example auditor"),
        ],
    );
    let port = port_of(&server);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        assert!(server.child.try_wait().unwrap().is_none(), "vellum exited");
        // tls_connect panics on a refused TCP connection: wait for the port.
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            if let Some(s) = vellum_testkit::tls::tls_connect(port, &pki, true).await {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "no TLS handshake within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The certificate maps to an auditor: it may search…
    let response = send(&mut s, "GET /fhir/AuditEvent", None, "").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"Bundle\""), "{response}");
    // …but not append (403, not 401: it is authenticated).
    let event = sample_event(1).to_string();
    let mut s = vellum_testkit::tls::tls_connect(port, &pki, true)
        .await
        .unwrap();
    let response = send(&mut s, "POST /fhir/AuditEvent", None, &event).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    // A token on the same kind of connection takes precedence.
    let mut s = vellum_testkit::tls::tls_connect(port, &pki, true)
        .await
        .unwrap();
    let auth = format!("Bearer {DEV_TOKEN}");
    let response = send(&mut s, "POST /fhir/AuditEvent", Some(&auth), &event).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    // Without a client certificate the server aborts the handshake (with
    // TLS 1.3 the client may only notice on its first read).
    if let Some(mut s) = vellum_testkit::tls::tls_connect(port, &pki, false).await {
        let response = get(&mut s, "/healthz").await;
        assert!(!response.contains("HTTP/1.1"), "{response}");
    }
}
