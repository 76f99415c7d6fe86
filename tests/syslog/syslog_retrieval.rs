//! `GET /atna/messages/{id}`: the original audit message of an event that
//! came in over syslog — the bytes when `store_content` kept them, else a
//! 404 whose OperationOutcome gives the recorded SHA-256.

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vellum_testkit::*;

use crate::common::*;

/// Sends one message over TCP (octet counting) and returns its stored event.
async fn store_one(app: &SyslogApp, msg: &str) -> Value {
    let mut tcp = TcpStream::connect(("127.0.0.1", app.tcp.expect("tcp listener")))
        .await
        .expect("connect");
    tcp.write_all(&octet_counted(&rfc5424(msg)))
        .await
        .expect("send");
    tcp.shutdown().await.expect("shutdown");
    let mut buf = [0u8; 1];
    let _ = tcp.read(&mut buf).await;
    let events = app.wait_for(1).await;
    assert_eq!(events.len(), 1);
    events[0].clone()
}

async fn get(app: &SyslogApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.http))
        .send()
        .await
        .expect("GET")
}

backend_tests! {
    async fn the_original_message_comes_back_byte_for_byte_when_kept(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_syslog_app(&db.url, |raw| raw.privacy.store_content = true).await;
        let msg = one_line(&valid_fixtures()[0].1);
        let event = store_one(&app, &msg).await;
        let id = event["id"].as_str().expect("id");

        let r = get(&app, &format!("/atna/messages/{id}")).await;
        assert_eq!(r.status(), 200);
        let sha = r
            .headers()
            .get("x-vellum-message-sha256")
            .and_then(|v| v.to_str().ok())
            .expect("hash header")
            .to_string();
        let bytes = r.bytes().await.expect("body");
        assert_eq!(bytes.as_ref(), msg.as_bytes(), "{backend:?}");
        assert_eq!(sha, hex::encode(Sha256::digest(msg.as_bytes())));

        // An event that did not come over syslog has no message.
        let created = app
            .client
            .post(format!("{}/fhir/AuditEvent", app.http))
            .header("content-type", "application/fhir+json")
            .body(sample_event(1).to_string())
            .send()
            .await
            .expect("create");
        assert_eq!(created.status(), 201);
        let other: Value = created.json().await.expect("event");
        let r = get(&app, &format!("/atna/messages/{}", other["id"].as_str().unwrap())).await;
        assert_eq!(r.status(), 404);
        let oo: Value = r.json().await.expect("OperationOutcome");
        assert_eq!(oo["issue"][0]["code"], "not-found", "{oo}");
        let r = get(&app, "/atna/messages/00000000-0000-4000-8000-000000000000").await;
        assert_eq!(r.status(), 404);
    }

    async fn only_the_hash_is_given_when_the_message_was_not_kept(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_syslog_app(&db.url, |raw| raw.privacy.store_content = false).await;
        let msg = one_line(&valid_fixtures()[1].1);
        let event = store_one(&app, &msg).await;
        let r = get(&app, &format!("/atna/messages/{}", event["id"].as_str().unwrap())).await;
        assert_eq!(r.status(), 404);
        let oo: Value = r.json().await.expect("OperationOutcome");
        assert_eq!(oo["resourceType"], "OperationOutcome");
        let text = oo["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(text.contains("store_content"), "{oo}");
        assert!(
            text.contains(&hex::encode(Sha256::digest(msg.as_bytes()))),
            "the hash is not given: {oo}"
        );
    }
}
