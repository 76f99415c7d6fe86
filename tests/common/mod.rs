//! Shared test harness: real databases (a fresh SQLite file or a fresh
//! PostgreSQL database per test), real servers on loopback port 0.
#![allow(dead_code)]

pub mod ai;
pub mod dicom;

use std::net::TcpListener;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vellum::config::{RawSettings, Settings};
use vellum::http::Application;

pub use vellum::ledger::testing::{Backend, TestDb};

pub fn settings_for(db_url: &str) -> Settings {
    Settings::validate(RawSettings {
        database_url: db_url.to_string(),
        http_addr: "127.0.0.1:0".into(),
        mllp_addr: String::new(),
        log: "warn".into(),
        ..RawSettings::default()
    })
    .expect("valid test settings")
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
        client: reqwest::Client::new(),
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vellum"));
    cmd.arg("serve")
        .env("VELLUM_DATABASE_URL", db_url)
        .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("VELLUM_MLLP_ADDR", "")
        .env("VELLUM_LOG", "warn")
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
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
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
