//! The DICOM fixtures (fixtures/dicom) and their independent pydicom
//! reference digests (fixtures/dicom/digests.json).

use std::path::PathBuf;

use serde_json::Value;

pub fn fixtures() -> PathBuf {
    crate::repo_root().join("fixtures/dicom")
}

/// The pydicom reference study digest (base64) and instance count.
pub fn reference_study(uid: &str) -> (String, u64) {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("digests.json")).expect("read"))
            .expect("digests.json");
    let s = v["studies"]
        .as_array()
        .expect("studies")
        .iter()
        .find(|s| s["study_instance_uid"] == uid)
        .expect("study in digests.json");
    (
        s["sha256_base64"].as_str().unwrap_or_default().to_string(),
        s["instances"].as_u64().unwrap_or_default(),
    )
}

/// The study entity of DESIGN §3 (`what.identifier` = the Study Instance
/// UID, type 2 System Object, role 3 Report), without details.
pub fn study_entity(uid: &str) -> Value {
    serde_json::json!({
        "what": {"identifier": {
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110180", "display": "Study Instance UID"}]},
            "system": "urn:dicom:uid",
            "value": format!("urn:oid:{uid}")}},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "3"}
    })
}

/// `vellum hash --json` output (JSON Lines: one `type`d record per file,
/// then per study) gathered into `{"instances", "skipped", "errors",
/// "studies"}` arrays; panics on a line that is not a JSON object.
pub fn hash_report(stdout: &[u8]) -> Value {
    let mut report =
        serde_json::json!({"instances": [], "skipped": [], "errors": [], "studies": []});
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("vellum hash --json line is not JSON ({e}): {line}"));
        let list = match v["type"].as_str() {
            Some("instance") => "instances",
            Some("skipped") => "skipped",
            Some("error") => "errors",
            Some("study") => "studies",
            other => panic!("unknown record type {other:?}: {line}"),
        };
        report[list].as_array_mut().expect("array").push(v);
    }
    report
}
