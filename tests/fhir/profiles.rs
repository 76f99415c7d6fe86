//! vellum's own profile validation (src/fhir/profile.rs) against the
//! valid and invalid fixtures of each AI profile, and the HL7 v2 AI
//! mappings against their profiles.

use vellum::fhir::create::{prepare_audit_event, Rejection};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/auditevents");

fn verdict(name: &str) -> Result<(), Vec<(String, String)>> {
    let bytes = std::fs::read(format!("{DIR}/{name}")).unwrap();
    match prepare_audit_event(&bytes) {
        Ok(_) => Ok(()),
        Err(Rejection::Invalid(i)) | Err(Rejection::Malformed(i)) => Err(i
            .into_iter()
            .map(|i| (i.expression.unwrap_or_default(), i.diagnostics))
            .collect()),
    }
}

#[test]
fn valid_profiled_fixtures_pass() {
    for name in [
        "valid-radiology-ai-inference-profiled.json",
        "valid-radiology-ai-override.json",
        "valid-radiology-ai-rendering.json",
        "valid-ai-model-deployment.json",
        "valid-pixel-digest.json",
        "valid-security-alert.json",
    ] {
        assert_eq!(verdict(name), Ok(()), "{name}");
    }
}

/// Every invalid profiled fixture is refused, and the first issue names
/// the element.
#[test]
fn invalid_profiled_fixtures_are_refused_naming_the_element() {
    let cases = [
        (
            "invalid-radiology-ai-inference-no-aiast.json",
            "AuditEvent.meta.security",
        ),
        (
            "invalid-radiology-ai-inference-confidence.json",
            "AuditEvent.entity[0].detail[3].value",
        ),
        (
            "invalid-radiology-ai-inference-no-model-agent.json",
            "AuditEvent.agent",
        ),
        (
            "invalid-radiology-ai-inference-study-identifier.json",
            "AuditEvent.entity[0].what.identifier.type",
        ),
        (
            "invalid-radiology-ai-inference-digest-type.json",
            "AuditEvent.entity[0].detail[0].value",
        ),
        (
            "invalid-radiology-ai-override-action-code.json",
            "AuditEvent.subtype[1]",
        ),
        (
            "invalid-radiology-ai-override-no-inference.json",
            "AuditEvent.entity",
        ),
        (
            "invalid-radiology-ai-override-action-fixed.json",
            "AuditEvent.action",
        ),
        (
            "invalid-radiology-ai-rendering-viewed.json",
            "AuditEvent.entity[0].detail",
        ),
        (
            "invalid-radiology-ai-rendering-no-destination.json",
            "AuditEvent.agent",
        ),
        (
            "invalid-ai-model-deployment-no-training-date.json",
            "AuditEvent.entity[0].detail",
        ),
        (
            "invalid-ai-model-deployment-version-mismatch.json",
            "AuditEvent.entity[0]",
        ),
        (
            "invalid-pixel-digest-no-digest.json",
            "AuditEvent.entity[1]",
        ),
        ("invalid-security-alert-no-rule.json", "AuditEvent.entity"),
        (
            "invalid-unknown-vellum-profile.json",
            "AuditEvent.meta.profile[0]",
        ),
    ];
    for (name, expr) in cases {
        let issues = verdict(name).expect_err(name);
        assert!(
            issues.iter().any(|(e, _)| e == expr),
            "{name}: expected an issue at {expr}, got {issues:#?}"
        );
    }
}

fn hl7(name: &str) -> vellum::hl7v2::Inbound {
    let raw = std::fs::read(format!(
        "{}/fixtures/hl7v2/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let origin = vellum::hl7v2::Origin {
        peer: "10.1.2.3:40000".parse().unwrap(),
        local: "127.0.0.1:2575".parse().unwrap(),
    };
    vellum::hl7v2::read(&raw, origin).unwrap()
}

#[test]
fn hl7v2_ai_events_conform_to_their_profiles() {
    let recorded = "2026-03-14T08:26:54.000000Z";
    let inf = vellum::hl7v2::to_audit_event(&hl7("oru_r01_ai.hl7"), None, recorded);
    assert!(prepare_audit_event(inf.as_bytes()).is_ok(), "{inf}");
    let link = vellum::hl7v2::InferenceRef {
        id: "0b9f5e7e-8a1d-4a55-9d0c-3e1f2a3b4c5d".into(),
        recorded: recorded.into(),
        clinical_time: None,
    };
    let ovr =
        vellum::hl7v2::to_audit_event(&hl7("oru_r01_ai_correction.hl7"), Some(&link), recorded);
    assert!(ovr.contains("radiology-ai-override"));
    assert!(prepare_audit_event(ovr.as_bytes()).is_ok(), "{ovr}");
    // Free text only when configured; its digest always.
    let mut quiet = hl7("oru_r01_ai_correction.hl7");
    quiet.keep_free_text = false;
    let minimal = vellum::hl7v2::to_audit_event(&quiet, Some(&link), recorded);
    assert!(!minimal.contains("Skin fold") && minimal.contains("reason-text-sha256"));
    assert!(ovr.contains("Skin fold") && ovr.contains("reason-text-sha256"));
    assert!(prepare_audit_event(minimal.as_bytes()).is_ok());
    // Break the mapping's output: the profile notices.
    let broken = inf.replace("AIAST", "HTEST");
    assert!(prepare_audit_event(broken.as_bytes()).is_err());
}

#[test]
fn hl7v2_patients_are_pseudonymised_when_configured() {
    let privacy = vellum::config::PrivacySettings {
        store_content: false,
        pseudonym_key: Some(b"0123456789abcdef".to_vec().into()),
    };
    let mut inbound = hl7("adt_a01.hl7");
    let clear_id = inbound.fields.patient.as_ref().unwrap().id.clone();
    vellum::hl7v2::receipt::minimise_patient(&mut inbound, &privacy);
    let e: serde_json::Value = serde_json::from_str(&vellum::hl7v2::to_audit_event(
        &inbound,
        None,
        "2026-03-14T08:26:54.000000Z",
    ))
    .unwrap();
    let patient = e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["role"]["code"] == "1")
        .unwrap();
    let id = &patient["what"]["identifier"];
    assert_eq!(id["system"], "https://vellum-audit.org/fhir/pseudonym");
    assert_eq!(id["value"].as_str().unwrap().len(), 64);
    assert!(!e.to_string().contains(&clear_id));
    // Off: unchanged.
    let mut inbound = hl7("adt_a01.hl7");
    vellum::hl7v2::receipt::minimise_patient(&mut inbound, &Default::default());
    assert_eq!(inbound.fields.patient.unwrap().id, clear_id);
}
