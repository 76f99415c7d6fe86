//! Shared helpers: an in-process vellum with the syslog listeners on, the
//! fixtures, and waiting for stored events.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use vellum::config::{RawSettings, Settings};
use vellum::startup::Application;
use vellum_testkit::repo_root;

pub fn fixtures_dir() -> PathBuf {
    repo_root().join("fixtures/atna")
}

/// Every valid fixture: (file name, bytes).
pub fn valid_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/atna")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

pub fn invalid_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures_dir().join("invalid"))
        .expect("fixtures/atna/invalid")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The XML on one line (LF framing and `logger` send one line per message).
pub fn one_line(xml: &[u8]) -> String {
    let text = String::from_utf8_lossy(xml);
    text.lines().map(str::trim).collect::<Vec<_>>().join("")
}

/// An RFC 5424 message around `msg`.
pub fn rfc5424(msg: &str) -> String {
    format!(
        "<85>1 2026-03-01T10:15:30.123+01:00 pacs.example.org DCM4CHEE 4242 IHE+RFC-3881 - {msg}"
    )
}

/// RFC 6587 octet counting.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    format!("{} {msg}", msg.len()).into_bytes()
}

pub struct SyslogApp {
    pub http: String,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
    pub udp: Option<u16>,
    pub client: reqwest::Client,
}

pub async fn spawn_syslog_app(db_url: &str, tweak: impl FnOnce(&mut RawSettings)) -> SyslogApp {
    let mut raw = vellum_testkit::raw_settings_for(db_url);
    raw.syslog.addr = "127.0.0.1:0".into();
    raw.syslog.udp_addr = "127.0.0.1:0".into();
    tweak(&mut raw);
    let settings = Settings::validate(raw).expect("valid settings");
    let app = Application::build(&settings).await.expect("app builds");
    let port = app.port();
    let (tcp, tls, udp) = app.syslog_ports();
    tokio::spawn(app.run_until_stopped());
    SyslogApp {
        http: format!("http://127.0.0.1:{port}"),
        tcp,
        tls,
        udp,
        client: vellum_testkit::authed_client(),
    }
}

impl SyslogApp {
    /// Every stored AuditEvent that came in over syslog (it has the
    /// received-message entity).
    pub async fn syslog_events(&self) -> Vec<Value> {
        let r = self
            .client
            .get(format!("{}/fhir/AuditEvent?_count=500", self.http))
            .send()
            .await
            .expect("search");
        assert_eq!(r.status().as_u16(), 200);
        let bundle: Value = r.json().await.expect("bundle");
        bundle["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e["resource"].clone())
            .filter(|e| {
                e["entity"].as_array().is_some_and(|es| {
                    es.iter().any(|x| {
                        x["what"]["identifier"]["system"]
                            == "https://vellum-audit.org/fhir/CodeSystem/atna"
                    })
                })
            })
            .collect()
    }

    /// Waits until `n` syslog events are stored (the senders do not wait
    /// for a commit: syslog has no acknowledgement).
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let events = self.syslog_events().await;
            if events.len() >= n || Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The received-message entity's detail `type`, if present.
pub fn message_detail<'a>(event: &'a Value, kind: &str) -> Option<&'a Value> {
    event["entity"]
        .as_array()?
        .iter()
        .find_map(|e| e["detail"].as_array()?.iter().find(|d| d["type"] == kind))
}

pub fn is_parse_failure(event: &Value) -> bool {
    event["subtype"]
        .as_array()
        .is_some_and(|s| s.iter().any(|c| c["code"] == "parse-failure"))
}
