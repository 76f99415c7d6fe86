//! The operational log of a real server process: access log, JSON format,
//! `traceparent`, MLLP rejections — and nothing from the messages.

use serde_json::Value;
use vellum_testkit::mllp::{fixture, Client};
use vellum_testkit::{sample_event, Backend, TestApp, TestDb};

use crate::serve;

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

#[tokio::test]
async fn json_access_log_names_route_status_request_id_and_trace_but_no_query_values() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = serve(&db.url, &[("VELLUM_LOG_FORMAT", "json")]);
    server.ready().await;
    let app = TestApp {
        base: server.base.clone(),
        client: vellum_testkit::authed_client(),
    };
    assert_eq!(app.post_event(&sample_event(3)).await.status(), 201);
    let r = app
        .client
        .get(format!(
            "{}/fhir/AuditEvent?patient.identifier=urn:oid:1.2.3|SECRET-PATIENT-42",
            server.base
        ))
        .header("traceparent", TRACE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let request_id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("X-Request-Id")
        .to_string();
    let mut mllp = Client::connect(server.mllp_port).await;
    assert_eq!(
        mllp.call(&fixture("invalid_bad_version.hl7")).await.code(),
        "AR"
    );

    let mllp_port = server.mllp_port.to_string();
    let log = server.stop();
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log}");
    assert!(
        !log.contains("SECRET-PATIENT-42"),
        "a query value was logged: {log}"
    );
    assert!(
        !log.contains("8675309") && !log.contains("DOE"),
        "message content was logged: {log}"
    );
    let lines = json_lines(&log);
    let access = lines
        .iter()
        .find(|l| l["target"] == "vellum::access" && l["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no access line for {request_id}: {log}"));
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "/fhir/AuditEvent");
    assert_eq!(access["status"], 200);
    assert_eq!(access["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(access["duration_ms"].as_f64().is_some(), "{access}");
    assert_eq!(
        access["subject"], "dev-token",
        "the authenticated caller: {access}"
    );
    // The POST was logged too, with its template.
    assert!(lines.iter().any(|l| l["target"] == "vellum::access"
        && l["method"] == "POST"
        && l["route"] == "/fhir/AuditEvent"
        && l["status"] == 201));
    let rejected = lines
        .iter()
        .find(|l| l["message"] == "mllp: message not accepted")
        .unwrap_or_else(|| panic!("no MLLP rejection line: {log}"));
    assert_eq!(rejected["ack"], "AR");
    assert_eq!(rejected["error_code"], "203");
    assert_eq!(rejected["segment"], "MSH");
    assert_eq!(rejected["field"], 12);
    assert_eq!(rejected["level"], "WARN");
    // Start-up names every port it listens on.
    let listening = lines
        .iter()
        .find(|l| l["message"] == "vellum listening")
        .expect("listening line");
    assert_eq!(
        listening["mllp_ports"],
        format!("[{mllp_port}]"),
        "{listening}"
    );
}

#[tokio::test]
async fn the_text_log_carries_the_request_span_with_the_trace_id() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = serve(&db.url, &[("VELLUM_MLLP_ADDR", "")]);
    server.ready().await;
    let r = vellum_testkit::authed_client()
        .get(format!("{}/fhir/AuditEvent/no-such-event", server.base))
        .header("traceparent", TRACE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let log = server.stop();
    let line = log
        .lines()
        .find(|l| l.contains("request") && l.contains("status=404"))
        .unwrap_or_else(|| panic!("no access line: {log}"));
    assert!(line.contains("route=/fhir/AuditEvent/{id}"), "{line}");
    assert!(
        line.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
        "{line}"
    );
    assert!(
        !line.contains("no-such-event"),
        "a path parameter was logged: {line}"
    );
}
