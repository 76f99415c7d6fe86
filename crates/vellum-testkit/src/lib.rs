//! vellum's shared test harness (dev-only): real databases (a fresh SQLite
//! file or a fresh PostgreSQL database per test), real servers on loopback
//! port 0, the MLLP client, DICOM fixtures, AI API payloads, and
//! [`backend_tests!`], which runs one test body on both backends as two tests.
//! Used by the integration tests under `tests/` and by the benches.

pub mod ai;
pub mod dicom;
pub mod mllp;
pub mod tls;
pub mod validator;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vellum::config::{RawSettings, Settings};
use vellum::startup::Application;

pub use vellum_ledger::backend_tests;
pub use vellum_ledger::testing::{pg_admin_url, with_database, Backend, TestDb, TestDbError};

/// The repository root (this crate lives in `crates/vellum-testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `vellum` binary that Cargo built for the running integration test or
/// bench: `CARGO_BIN_EXE_vellum` when Cargo sets it at run time, else the
/// binary beside the test executable's `deps/` folder (where Cargo puts it).
pub fn vellum_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_vellum") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("vellum"))
        .expect("the test executable is in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} not found: run through `cargo test` / `cargo bench`, which build it",
        bin.display()
    );
    bin
}

/// Whether a test that needs an external tool (python packages, Orthanc, …)
/// can run. A missing tool skips the test (returns false, says so on
/// stderr) only on a developer machine; when `CI` is set it fails the test,
/// since scripts/test installs every tool.
pub fn tool_available(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required (scripts/test installs it)");
    }
    eprintln!("skipped: {what} is not installed (scripts/test installs it; CI fails without it)");
    false
}

/// True when `python3 -c "import <modules>"` succeeds.
pub fn python_imports(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when `program` is found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The development token every test server accepts (`VELLUM_DEV_TOKEN`):
/// every role.
pub const DEV_TOKEN: &str = "vellum-test-dev-token-0123456789";

/// `Authorization` header value of [`DEV_TOKEN`].
pub fn dev_auth() -> String {
    format!("Bearer {DEV_TOKEN}")
}

/// An HTTP client that sends [`DEV_TOKEN`] on every request.
pub fn authed_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&dev_auth()).expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        // Below the server's keep-alive (5 s): a pooled connection the
        // server is closing is never reused (hyper's IncompleteMessage).
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// The raw settings of a test server: port 0, no MLLP, the dev token, and
/// reads not recorded (the feature suites count the entries they make;
/// tests/fhir/access_control.rs tests the recording of reads).
pub fn raw_settings_for(db_url: &str) -> RawSettings {
    let mut raw = RawSettings {
        database_url: db_url.into(),
        http_addr: "127.0.0.1:0".into(),
        mllp_addr: String::new(),
        log: "warn".into(),
        dev_token: Some(DEV_TOKEN.into()),
        ..RawSettings::default()
    };
    raw.auth.record_reads = false;
    // The detection rules append alerts of their own (tests/siem/rules.rs
    // turns them on).
    raw.detection.enabled = false;
    raw
}

pub fn settings_for(db_url: &str) -> Settings {
    Settings::validate(raw_settings_for(db_url)).expect("valid test settings")
}

/// A server running inside the test process.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
}

pub async fn spawn_app(db_url: &str) -> TestApp {
    spawn_app_with(settings_for(db_url)).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let app = Application::build(&settings)
        .await
        .expect("application builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: authed_client(),
    }
}

impl TestApp {
    pub async fn post_event(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/fhir/AuditEvent", self.base))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The real `vellum serve` binary as a child process.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
}

pub fn spawn_server_process(db_url: &str, extra_env: &[(&str, &str)]) -> ServerProcess {
    let port = free_port();
    let mut cmd = Command::new(vellum_bin());
    cmd.arg("serve")
        .env("VELLUM_DATABASE_URL", db_url)
        .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("VELLUM_MLLP_ADDR", "")
        .env("VELLUM_LOG", "warn")
        .env("VELLUM_DEV_TOKEN", DEV_TOKEN)
        .env("VELLUM_AUTH_RECORD_READS", "false")
        .env("VELLUM_DETECTION_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn vellum serve");
    ServerProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

impl ServerProcess {
    /// Waits until /readyz answers 200 (panics after 30 s).
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vellum exited before becoming ready: {status}");
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "vellum did not become ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `vellum verify --database-url URL --json`; returns (exit code, verdict).
pub fn run_verify(db_url: &str) -> (i32, Value) {
    let out = Command::new(vellum_bin())
        .args(["verify", "--json", "--database-url", db_url])
        .output()
        .expect("run vellum verify");
    let verdict = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), verdict)
}

/// A realistic radiology AuditEvent; `n` makes it unique.
pub fn sample_event(n: u64) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112", "display": "Query"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "search-type"}],
        "action": "E",
        "recorded": "2026-03-14T09:26:53.589+01:00",
        "outcome": "0",
        "agent": [
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
             "who": {"identifier": {"system": "urn:oid:1.2.3.4", "value": format!("rad-{}", n % 17)}},
             "requestor": true},
            {"who": {"display": "chest-xray-ai 2.4.1"}, "requestor": false,
             "network": {"address": "10.0.0.5", "type": "2"}}
        ],
        "source": {"site": "Radiology", "observer": {"display": "pacs-01"}},
        "entity": [
            {"what": {"identifier": {"system": "urn:dicom:uid", "value": format!("urn:oid:1.2.826.0.1.3680043.8.498.{n}")}},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "3"},
             "detail": [{"type": "confidence", "valueString": "0.940"}]},
            {"what": {"reference": format!("Patient/p{}", n % 101)},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}
        ]
    })
}
