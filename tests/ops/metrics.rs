//! `/metrics` over a real server process, and readiness on a tampered ledger.

use serde_json::Value;
use vellum_testkit::mllp::{fixture, with_control_id, Client};
use vellum_testkit::{sample_event, Backend, TestDb};

use crate::{sample, serve};

#[tokio::test]
async fn metrics_count_requests_by_route_template_status_and_ack_code() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = serve(&db.url, &[]);
    server.ready().await;
    let client = vellum_testkit::authed_client();
    let created = vellum_testkit::TestApp {
        base: server.base.clone(),
        client: client.clone(),
    }
    .post_event(&sample_event(1))
    .await;
    assert_eq!(created.status(), 201);
    let id = created
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.split("/AuditEvent/").nth(1))
        .map(|l| l.split('/').next().unwrap_or_default().to_string())
        .expect("Location names the event");
    for _ in 0..2 {
        let r = client
            .get(format!("{}/fhir/AuditEvent/{id}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let missing = client
        .get(format!("{}/no/such/path", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let mut mllp = Client::connect(server.mllp_port).await;
    let ack = mllp
        .call(&with_control_id(&fixture("adt_a01.hl7"), "OPS-METRICS-1"))
        .await;
    assert_eq!(ack.code(), "AA");
    let ack = mllp.call(&fixture("invalid_bad_version.hl7")).await;
    assert_eq!(ack.code(), "AR");

    let m = server.metrics().await;
    let get =
        r#"vellum_http_requests_total{method="GET",route="/fhir/AuditEvent/{id}",status="200"}"#;
    assert_eq!(sample(&m, get), Some(2.0), "{m}");
    let post = r#"vellum_http_requests_total{method="POST",route="/fhir/AuditEvent",status="201"}"#;
    assert_eq!(sample(&m, post), Some(1.0), "{m}");
    let unmatched = r#"vellum_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(sample(&m, unmatched), Some(1.0), "{m}");
    let latency =
        r#"vellum_http_request_duration_seconds_count{method="GET",route="/fhir/AuditEvent/{id}"}"#;
    assert_eq!(sample(&m, latency), Some(2.0), "{m}");
    let aa = r#"vellum_mllp_messages_total{message_type="ADT^A01",ack_code="AA"}"#;
    assert_eq!(sample(&m, aa), Some(1.0), "{m}");
    let ar = r#"vellum_mllp_messages_total{message_type="ADT^A01",ack_code="AR"}"#;
    assert_eq!(sample(&m, ar), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            r#"vellum_mllp_ack_duration_seconds_count{ack_code="AA"}"#
        ),
        Some(1.0),
        "{m}"
    );
    // Two events stored (the REST one and the ADT receipt), each committed.
    assert_eq!(
        sample(&m, "vellum_writer_batch_events_sum"),
        Some(2.0),
        "{m}"
    );
    assert!(sample(&m, "vellum_writer_commit_duration_seconds_count").unwrap_or(0.0) >= 1.0);
    assert_eq!(sample(&m, "vellum_ledger_entries_total"), Some(2.0), "{m}");
    assert_eq!(sample(&m, "vellum_writer_queue_depth"), Some(0.0), "{m}");
    assert_eq!(sample(&m, "vellum_verify_last_ok"), Some(1.0), "{m}");
    assert!(sample(&m, "vellum_verify_last_timestamp_seconds").unwrap_or(0.0) > 0.0);
    assert!(sample(&m, "process_open_fds").unwrap_or(0.0) > 0.0, "{m}");
    assert!(sample(&m, "process_resident_memory_bytes").unwrap_or(0.0) > 0.0);
    assert!(m.contains("process_cpu_seconds_total "), "{m}");
    let build = m
        .lines()
        .find(|l| l.starts_with("vellum_build_info{"))
        .expect("build info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(
        build.contains("commit=\"") && build.ends_with(" 1"),
        "{build}"
    );
    // Labels carry route templates, never ids or identifiers.
    assert!(!m.contains(&id), "an event id leaked into /metrics");
    assert!(
        !m.contains("8675309"),
        "a patient identifier leaked into /metrics"
    );
    assert!(m.ends_with("# EOF\n"));
}

#[tokio::test]
async fn search_latency_and_store_figures_are_exposed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = serve(&db.url, &[("VELLUM_MLLP_ADDR", "")]);
    server.ready().await;
    let r = vellum_testkit::authed_client()
        .get(format!("{}/fhir/AuditEvent?action=E", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = server.metrics().await;
    assert_eq!(
        sample(&m, "vellum_search_duration_seconds_count"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "vellum_store_errors_total"),
        None,
        "no errors yet: {m}"
    );
}

/// Changes one stored body behind vellum's back (the owner can drop the
/// insert-only triggers; detection is what is tested).
async fn tamper_sqlite(path: &std::path::Path) {
    use sqlx::{Connection, Executor};
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw sqlite");
    for sql in [
        "DROP TRIGGER entry_no_update",
        "PRAGMA foreign_keys = OFF",
        "UPDATE entry SET body = body || ' ' WHERE seq = 2",
    ] {
        c.execute(sql).await.expect(sql);
    }
}

#[tokio::test]
async fn a_server_on_a_tampered_ledger_is_not_ready() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut first = serve(&db.url, &[("VELLUM_MLLP_ADDR", "")]);
    first.ready().await;
    let app = vellum_testkit::TestApp {
        base: first.base.clone(),
        client: vellum_testkit::authed_client(),
    };
    for n in 0..3 {
        assert_eq!(app.post_event(&sample_event(n)).await.status(), 201);
    }
    first.stop();
    tamper_sqlite(&db.sqlite_path().expect("sqlite path")).await;

    let mut second = serve(&db.url, &[("VELLUM_MLLP_ADDR", "")]);
    let (status, body) = second.readyz_until(|_, body| body.contains("failed")).await;
    assert_eq!(status, 503);
    assert!(body.contains("seq 2"), "{body}");
    let m = second.metrics().await;
    assert_eq!(sample(&m, "vellum_verify_last_ok"), Some(0.0), "{m}");
    let verdict: Value = vellum_testkit::authed_client()
        .get(format!("{}/admin/verify", second.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["problem"]["seq"], 2, "{verdict}");
    // Still not ready: the failure is not forgotten.
    let again = reqwest::get(format!("{}/readyz", second.base))
        .await
        .unwrap();
    assert_eq!(again.status(), 503);
    let log = second.stop();
    assert!(log.contains("start-up verification FAILED"), "{log}");
}
