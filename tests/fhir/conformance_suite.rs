//! Runs the FHIR REST conformance suite (conformance/run.mjs, see
//! docs/conformance.md) against the real `vellum serve` binary on each
//! backend. The suite validates every resource it gets back with medplum's
//! independent R4 validator.

use std::process::Command;
use vellum_testkit::validator::ensure_validator;
use vellum_testkit::*;

async fn run_suite(backend: Backend) {
    ensure_validator();
    let db = TestDb::new(backend).await;
    let mut server = spawn_server_process(&db.url, &[]);
    server.wait_ready().await;
    let base = format!("{}/fhir", server.base);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("conformance/run.mjs")
            .arg(base)
            .env("VELLUM_TOKEN", vellum_testkit::DEV_TOKEN)
            .output()
            .expect("node is required for the conformance suite")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("not ok")).collect();
    assert!(
        out.status.success(),
        "conformance suite failed ({:?}):\n{}\n{}",
        out.status.code(),
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(passed > 200, "the suite ran only {passed} checks");
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{verdict}");
}

#[tokio::test]
async fn conformance_suite_sqlite() {
    run_suite(Backend::Sqlite).await;
}

#[tokio::test]
async fn conformance_suite_postgres() {
    run_suite(Backend::Postgres).await;
}
