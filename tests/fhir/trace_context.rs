//! A request's W3C `traceparent` is recorded in the stored event (an entity
//! whose `what.identifier` is the trace id and whose `traceparent` detail
//! is the header value), for REST create, Bundle entries and the AI API; the
//! event stays valid R4 and valid against its profile, and a malformed
//! header is ignored.

use serde_json::{json, Value};
use vellum_testkit::validator::validate_independently;
use vellum_testkit::{ai, backend_tests, sample_event, spawn_app, TestApp, TestDb};

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_SYSTEM: &str = "https://www.w3.org/TR/trace-context/";

async fn send(app: &TestApp, path: &str, ct: &str, body: &Value, trace: &str) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", ct)
        .header("traceparent", trace)
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn stored(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/fhir/AuditEvent/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The `traceparent` details the event records.
fn recorded_traces(event: &Value) -> Vec<(String, String)> {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["what"]["identifier"]["system"] == TRACE_SYSTEM)
        .flat_map(|e| {
            let id = e["what"]["identifier"]["value"].as_str().unwrap_or("");
            e["detail"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["type"] == "traceparent")
                .map(move |d| {
                    (
                        id.to_string(),
                        d["valueString"].as_str().unwrap_or("").to_string(),
                    )
                })
        })
        .collect()
}

backend_tests! {
    async fn a_valid_traceparent_is_recorded_in_every_way_in_and_a_malformed_one_is_ignored(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let fhir = "application/fhir+json";

        let (status, created) = send(&app, "/fhir/AuditEvent", fhir, &sample_event(1), TRACE).await;
        assert_eq!(status, 201, "{created}");
        let rest = stored(&app, created["id"].as_str().expect("id")).await;

        let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": sample_event(2), "request": {"method": "POST", "url": "AuditEvent"}}
        ]});
        let (status, answer) = send(&app, "/fhir", fhir, &bundle, TRACE).await;
        assert_eq!(status, 200, "{answer}");
        let location = answer["entry"][0]["response"]["location"].as_str().expect("location");
        let entry_id = location.split('/').nth(1).expect("AuditEvent/<id>/…");
        let from_bundle = stored(&app, entry_id).await;

        let model = ai::model("chest-xray-ai", "2.4.1", "2026-01-10T08:00:00Z");
        let (status, m) = send(&app, "/ai/v1/models", "application/json", &model, TRACE).await;
        assert_eq!(status, 201, "{m}");
        let (status, inf) = send(
            &app,
            "/ai/v1/inferences",
            "application/json",
            &ai::inference("inf-trace-1", "2.4.1"),
            TRACE,
        )
        .await;
        assert_eq!(status, 201, "{inf}");
        let from_ai = stored(&app, inf["id"].as_str().expect("id")).await;

        let expected = vec![(TRACE_ID.to_string(), TRACE.to_string())];
        for event in [&rest, &from_bundle, &from_ai] {
            assert_eq!(recorded_traces(event), expected, "{event}");
        }

        // Malformed (upper-case hex, all-zero ids, garbage): stored, untraced.
        for (n, bad) in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "not a trace",
        ]
        .into_iter()
        .enumerate()
        {
            let (status, created) =
                send(&app, "/fhir/AuditEvent", fhir, &sample_event(10 + n as u64), bad).await;
            assert_eq!(status, 201, "{bad}: {created}");
            let event = stored(&app, created["id"].as_str().expect("id")).await;
            assert!(recorded_traces(&event).is_empty(), "{bad} was recorded: {event}");
        }

        // The trace id finds the four traced events (the model registration
        // was sent with it too), and only them.
        let (status, found) = app
            .get_json(&format!(
                "/fhir/AuditEvent?entity.identifier={TRACE_SYSTEM}|{TRACE_ID}&_summary=count"
            ))
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["total"], 4, "{found}");

        let (valid, report) = validate_independently(&[rest, from_bundle, from_ai]);
        assert!(valid, "{report}");
    }
}
