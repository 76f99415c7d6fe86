//! Every event vellum stores validates against the official R4 definitions
//! with an independent validator (medplum's, from npm; see
//! conformance/validator/validate.mjs), not only with vellum's own checks.

use serde_json::Value;
use std::process::Command;
use vellum_testkit::ai;
use vellum_testkit::validator::{ensure_validator, validate_independently};
use vellum_testkit::*;

fn fixtures(prefix: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("fixtures/auditevents").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".json") {
            // Some invalid fixtures are deliberately not JSON serde accepts
            // (lone surrogates); they cannot reach a JSON validator at all.
            if let Ok(v) = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()) {
                out.push((name, v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn stored_events_validate_against_r4_with_an_independent_validator() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let mut inputs: Vec<(String, Value)> = fixtures("valid-");
    assert!(
        inputs.len() >= 3,
        "fixtures/auditevents needs valid examples"
    );
    inputs.extend((0..20).map(|n| (format!("sample_event({n})"), sample_event(n))));
    let mut stored = Vec::new();
    for (name, event) in &inputs {
        let r = app.post_event(event).await;
        assert_eq!(
            r.status(),
            201,
            "{name} was refused: {}",
            r.text().await.unwrap()
        );
        let created: Value = r.json().await.unwrap();
        let url = format!(
            "{}/fhir/AuditEvent/{}",
            app.base,
            created["id"].as_str().unwrap()
        );
        stored.push(
            app.client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap(),
        );
    }
    let (ok, report) = validate_independently(&stored);
    assert!(ok, "stored events fail independent validation:\n{report}");
    assert_eq!(report.lines().count(), stored.len());
}

/// Every event the AI API produces (each kind, with and without content and
/// pseudonyms), read back through /fhir, validates against base R4 and its
/// vellum profile (snapshots loaded, vellum bindings checked).
#[tokio::test]
async fn ai_api_events_validate_against_r4_and_their_profiles_independently() {
    let mut stored = Vec::new();
    for (store_content, key) in [(false, None), (true, Some("0123456789abcdef"))] {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut raw = vellum_testkit::raw_settings_for(&db.url);
        raw.privacy.store_content = store_content;
        raw.privacy.pseudonymise_patients = key.is_some();
        raw.privacy.pseudonym_key = key.map(Into::into);
        let app = spawn_app_with(vellum::config::Settings::validate(raw).unwrap()).await;
        let (dep, inf) = app.ai_inference_chain("x").await;
        let (s, ovr, _) = app.ai_post("overrides", &ai::override_of("o", &inf)).await;
        assert_eq!(s, 201, "{ovr}");
        let (s, rnd, _) = app
            .ai_post("renderings", &ai::rendering_of("r", &inf))
            .await;
        assert_eq!(s, 201, "{rnd}");
        // Minimal inputs too (optional fields absent).
        let minimal = serde_json::json!({
            "event_id": "min-1",
            "user": {"id": "u"},
            "source": {"system": "s"},
            "model": {"name": "chest-xray-ai", "version": "2.4.1"},
            "study": {"uid": "1.2.3"}
        });
        let (s, min, _) = app.ai_post("inferences", &minimal).await;
        assert_eq!(s, 201, "{min}");
        for id in [
            dep,
            inf,
            ovr["id"].as_str().unwrap().to_string(),
            rnd["id"].as_str().unwrap().to_string(),
            min["id"].as_str().unwrap().to_string(),
        ] {
            let (s, v) = app.get_json(&format!("/fhir/AuditEvent/{id}")).await;
            assert_eq!(s, 200);
            stored.push(v);
        }
    }
    let (ok, report) = validate_independently(&stored);
    assert!(ok, "AI API events fail independent validation:\n{report}");
    assert_eq!(report.lines().count(), stored.len());
}

#[tokio::test]
async fn the_independent_validator_agrees_that_invalid_fixtures_are_invalid() {
    // Guards the guard: the validator must be able to fail. Every invalid
    // fixture that is still well-formed JSON is refused by vellum (checked in
    // tests/fhir/fhir_api.rs) and must be refused independently too, unless it
    // breaks a rule medplum does not check (listed here with the reason).
    let not_checked_by_medplum = [
        "invalid-duplicate-key",            // JSON.parse keeps the last duplicate
        "invalid-lone-surrogate",           // JSON.parse accepts lone surrogates
        "invalid-empty-string",             // medplum accepts "" primitives
        "invalid-recorded-impossible-date", // medplum checks the instant regex only, not the calendar
        // medplum 4.5 does not apply constraints below a slice's children
        // (nested entity slices): vellum's own validator does (tests/fhir/profiles.rs).
        "invalid-radiology-ai-inference-digest-type",
        "invalid-radiology-ai-inference-study-identifier",
    ];
    let mut cases = Vec::new();
    for (name, v) in fixtures("invalid-") {
        if v.get("resourceType") == Some(&Value::from("AuditEvent"))
            && !not_checked_by_medplum.iter().any(|p| name.starts_with(p))
        {
            cases.push((name, v));
        }
    }
    assert!(
        !cases.is_empty(),
        "fixtures/auditevents needs invalid AuditEvent examples"
    );
    let resources: Vec<Value> = cases.iter().map(|(_, v)| v.clone()).collect();
    let (_, report) = validate_independently(&resources);
    let verdicts: Vec<Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), cases.len());
    for ((name, _), verdict) in cases.iter().zip(&verdicts) {
        assert_eq!(
            verdict["ok"], false,
            "{name} passed the independent validator: {verdict}"
        );
    }
}

/// The committed snapshots are what profiles/build_snapshots.mjs generates
/// from the differentials (medplum validates against the snapshot, vellum
/// against the differential: they must not drift apart).
#[test]
fn profile_snapshots_are_up_to_date() {
    ensure_validator();
    let out = Command::new("node")
        .args(["profiles/build_snapshots.mjs", "--check"])
        .output()
        .expect("node is required");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The HL7 v2 AI mappings' events (inference, correction) validate against
/// base R4 and their vellum profiles independently. (Receipts are left out:
/// medplum 4.5 miscounts the nested slice `entity:message.detail:sha256` of
/// `hl7v2-message-receipt`; vellum's own validator checks it on every
/// receipt, tests/mllp/mllp_listener.rs.)
#[test]
fn hl7v2_mapped_events_validate_against_their_profiles_independently() {
    let origin = vellum::hl7v2::Origin {
        peer: "10.1.2.3:40000".parse().unwrap(),
        local: "127.0.0.1:2575".parse().unwrap(),
    };
    let recorded = "2026-03-14T08:26:54.000000Z";
    let link = vellum::hl7v2::InferenceRef {
        id: "0b9f5e7e-8a1d-4a55-9d0c-3e1f2a3b4c5d".into(),
        recorded: recorded.into(),
        clinical_time: None,
    };
    let mut events = Vec::new();
    for name in ["oru_r01_ai.hl7", "oru_r01_ai_correction.hl7"] {
        let raw = std::fs::read(format!("fixtures/hl7v2/{name}")).unwrap();
        let inbound = vellum::hl7v2::read(&raw, origin).unwrap();
        let body = vellum::hl7v2::to_audit_event(&inbound, Some(&link), recorded);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["meta"]["profile"][0]
                .as_str()
                .unwrap()
                .starts_with("https://vellum-audit.org/"),
            "{name}"
        );
        events.push(v);
    }
    let (ok, report) = validate_independently(&events);
    assert!(ok, "HL7 v2 events fail independent validation:\n{report}");
}
