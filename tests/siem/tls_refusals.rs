//! Client certificates refused by the MLLP and syslog TLS listeners are
//! recorded as failed authentications (docs/siem.md): over real TLS
//! sockets, a certificate the client CA signed but `auth.clients` does not
//! list (MLLP), one from another CA (syslog) and none at all each yield
//! one DCM 110114 event naming the listener and the peer address, and the
//! `auth-failures` rule fires on the address that failed often enough.
//! Both backends.

use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_openssl::SslStream;
use vellum::config::{GrantLines, Settings};
use vellum::startup::Application;
use vellum_testkit::tls::Pki;
use vellum_testkit::*;

use super::rules::{alerts_and_caught_up, detail};
use super::wait_until;

/// A TLS connection from `from` to `port`, presenting `<name>.pem` of
/// `pki` (or nothing), not checking the server (the refusal is the
/// server's): written to and read until the server closes it.
async fn refused(port: u16, from: &str, cert: Option<(&Pki, &str)>) {
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("connector");
    b.set_verify(SslVerifyMode::NONE);
    if let Some((pki, name)) = cert {
        b.set_certificate_file(pki.path(&format!("{name}.pem")), SslFiletype::PEM)
            .expect("cert");
        b.set_private_key_file(pki.path(&format!("{name}.key")), SslFiletype::PEM)
            .expect("key");
    }
    let ssl = b
        .build()
        .configure()
        .expect("config")
        .into_ssl("localhost")
        .expect("ssl");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind((from.parse::<IpAddr>().expect("ip"), 0).into())
        .expect("bind");
    let tcp = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    let mut s = SslStream::new(ssl, tcp).expect("stream");
    // With TLS 1.3 the client may finish its side first and hear of the
    // refusal only on its next read.
    if Pin::new(&mut s).connect().await.is_ok() {
        let _ = s.write_all(b"\x0bMSH|^~\\&|x\r\x1c\r").await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await;
    }
}

/// The stored failed authentications (DCM 110114).
async fn failed_logins(store: &vellum::store::AnyStore) -> Vec<Value> {
    use vellum::store::Store;
    store
        .entries_after(0, 1_000_000)
        .await
        .expect("entries")
        .into_iter()
        .map(|e| serde_json::from_str::<Value>(&e.body).expect("json"))
        .filter(|e| e["type"]["code"] == "110114")
        .collect()
}

fn request_line(e: &Value) -> String {
    let q = e["entity"][0]["query"].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(q)
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

backend_tests! {
    async fn refused_client_certificates_are_failed_logins_the_rules_count(backend) {
        let db = TestDb::new(backend).await;
        let pki = Pki::new();
        pki.client("stranger");
        let foreign = Pki::new();
        let mut raw = raw_settings_for(&db.url);
        raw.mllp_addr = "127.0.0.1:0".into();
        raw.mllp_tls_cert = Some(pki.path("server.pem"));
        raw.mllp_tls_key = Some(pki.path("server.key"));
        raw.mllp_tls_client_ca = Some(pki.path("ca.pem"));
        raw.syslog.tls_addr = "127.0.0.1:0".into();
        raw.syslog.tls_cert = Some(pki.path("server.pem"));
        raw.syslog.tls_key = Some(pki.path("server.key"));
        raw.syslog.tls_client_ca = Some(pki.path("ca.pem"));
        raw.auth.clients = GrantLines(vec!["CN=sender.example source".into()]);
        raw.detection.enabled = true;
        raw.detection.poll_ms = 50;
        raw.detection.rules = "auth-failures".into();
        raw.detection.auth_failures_max = 2;
        raw.detection.auth_failures_window_minutes = 44640;
        let settings = Settings::validate(raw).expect("settings");
        let app = Application::build(&settings).await.expect("app");
        let mllp = app.mllp_port().expect("MLLP");
        let syslog = app.syslog_ports().1.expect("syslog TLS");
        tokio::spawn(app.run_until_stopped());
        let url = vellum::config::DatabaseUrl::parse(&db.url).expect("url");
        let store = vellum::store::AnyStore::connect(&url, None).await.expect("store");
        let ledger = vellum::ledger::Ledger::start(store.clone(), Default::default());

        // One refusal each: an unlisted certificate on MLLP, a certificate
        // from another CA on syslog (its CA has the same name as ours, so
        // verification fails on the signature).
        refused(mllp, "127.0.0.2", Some((&pki, "stranger"))).await;
        refused(syslog, "127.0.0.3", Some((&foreign, "client"))).await;
        wait_until("two refusals recorded", Duration::from_secs(60), || async {
            failed_logins(&store).await.len() == 2
        }).await;
        let logins = failed_logins(&store).await;
        for (e, listener, addr, why) in [
            (&logins[0], "mllp TLS listener 127.0.0.1:", "127.0.0.2", "not listed in auth.clients"),
            (&logins[1], "syslog TLS listener 127.0.0.1:", "127.0.0.3", "certificate signature failure"),
        ] {
            assert_eq!(e["outcome"], "4", "{backend:?}: {e}");
            assert_eq!(e["agent"][0]["network"]["address"], addr, "{backend:?}: {e}");
            assert!(e["source"]["site"].as_str().is_some_and(|s| s.starts_with(listener)), "{backend:?}: {e}");
            let line = request_line(e);
            assert!(line.starts_with(&format!("TLS handshake from {addr}:")), "{line}");
            assert!(line.contains(why), "{line}");
        }

        // Three from one address (no certificate on MLLP, twice; the
        // unlisted one on syslog) trip the rule (more than 2); the others
        // stay under it.
        refused(mllp, "127.0.0.4", None).await;
        refused(mllp, "127.0.0.4", None).await;
        refused(syslog, "127.0.0.4", Some((&pki, "stranger"))).await;
        wait_until("five refusals recorded", Duration::from_secs(60), || async {
            failed_logins(&store).await.len() == 5
        }).await;
        wait_until("the rule caught up", Duration::from_secs(60), || async {
            let (a, done) = alerts_and_caught_up(&ledger, &store).await;
            !a.is_empty() && done
        }).await;
        let (alerts, _) = alerts_and_caught_up(&ledger, &store).await;
        assert_eq!(alerts.len(), 1, "{backend:?}: {alerts:?}");
        assert_eq!(alerts[0]["subtype"][0]["code"], "auth-failures");
        assert_eq!((detail(&alerts[0], "subject"), detail(&alerts[0], "count")), ("127.0.0.4", "3"), "{backend:?}");
        let logins = failed_logins(&store).await;
        assert_eq!(
            logins.iter().filter(|e| request_line(e).contains("no client certificate")).count(),
            2,
            "{backend:?}: {logins:?}"
        );
    }
}
