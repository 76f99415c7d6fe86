//! Every fixture (one per PS3.15 A.5.3 event type, an RFC 3881 message)
//! converts to an AuditEvent vellum's own validation accepts, and the
//! independent R4 validator too; invalid ones become parse-failure events.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use vellum::atna::{self, Received, XmlLimits};
use vellum::config::PrivacySettings;
use vellum_testkit::validator::validate_independently;
use vellum_testkit::*;

use crate::common::*;

fn received<'a>(raw: &'a [u8], privacy: PrivacySettings) -> Received<'a> {
    Received {
        raw,
        peer: "192.0.2.7:51000".into(),
        transport: "tcp",
        hostname: Some("pacs.example.org".into()),
        app_name: Some("DCM4CHEE".into()),
        priority: Some(85),
        msg_id: Some("IHE+RFC-3881".into()),
        received: "2026-03-01T09:15:31.000000Z".into(),
        privacy,
    }
}

fn map(raw: &[u8], privacy: PrivacySettings) -> Value {
    let msg = atna::parse(raw, XmlLimits::default()).expect("a DICOM audit message");
    let body = atna::to_audit_event(&msg, &received(raw, privacy));
    if let Err(r) =
        vellum::fhir::create::check(body.as_bytes(), true, vellum_json::Limits::INTERNAL)
    {
        panic!("vellum refused the mapped event: {:?}\n{body}", r.issues());
    }
    serde_json::from_str(&body).unwrap()
}

const EVENT_TYPES: &[(&str, &str)] = &[
    ("application-activity.xml", "110100"),
    ("audit-log-used.xml", "110101"),
    ("begin-transferring.xml", "110102"),
    ("data-export.xml", "110106"),
    ("data-import.xml", "110107"),
    ("dicom-instances-accessed.xml", "110103"),
    ("dicom-instances-transferred.xml", "110104"),
    ("dicom-study-deleted.xml", "110105"),
    ("network-entry.xml", "110108"),
    ("order-record.xml", "110109"),
    ("patient-record.xml", "110110"),
    ("query.xml", "110112"),
    ("rfc3881-pix-query.xml", "110112"),
    ("security-alert.xml", "110113"),
    ("user-authentication.xml", "110114"),
];

#[test]
fn every_fixture_maps_to_a_valid_audit_event() {
    let fixtures = valid_fixtures();
    assert_eq!(fixtures.len(), EVENT_TYPES.len());
    for (name, raw) in &fixtures {
        let event = map(raw, PrivacySettings::default());
        let code = EVENT_TYPES.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(event["type"]["code"], code, "{name}");
        assert_eq!(
            event["type"]["system"],
            "http://dicom.nema.org/resources/ontology/DCM"
        );
        // The raw message's hash is kept; the raw bytes only when configured.
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(raw));
        assert_eq!(
            message_detail(&event, "atna-message-sha256").unwrap()["valueBase64Binary"],
            digest,
            "{name}"
        );
        assert!(message_detail(&event, "atna-message").is_none());
        assert!(
            event["source"]["observer"]["identifier"]["value"].is_string(),
            "{name}"
        );
    }
}

#[test]
fn the_mapping_follows_the_r4_dicom_mapping() {
    let raw = std::fs::read(fixtures_dir().join("dicom-instances-transferred.xml")).unwrap();
    let e = map(&raw, PrivacySettings::default());
    assert_eq!(e["action"], "C");
    assert_eq!(e["outcome"], "0");
    assert_eq!(e["recorded"], "2026-03-01T09:15:30.123000Z");
    let source_agent = &e["agent"][0];
    assert_eq!(source_agent["type"]["coding"][0]["code"], "110153");
    assert_eq!(source_agent["who"]["identifier"]["value"], "STORESCU");
    assert_eq!(source_agent["requestor"], false);
    assert_eq!(source_agent["network"]["address"], "modality.example.org");
    assert_eq!(source_agent["network"]["type"], "1");
    assert_eq!(e["source"]["site"], "dcm4chee-arc");
    assert_eq!(e["source"]["type"][0]["code"], "4");
    let study = &e["entity"][0];
    assert_eq!(study["what"]["identifier"]["system"], "urn:dicom:uid");
    assert_eq!(
        study["what"]["identifier"]["value"],
        "urn:oid:1.2.826.0.1.3680043.8.1055.1.20260301.1"
    );
    assert_eq!(study["type"]["code"], "2");
    assert_eq!(study["role"]["code"], "3");
    let ext = |url: &str| -> Vec<Value> {
        study["extension"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| {
                x["url"] == format!("http://hl7.org/fhir/StructureDefinition/auditevent-{url}")
            })
            .cloned()
            .collect()
    };
    assert_eq!(
        ext("Accession")[0]["valueIdentifier"]["value"],
        "ACC-2026-0042"
    );
    assert_eq!(
        ext("SOPClass")[0]["valueReference"]["identifier"]["value"],
        "urn:oid:1.2.840.10008.5.1.4.1.1.2"
    );
    assert_eq!(ext("NumberOfInstances")[0]["valueInteger"], 3);
    assert_eq!(ext("Instance").len(), 3);
    let patient = &e["entity"][1];
    assert_eq!(
        patient["what"]["identifier"]["value"],
        "PID-0042^^^HOSPITAL"
    );
    assert_eq!(patient["name"], "DOE^JANE");

    // Query: the query bytes (base64), a detail, never a name as well.
    let raw = std::fs::read(fixtures_dir().join("query.xml")).unwrap();
    let q = map(&raw, PrivacySettings::default());
    assert!(q["entity"][0]["query"].as_str().unwrap().len() > 10);
    assert_eq!(q["entity"][0]["detail"][0]["type"], "TransferSyntax");
    // Data export: media, ParticipantObjectContainsStudy.
    let raw = std::fs::read(fixtures_dir().join("data-export.xml")).unwrap();
    let x = map(&raw, PrivacySettings::default());
    assert_eq!(x["agent"][2]["media"]["code"], "110033");
    assert!(x["entity"][0]["extension"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["url"] == "http://hl7.org/fhir/StructureDefinition/auditevent-ParticipantObjectContainsStudy"));
    // Study deleted: lifecycle.
    let raw = std::fs::read(fixtures_dir().join("dicom-study-deleted.xml")).unwrap();
    let d = map(&raw, PrivacySettings::default());
    assert_eq!(d["entity"][0]["lifecycle"]["code"], "14");
    // RFC 3881: code/displayName attributes, IHE transaction subtype.
    let raw = std::fs::read(fixtures_dir().join("rfc3881-pix-query.xml")).unwrap();
    let r = map(&raw, PrivacySettings::default());
    assert_eq!(r["subtype"][0]["code"], "ITI-9");
    assert_eq!(r["subtype"][0]["system"], "urn:ihe:event-type-code");
    assert_eq!(r["agent"][0]["role"][0]["coding"][0]["display"], "Source");
}

#[test]
fn privacy_settings_apply() {
    let raw = std::fs::read(fixtures_dir().join("patient-record.xml")).unwrap();
    let privacy = PrivacySettings::validate(&vellum::config::RawPrivacy {
        store_content: true,
        pseudonymise_patients: true,
        pseudonym_key: Some("0123456789abcdef0123".into()),
    })
    .unwrap();
    let e = map(&raw, privacy);
    let patient = &e["entity"][0];
    assert_eq!(
        patient["what"]["identifier"]["system"],
        "https://vellum-audit.org/fhir/pseudonym"
    );
    assert_ne!(
        patient["what"]["identifier"]["value"],
        "PID-0042^^^HOSPITAL"
    );
    assert!(patient.get("name").is_none());
    let kept = message_detail(&e, "atna-message").unwrap()["valueBase64Binary"]
        .as_str()
        .unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(kept)
            .unwrap(),
        raw
    );
}

#[test]
fn invalid_messages_become_valid_parse_failure_events() {
    let invalid = invalid_fixtures();
    assert_eq!(invalid.len(), 5);
    for (name, raw) in &invalid {
        let err = atna::parse(raw, XmlLimits::default()).expect_err(name);
        let body =
            atna::parse_failure_event(&received(raw, PrivacySettings::default()), &err.to_string());
        vellum::fhir::create::check(body.as_bytes(), true, vellum_json::Limits::INTERNAL)
            .unwrap_or_else(|r| panic!("{name}: {:?}", r.issues()));
        let e: Value = serde_json::from_str(&body).unwrap();
        assert!(is_parse_failure(&e));
        assert_eq!(e["agent"][0]["network"]["address"], "192.0.2.7");
        assert_eq!(
            message_detail(&e, "syslog-sender").unwrap()["valueString"],
            "192.0.2.7:51000"
        );
    }
}

#[test]
fn mapped_events_pass_the_independent_validator() {
    if !tool_available(
        "node (independent FHIR validator)",
        on_path("node") && on_path("npm"),
    ) {
        return;
    }
    let mut events: Vec<Value> = valid_fixtures()
        .iter()
        .map(|(_, raw)| map(raw, PrivacySettings::default()))
        .collect();
    let (_, raw) = &invalid_fixtures()[0];
    let failure = atna::parse_failure_event(&received(raw, PrivacySettings::default()), "x");
    events.push(serde_json::from_str(&failure).unwrap());
    let (ok, report) = validate_independently(&events);
    assert!(ok, "{report}");
}

backend_tests! {
    async fn every_fixture_sent_over_tcp_is_stored_and_verifies(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_syslog_app(&db.url, |_| {}).await;
        let mut tcp = TcpStream::connect(("127.0.0.1", app.tcp.unwrap())).await.unwrap();
        let valid = valid_fixtures();
        let invalid = invalid_fixtures();
        // Octet counting carries the multi-line XML unchanged.
        for (_, raw) in valid.iter().chain(&invalid) {
            let msg = rfc5424(&String::from_utf8_lossy(raw));
            tcp.write_all(&octet_counted(&msg)).await.unwrap();
        }
        tcp.shutdown().await.unwrap();
        let n = valid.len() + invalid.len();
        let events = app.wait_for(n).await;
        assert_eq!(events.len(), n, "{backend:?}");
        let failures: Vec<&Value> = events.iter().filter(|e| is_parse_failure(e)).collect();
        assert_eq!(failures.len(), invalid.len(), "{backend:?}");
        // Each stored event carries its message's hash and the sender.
        for (_, raw) in valid.iter().chain(&invalid) {
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(raw));
            assert!(
                events.iter().any(|e| message_detail(e, "atna-message-sha256").unwrap()["valueBase64Binary"] == digest),
                "{backend:?}: no event with the message's hash"
            );
        }
        for e in &events {
            assert_eq!(message_detail(e, "syslog-hostname").unwrap()["valueString"], "pacs.example.org");
        }
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
        let r = app.client.get(format!("{}/metrics", app.http)).send().await.unwrap();
        let metrics = r.text().await.unwrap();
        assert!(metrics.contains("vellum_syslog_parse_failures_total"), "{metrics}");
    }
}
