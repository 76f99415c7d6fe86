//! The DICOM fixtures (fixtures/dicom) and their independent pydicom
//! reference digests (fixtures/dicom/digests.json).

use std::io::Write;
use std::path::PathBuf;

use flate2::write::DeflateEncoder;

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

/// The study entity of docs/dicom.md (`what.identifier` = the Study Instance
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

/// Deflated Explicit VR Little Endian.
const DEFLATED: &[u8] = b"1.2.840.10008.1.2.1.99\0";

/// A deflate bomb (hostile DICOM input, docs/operations.md): a Part 10 file with a deflated data set of
/// `elements` private OB elements of `size` zero bytes each, then a small
/// pixel data element; it weighs about a thousandth of what it inflates to.
pub fn deflated_instance(elements: usize, size: usize) -> Vec<u8> {
    let mut ts = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I'];
    ts.extend_from_slice(&(DEFLATED.len() as u16).to_le_bytes());
    ts.extend_from_slice(DEFLATED);
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    // (0002,0000) UL group length, then the transfer syntax.
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
    out.extend_from_slice(&ts);
    let mut z = DeflateEncoder::new(out, flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for i in 0..elements {
        let mut h = vec![0x09, 0x00, 0x10 + i as u8, 0x10, b'O', b'B', 0, 0];
        h.extend_from_slice(&(size as u32).to_le_bytes());
        z.write_all(&h).expect("deflate");
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len());
            z.write_all(&zeros[..n]).expect("deflate");
            left -= n;
        }
    }
    let mut pixels = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
    pixels.extend_from_slice(&4u32.to_le_bytes());
    pixels.extend_from_slice(b"\x01\x02\x03\x04");
    z.write_all(&pixels).expect("deflate");
    z.finish().expect("deflate")
}
