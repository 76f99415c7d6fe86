//! Pixel digests of the real `vellum hash` binary against an independent
//! implementation (conformance/dicom_digest.py, pydicom), file by file, over
//! the generated fixtures and every test file pydicom ships.
//! Needs `python3` with pydicom and numpy (scripts/test installs them);
//! without them the tests that use it fail on CI and skip only locally.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vellum_testkit::{python_imports, tool_available};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom")
}

fn fixture_files() -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).expect("fixtures/dicom is readable") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if !matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("py" | "json" | "md")
            ) {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&fixtures_dir(), &mut out);
    out.sort();
    out
}

fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/dicom_digest.py")
}

/// The independent digests: path → Some(hex) when hashed, None when skipped.
fn python_digests(files: &[String]) -> (BTreeMap<String, Option<String>>, Value) {
    let out = Command::new("python3")
        .arg(reference_script())
        .args(files)
        .output()
        .expect("python3 runs (install it, and `pip install pydicom numpy`)");
    assert!(
        out.status.success(),
        "pydicom reference failed (is `pip install pydicom` done?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("reference prints JSON");
    let mut m = BTreeMap::new();
    for f in v["files"].as_array().expect("files") {
        let path = f["path"].as_str().expect("path").to_string();
        let digest = (f["status"] == "hashed")
            .then(|| f["sha256_hex"].as_str().unwrap_or_default().to_string());
        m.insert(path, digest);
    }
    (m, v)
}

fn vellum_hash(files: &[String]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .arg("hash")
        .arg("--json")
        .args(files)
        .output()
        .expect("run vellum hash");
    assert_eq!(
        out.status.code(),
        Some(0),
        "vellum hash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    vellum_testkit::dicom::hash_report(&out.stdout)
}

/// path → hex for hashed files, path → reason for skipped ones.
fn split(report: &Value) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let hashed = report["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["source"].as_str().expect("source").to_string(),
                i["sha256_hex"].as_str().expect("hex").to_string(),
            )
        })
        .collect();
    let skipped = report["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|i| {
            (
                i["source"].as_str().expect("source").to_string(),
                i["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    assert_eq!(report["errors"], Value::Array(vec![]), "no I/O errors");
    (hashed, skipped)
}

/// Every file is either hashed, with the reference's digest, or skipped
/// with a reason; returns how many were hashed.
fn assert_agree(files: &[String]) -> usize {
    let report = vellum_hash(files);
    let (hashed, skipped) = split(&report);
    let (reference, _) = python_digests(files);
    let mut disagreements = Vec::new();
    for f in files {
        match (hashed.get(f), skipped.get(f)) {
            (Some(ours), None) => match reference.get(f) {
                Some(Some(theirs)) if theirs == ours => {}
                other => disagreements.push(format!("{f}: vellum {ours}, pydicom {other:?}")),
            },
            (None, Some(reason)) => assert!(!reason.trim().is_empty(), "{f}: empty skip reason"),
            other => panic!("{f} must be hashed or skipped exactly once, got {other:?}"),
        }
    }
    assert!(
        disagreements.is_empty(),
        "digests differ from the independent computation:\n{}",
        disagreements.join("\n")
    );
    hashed.len()
}

#[test]
fn every_fixture_digest_matches_pydicom() {
    if !tool_available(
        "python3 with pydicom and numpy",
        python_imports("pydicom, numpy"),
    ) {
        return;
    }
    let files = fixture_files();
    assert!(files.len() >= 20, "fixtures present: {files:?}");
    let report = vellum_hash(&files);
    let (hashed, skipped) = split(&report);
    let (reference, python) = python_digests(&files);
    // On the fixtures both sides hash exactly the same files.
    let ours: BTreeSet<_> = hashed.keys().cloned().collect();
    let theirs: BTreeSet<_> = reference
        .iter()
        .filter(|(_, d)| d.is_some())
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(ours, theirs, "the same fixtures are hashed");
    assert_agree(&files);
    // Study digests agree too (instances de-duplicated the same way).
    let studies = |v: &Value| -> BTreeMap<String, (u64, String)> {
        v["studies"]
            .as_array()
            .expect("studies")
            .iter()
            .map(|s| {
                (
                    s["study_instance_uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    (
                        s["instances"].as_u64().unwrap_or_default(),
                        s["sha256_hex"].as_str().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect()
    };
    assert_eq!(studies(&report), studies(&python));
    assert_eq!(studies(&report).len(), 4);
    // The skips say why.
    let reason = |name: &str| -> &String {
        let key = fixtures_dir().join(name).display().to_string();
        skipped
            .get(&key)
            .unwrap_or_else(|| panic!("{name} skipped"))
    };
    assert!(reason("no-pixels/report-sr.dcm").contains("structured report"));
    assert!(reason("no-pixels/key-objects-kos.dcm").contains("key object selection"));
    assert!(reason("no-pixels/not-dicom.txt").contains("not a DICOM"));
}

#[test]
fn native_digest_does_not_depend_on_the_transfer_syntax() {
    let names = ["explicit-le", "implicit-le", "explicit-be", "deflated"];
    let files: Vec<String> = names
        .iter()
        .map(|n| {
            fixtures_dir()
                .join(format!("ct/{n}.dcm"))
                .display()
                .to_string()
        })
        .collect();
    let (hashed, _) = split(&vellum_hash(&files));
    let digests: BTreeSet<_> = hashed.values().collect();
    assert_eq!(hashed.len(), 4);
    assert_eq!(digests.len(), 1, "{hashed:?}");
    // Known answer, recorded by the pydicom reference in digests.json.
    assert!(digests
        .contains(&"7f420044d60ed792cd376ef2e61c106b0c89a524285cdf2213a8fe840c4013e8".to_string()));
}

#[test]
fn every_pydicom_test_file_agrees_or_is_skipped_with_a_reason() {
    if !tool_available(
        "python3 with pydicom and numpy",
        python_imports("pydicom, numpy"),
    ) {
        return;
    }
    let out = Command::new("python3")
        .arg(reference_script())
        .arg("--pydicom-testdata")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        files.len() > 100,
        "pydicom ships its test files: {}",
        files.len()
    );
    let hashed = assert_agree(&files);
    // Not vacuous: most image files are read by dicom-rs and hashed.
    assert!(hashed >= 60, "only {hashed} of {} hashed", files.len());
}

#[test]
fn a_missing_path_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(["hash", "/nonexistent/vellum/study"])
        .output()
        .expect("run vellum hash");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/vellum/study"));
}

#[test]
fn text_output_names_study_digest_and_count() {
    let dir = fixtures_dir().join("mr");
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .arg("hash")
        .arg(&dir)
        .output()
        .expect("run vellum hash");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "study 1.2.826.0.1.3680043.8.498.7700.2  instances=4  \
             8a255436893c9d6a4c2829ea3974342eb3be3103cdb644b66ead40adedff2ed2"
        ),
        "{text}"
    );
}
