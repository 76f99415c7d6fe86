//! The HL7 v2 → AuditEvent mapping, message by message: every fixture maps
//! to an event that passes vellum's R4 validation, with the fields the
//! mapping table (docs/hl7v2.md) promises.

use serde_json::Value;
use vellum::fhir::create::prepare_audit_event;
use vellum::hl7v2::{self, InferenceRef, Kind, Origin};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/hl7v2/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.trim_end()
        .replace("\r\n", "\r")
        .replace('\n', "\r")
        .into_bytes()
}

fn origin() -> Origin {
    Origin {
        peer: "10.20.30.40:51234".parse().unwrap(),
        local: "127.0.0.1:2575".parse().unwrap(),
    }
}

const RECORDED: &str = "2026-03-14T08:26:54.000000Z";

fn map(name: &str, link: Option<&InferenceRef>) -> (hl7v2::Inbound, Value) {
    let raw = fixture(name);
    let inbound = hl7v2::read(&raw, origin()).unwrap_or_else(|e| panic!("{name}: {}", e.refusal));
    let body = hl7v2::to_audit_event(&inbound, link, RECORDED);
    let event: Value = serde_json::from_str(&body).expect("the mapping writes JSON");
    if let Err(r) = prepare_audit_event(body.as_bytes()) {
        panic!(
            "{name}: mapped event is invalid: {:?}\n{event:#}",
            r.issues()
        );
    }
    (inbound, event)
}

fn entity_with_id_type<'a>(event: &'a Value, code: &str) -> Vec<&'a Value> {
    event["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"]["identifier"]["type"]["coding"][0]["code"] == code)
        .collect()
}

#[test]
fn adt_a01_maps_to_a_patient_record_receipt() {
    let (inbound, e) = map("adt_a01.hl7", None);
    assert_eq!(inbound.kind, Kind::Receipt);
    assert_eq!(e["meta"]["profile"][0], hl7v2::RECEIPT_PROFILE);
    assert_eq!(e["type"]["code"], "110110");
    assert_eq!(e["subtype"][0]["code"], "ADT");
    assert_eq!(e["subtype"][1]["code"], "A01");
    assert_eq!(e["action"], "C");
    assert_eq!(e["recorded"], RECORDED);
    // Sender agent: the application (with its OID), facility, peer IP.
    let sender = &e["agent"][0];
    assert_eq!(sender["requestor"], true);
    assert_eq!(sender["who"]["identifier"]["value"], "EPICADT");
    assert_eq!(sender["network"]["address"], "10.20.30.40");
    assert_eq!(
        sender["location"]["identifier"]["value"],
        "urn:oid:1.2.840.114350.1.13.99"
    );
    assert_eq!(e["agent"][1]["who"]["identifier"]["value"], "VELLUM");
    assert_eq!(e["source"]["observer"]["display"], "vellum");
    // The message entity: control id and a digest, never the content.
    let msg = entity_with_id_type(&e, "MSH-10")[0];
    assert_eq!(msg["what"]["identifier"]["value"], "ADT000123");
    let sha = msg["detail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "sha256")
        .unwrap();
    assert_eq!(sha["valueBase64Binary"], inbound.sha256_b64);
    let text = e.to_string();
    assert!(!text.contains("DOE"), "patient names never stored");
    assert!(!text.contains("Main St"));
    // Patient from PID-3: the MR identifier, with its assigning authority.
    let patient = e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["role"]["code"] == "1")
        .unwrap();
    assert_eq!(patient["what"]["identifier"]["value"], "8675309");
    assert_eq!(
        patient["what"]["identifier"]["assigner"]["display"],
        "STMARYS"
    );
}

#[test]
fn orm_o01_records_order_and_accession_numbers() {
    let (_, e) = map("orm_o01.hl7", None);
    assert_eq!(e["type"]["code"], "110109");
    let plac = entity_with_id_type(&e, "PLAC");
    let fill = entity_with_id_type(&e, "FILL");
    let acsn = entity_with_id_type(&e, "ACSN");
    assert_eq!(
        (plac.len(), fill.len(), acsn.len()),
        (1, 1, 1),
        "ORC/OBR duplicates removed"
    );
    assert_eq!(plac[0]["what"]["identifier"]["value"], "PLC-20260314-0042");
    assert_eq!(plac[0]["what"]["identifier"]["assigner"]["display"], "EPIC");
    assert_eq!(fill[0]["what"]["identifier"]["value"], "FIL-77812");
    assert_eq!(acsn[0]["what"]["identifier"]["value"], "ACC-2026-0314-0007");
}

#[test]
fn oru_r01_with_ai_results_maps_to_an_inference() {
    let (inbound, e) = map("oru_r01_ai.hl7", None);
    assert_eq!(inbound.kind, Kind::AiInference);
    assert_eq!(e["meta"]["profile"][0], hl7v2::INFERENCE_PROFILE);
    assert_eq!(e["meta"]["security"][0]["code"], "AIAST");
    assert_eq!(e["subtype"][0]["code"], "inference");
    let study = &e["entity"][0];
    assert_eq!(study["what"]["identifier"]["system"], "urn:dicom:uid");
    assert_eq!(
        study["what"]["identifier"]["value"],
        "urn:oid:1.2.826.0.1.3680043.8.498.1"
    );
    assert_eq!(study["type"]["code"], "2");
    assert_eq!(study["role"]["code"], "3");
    assert_eq!(
        study["extension"][0]["valueIdentifier"]["value"],
        "ACC-2026-0314-0007"
    );
    let findings: Vec<Value> = study["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_str(d["valueString"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0]["code"], "RID5352");
    assert_eq!(
        findings[0]["confidence"], "0.940",
        "decimal precision is kept"
    );
    assert_eq!(findings[0]["status"], "F");
    assert_eq!(findings[0]["modelVersion"], "2.4.1");
    let model = &e["agent"][1];
    assert_eq!(model["who"]["identifier"]["value"], "chest-xray-ai");
    assert_eq!(model["who"]["display"], "chest-xray-ai 2.4.1");
}

#[test]
fn a_correction_links_the_earlier_inference() {
    let link = InferenceRef {
        id: "0b9f5e7e-8a1d-4a55-9d0c-3e1f2a3b4c5d".into(),
        recorded: "2026-03-14T08:26:54.000000Z".into(),
        clinical_time: None,
    };
    let (inbound, e) = map("oru_r01_ai_correction.hl7", Some(&link));
    assert_eq!(
        inbound.kind,
        Kind::AiOverride {
            study_uid: "1.2.826.0.1.3680043.8.498.1".into()
        }
    );
    assert_eq!(e["meta"]["profile"][0], hl7v2::OVERRIDE_PROFILE);
    let inf = &e["entity"][0];
    assert_eq!(inf["what"]["reference"], format!("AuditEvent/{}", link.id));
    let detail = |t: &str| {
        inf["detail"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["type"] == t)
            .map(|d| d["valueString"].as_str().unwrap().to_string())
    };
    assert_eq!(detail("action").as_deref(), Some("reject"));
    assert_eq!(detail("reason-code").as_deref(), Some("FP"));
    assert!(detail("reason-text").unwrap().starts_with("Skin fold"));
    // 09:31:12+01:00 − 08:26:54Z = 4 min 18 s.
    assert_eq!(detail("time-to-action-ms").as_deref(), Some("258000"));
    assert_eq!(e["agent"][0]["who"]["identifier"]["value"], "rad-7");
    assert_eq!(e["agent"][0]["role"][0]["coding"][0]["code"], "66862007");
    // Without a stored inference the message is still kept, as a receipt.
    let (_, fallback) = map("oru_r01_ai_correction.hl7", None);
    assert_eq!(fallback["meta"]["profile"][0], hl7v2::RECEIPT_PROFILE);
}

#[test]
fn malformed_messages_are_refused_with_location_and_code() {
    let cases = [
        ("invalid_no_msh.hl7", "100", 0),
        ("invalid_missing_msh10.hl7", "101", 10),
        ("invalid_bad_version.hl7", "203", 12),
    ];
    for (name, code, field) in cases {
        let r = hl7v2::read(&fixture(name), origin()).unwrap_err().refusal;
        assert_eq!((r.code.code(), r.field), (code, field), "{name}");
    }
}

#[test]
fn a_non_numeric_ai_confidence_is_a_data_type_error_at_obx5() {
    let raw = String::from_utf8(fixture("oru_r01_ai.hl7"))
        .unwrap()
        .replace("||0.120||", "||high||");
    let r = hl7v2::read(raw.as_bytes(), origin()).unwrap_err().refusal;
    assert_eq!(
        (r.segment.as_str(), r.sequence, r.field, r.code.code()),
        ("OBX", 2, 5, "102")
    );
    assert_eq!(r.ack, hl7v2::AckCode::Error);
}

#[test]
fn lf_separated_messages_keep_all_segments() {
    // CRATES.md: strict parsing of LF-separated text keeps only MSH.
    let raw = String::from_utf8(fixture("orm_o01.hl7"))
        .unwrap()
        .replace('\r', "\n");
    let inbound = hl7v2::read(raw.as_bytes(), origin()).unwrap();
    assert_eq!(inbound.fields.segment_count, 5);
    assert_eq!(inbound.fields.orders.len(), 3);
}

#[test]
fn escape_sequences_are_decoded_in_used_values() {
    let raw = String::from_utf8(fixture("orm_o01.hl7"))
        .unwrap()
        .replace("FIL-77812^RIS", r"FIL\T\77812^RIS");
    let inbound = hl7v2::read(raw.as_bytes(), origin()).unwrap();
    assert!(inbound.fields.orders.iter().any(|o| o.value == "FIL&77812"));
}

proptest::proptest! {
    /// Arbitrary bytes after an MSH prefix, and arbitrary mutations of a real
    /// message, never panic: they are read or refused.
    #[test]
    fn arbitrary_messages_are_read_or_refused(
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        cut in 0usize..1200,
        flip in proptest::collection::vec((0usize..1200, proptest::prelude::any::<u8>()), 0..8),
    ) {
        let mut a = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5.1\r".to_vec();
        a.extend(&tail);
        let _ = hl7v2::read(&a, origin());
        let mut b = fixture("oru_r01_ai.hl7");
        for (at, byte) in flip {
            // Mostly delimiters, whitespace and escapes: the bytes that
            // change structure; every 8th flip is any byte.
            const SET: &[u8] = b"|^~\\&\r\n \t\x01AZaz09.-+X";
            let byte = if byte % 8 == 0 { byte } else { SET[byte as usize % SET.len()] };
            if let Some(x) = b.get_mut(at) {
                *x = byte;
            }
        }
        b.truncate(cut.max(1));
        if let Ok(inbound) = hl7v2::read(&b, origin()) {
            let body = hl7v2::to_audit_event(&inbound, None, RECORDED);
            proptest::prop_assert!(serde_json::from_str::<Value>(&body).is_ok());
            let checked = prepare_audit_event(body.as_bytes());
            proptest::prop_assert!(checked.is_ok(), "{:?}\n{}", checked.err(), body);
        }
    }
}
