//! Real senders: util-linux `logger` over TCP (RFC 6587 octet counting and
//! LF framing) and UDP (RFC 5426); events are then found through the FHIR
//! search API. Plus limits: an oversize frame closes the connection, a
//! sender over the per-address cap is refused.

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vellum_testkit::*;

use crate::common::*;

fn logger_available() -> bool {
    tool_available("util-linux logger (bsdutils)", on_path("logger"))
}

/// Sends each line of `lines` as one message with `logger`.
fn logger(port: u16, transport: &[&str], lines: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("messages");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let status = Command::new("logger")
        .args(["-n", "127.0.0.1", "-P", &port.to_string()])
        .args(transport)
        .args(["--rfc5424", "--size", "65536", "-t", "DCM4CHEE", "-f"])
        .arg(&file)
        .status()
        .expect("logger runs");
    assert!(status.success(), "logger {transport:?} failed");
}

/// Four one-line fixtures, made distinct per `round` (a message sent
/// again byte for byte is stored once).
fn some_fixtures(round: u32) -> Vec<String> {
    valid_fixtures()
        .into_iter()
        .take(4)
        .map(|(_, raw)| one_line(&raw).replace("T10:15:30.123", &format!("T10:15:3{round}.123")))
        .collect()
}

backend_tests! {
    async fn logger_over_tcp_octet_counting_lf_and_udp(backend) {
        if !logger_available() {
            return;
        }
        let db = TestDb::new(backend).await;
        let app = spawn_syslog_app(&db.url, |_| {}).await;
        let lines = some_fixtures(1);
        let tcp = app.tcp.unwrap();
        logger(tcp, &["-T", "--octet-count"], &lines);
        let events = app.wait_for(lines.len()).await;
        assert_eq!(events.len(), lines.len(), "{backend:?}: octet counting");
        logger(tcp, &["-T"], &some_fixtures(2));
        let events = app.wait_for(2 * lines.len()).await;
        assert_eq!(events.len(), 2 * lines.len(), "{backend:?}: LF framing");
        logger(app.udp.unwrap(), &["-d"], &some_fixtures(3));
        let events = app.wait_for(3 * lines.len()).await;
        assert_eq!(events.len(), 3 * lines.len(), "{backend:?}: UDP");
        assert!(events.iter().all(|e| !is_parse_failure(e)), "{backend:?}");
        let transports: Vec<&str> = events
            .iter()
            .filter_map(|e| message_detail(e, "syslog-transport")?["valueString"].as_str())
            .collect();
        assert_eq!(transports.iter().filter(|t| **t == "udp").count(), lines.len());
        // logger names the application with -t.
        assert!(events
            .iter()
            .all(|e| message_detail(e, "syslog-app-name").unwrap()["valueString"] == "DCM4CHEE"));
        // The events are searchable like any other (ITI-81).
        let r = app
            .client
            .get(format!(
                "{}/fhir/AuditEvent?type=http://dicom.nema.org/resources/ontology/DCM|110100",
                app.http
            ))
            .send()
            .await
            .unwrap();
        let bundle: serde_json::Value = r.json().await.unwrap();
        assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(3), "{backend:?}: {bundle}");
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
    }

    async fn bsd_headers_and_invalid_xml_over_lf_framing(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_syslog_app(&db.url, |_| {}).await;
        let mut tcp = TcpStream::connect(("127.0.0.1", app.tcp.unwrap())).await.unwrap();
        let xml = one_line(&valid_fixtures()[0].1);
        let bsd = format!("<85>Mar  1 10:15:30 oldpacs AUDIT[77]: {xml}\n");
        tcp.write_all(bsd.as_bytes()).await.unwrap();
        tcp.write_all(b"<85>Mar  1 10:15:31 oldpacs AUDIT: <AuditMessage><oops></AuditMessage>\n").await.unwrap();
        tcp.shutdown().await.unwrap();
        let events = app.wait_for(2).await;
        assert_eq!(events.len(), 2, "{backend:?}");
        let failures = events.iter().filter(|e| is_parse_failure(e)).count();
        assert_eq!(failures, 1, "{backend:?}");
        for e in &events {
            assert_eq!(message_detail(e, "syslog-hostname").unwrap()["valueString"], "oldpacs");
            assert_eq!(message_detail(e, "syslog-app-name").unwrap()["valueString"], "AUDIT");
        }
    }

    async fn a_message_sent_again_is_stored_once(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_syslog_app(&db.url, |_| {}).await;
        let msg = rfc5424(&one_line(&valid_fixtures()[0].1));
        for _ in 0..2 {
            let mut tcp = TcpStream::connect(("127.0.0.1", app.tcp.unwrap())).await.unwrap();
            tcp.write_all(&octet_counted(&msg)).await.unwrap();
            tcp.shutdown().await.unwrap();
            // Wait for this connection's message before the next.
            let mut buf = [0u8; 1];
            let _ = tcp.read(&mut buf).await;
        }
        // A different message after both: once it is stored, so is the rest.
        let mut tcp = TcpStream::connect(("127.0.0.1", app.tcp.unwrap())).await.unwrap();
        let other = rfc5424(&one_line(&valid_fixtures()[1].1));
        tcp.write_all(&octet_counted(&other)).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut buf = [0u8; 1];
        let _ = tcp.read(&mut buf).await;
        let events = app.wait_for(2).await;
        assert_eq!(events.len(), 2, "{backend:?}");
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
        assert_eq!(verdict["entries"], 2, "{backend:?}: {verdict}");
    }

    async fn oversize_frames_close_the_connection_and_peers_are_capped(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_syslog_app(&db.url, |raw| {
            raw.syslog.max_frame_bytes = 1024;
            raw.syslog.max_connections_per_peer = 1;
        }).await;
        let port = app.tcp.unwrap();
        let mut first = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A second connection from the same address is closed at once.
        let mut second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(30), second.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{backend:?}: second connection refused");
        first.write_all(b"99999 <").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(30), first.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{backend:?}: oversize frame closes");
        assert!(app.syslog_events().await.is_empty());
    }
}
