//! The independent FHIR validator (conformance/validator: medplum's R4
//! validator, pinned by its package-lock.json).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Serialises the install: tests of one binary run in parallel, and two
/// concurrent `npm ci` runs in one folder break each other's node_modules.
static INSTALL: Mutex<()> = Mutex::new(());

pub fn validator_dir() -> PathBuf {
    crate::repo_root().join("conformance/validator")
}

/// Installs the validator's pinned npm packages once (idempotent).
pub fn ensure_validator() {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = validator_dir();
    if dir.join("node_modules/@medplum/core").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&dir)
        .status()
        .expect("npm is required for the independent validator");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// Validates `resources` against base R4 and the vellum profile each names:
/// (valid, the validator's report).
pub fn validate_independently(resources: &[serde_json::Value]) -> (bool, String) {
    ensure_validator();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("resources.json");
    std::fs::write(&file, serde_json::to_vec(resources).expect("json")).expect("write");
    let out = Command::new("node")
        .arg("validate.mjs")
        .arg(&file)
        .current_dir(validator_dir())
        .output()
        .expect("node is required for the independent validator");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
