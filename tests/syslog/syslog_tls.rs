//! RFC 5425: syslog over TLS with certificates the test makes; with a
//! client CA only senders with a certificate it signed get through
//! (mutual TLS, as ATNA secure nodes require), and only those listed in
//! `auth.clients` with the `source` role, whose subject is the sender.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vellum::config::GrantLines;
use vellum_testkit::tls::{tls_connect, tls_connect_as, Pki};
use vellum_testkit::*;

use crate::common::*;

backend_tests! {
    async fn mutual_tls_sender_is_stored_and_one_without_a_certificate_is_not(backend) {
        let db = TestDb::new(backend).await;
        let pki = Pki::new();
        let app = spawn_syslog_app(&db.url, |raw| {
            raw.syslog.tls_addr = "127.0.0.1:0".into();
            raw.syslog.tls_cert = Some(pki.path("server.pem"));
            raw.syslog.tls_key = Some(pki.path("server.key"));
            raw.syslog.tls_client_ca = Some(pki.path("ca.pem"));
            raw.auth.clients = GrantLines(vec![
                "CN=sender.example source".into(),
                "CN=viewer auditor".into(),
            ]);
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
        // Each is tagged with the certificate's subject as its sender.
        assert!(events.iter().all(|e| e["meta"]["tag"].as_array().is_some_and(|tags| tags
            .iter()
            .any(|t| t["system"] == vellum::vocabulary::SUBMITTER_SYSTEM
                && t["code"] == "CN=sender.example"))), "{events:?}");
        // Certificates from the CA that may not send (not a source; not
        // listed): the connection is closed unread.
        pki.client("viewer");
        pki.client("stranger");
        for name in ["viewer", "stranger"] {
            let mut s = tls_connect_as(port, &pki, Some(name)).await.expect("TLS handshake");
            let msg = rfc5424(&one_line(&fixtures[0].1));
            let _ = s.write_all(&octet_counted(&msg)).await;
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            assert!(rest.is_empty());
        }
        let metrics = app.client.get(format!("{}/metrics", app.http)).send().await.unwrap().text().await.unwrap();
        let refused = metrics
            .lines()
            .find(|l| l.starts_with(r#"vellum_client_certificates_refused_total{listener="syslog"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        assert!(refused.is_some_and(|n| n >= 2.0), "{metrics}");
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
