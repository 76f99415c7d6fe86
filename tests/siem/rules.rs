//! Detection rules (docs/siem.md, "Detection rules") against a real server
//! on both backends: synthetic traffic built to trip each rule — and, beside
//! it, traffic built to stay just under each threshold or inside working
//! hours — through FHIR, the AI API, a real DICOM folder source and refused
//! HTTP logins from distinct loopback addresses. Exactly the expected alerts
//! are appended, each a valid `security-alert` naming its triggering events;
//! evaluating the stream again appends nothing; `GET /reports/detections`
//! over the period finds exactly the alerts appended; after a kill -9 the
//! restarted evaluator rebuilds its windows and appends nothing twice.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};
use vellum::config::{DatabaseUrl, Settings};
use vellum::intake::{Intake, Stored, Submission};
use vellum::ledger::{Ledger, WriterSettings};
use vellum::store::{AnyStore, Store};
use vellum_testkit::dicom::{fixtures, reference_study, study_entity};
use vellum_testkit::validator::validate_independently;
use vellum_testkit::*;

use super::{metric, metrics, wait_until};

const ALERT_PROFILE: &str = "https://vellum-audit.org/fhir/StructureDefinition/security-alert";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const USERS: &str = "urn:oid:1.2.3.4";
/// A study in fixtures/dicom (its digest is in digests.json).
const STUDY: &str = "1.2.826.0.1.3680043.8.498.7700.1";

fn settings(db_url: &str, index: &std::path::Path) -> Settings {
    let mut raw = raw_settings_for(db_url);
    let d = &mut raw.detection;
    d.enabled = true;
    d.poll_ms = 50;
    d.phi_reads_per_hour = 3;
    // 08:00–18:00 on weekdays at +02:00.
    d.business_hours = "08:00-18:00".into();
    d.business_days = "mon,tue,wed,thu,fri".into();
    d.timezone = "+02:00".into();
    d.after_hours_max = 2;
    d.after_hours_window_minutes = 1440;
    d.injection_max = 2;
    d.injection_window_minutes = 10;
    d.auth_failures_max = 3;
    // Refused logins happen now: a 31-day window holds all of them.
    d.auth_failures_window_minutes = 44640;
    raw.dicom.folders.0 = vec![fixtures().display().to_string()];
    raw.dicom.index_path = index.display().to_string();
    Settings::validate(raw).expect("settings")
}

/// A successful read of a patient's record by `user` at `recorded`.
fn phi_read(user: &str, recorded: &str, patient: &str) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "action": "R",
        "recorded": recorded,
        "outcome": "0",
        "agent": [{"who": {"identifier": {"system": USERS, "value": user}}, "requestor": true}],
        "source": {"observer": {"display": "ris-01"}},
        "entity": [{
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
        }]
    })
}

/// An event naming the fixture study, with the sender's own digest.
fn study_event(supplied: &str) -> Value {
    let mut entity = study_entity(STUDY);
    entity["detail"] = json!([{"type": "pixel-sha256", "valueBase64Binary": supplied}]);
    let mut e = sample_event(1);
    e["entity"] = json!([entity]);
    e
}

pub(super) fn guard(event_id: &str, kind: &str, time: &str) -> Value {
    json!({
        "event_id": event_id,
        "time": time,
        "kind": kind,
        "source": {"system": "ai-gateway", "site": "Radiology"},
        "detector": "guard 1.4",
        "content_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    })
}

async fn created(app: &TestApp, event: &Value) -> String {
    let r = app.post_event(event).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["id"].as_str().expect("id").to_string()
}

async fn guard_posted(app: &TestApp, body: &Value) -> String {
    let (status, v, _) = app.ai_post("guard-events", body).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

/// `n` refused logins from the loopback address `from`.
async fn refused_logins(base: &str, from: &str, n: usize) {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().ok())
        .build()
        .expect("client");
    for _ in 0..n {
        let r = client
            .get(format!("{base}/fhir/AuditEvent"))
            .bearer_auth("vellum_not-a-token")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401);
    }
}

async fn open(db_url: &str) -> (AnyStore, Ledger) {
    let url = DatabaseUrl::parse(db_url).expect("database url");
    let store = AnyStore::connect(&url, None).await.expect("open store");
    let ledger = Ledger::start(store.clone(), WriterSettings::default());
    (store, ledger)
}

/// Every stored event, in seq order.
async fn events(store: &AnyStore) -> Vec<(i64, String, Value)> {
    store
        .entries_after(0, 1_000_000)
        .await
        .expect("entries")
        .into_iter()
        .map(|e| (e.seq, e.id, serde_json::from_str(&e.body).expect("json")))
        .collect()
}

pub(super) fn detail<'a>(alert: &'a Value, kind: &str) -> &'a str {
    alert["entity"][0]["detail"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["type"] == kind))
        .and_then(|x| x["valueString"].as_str())
        .unwrap_or_default()
}

/// (rule, subject, window start, count, referenced event ids) of an alert.
type Summary = (String, String, String, u64, Vec<String>);

fn stored_summary(alert: &Value) -> Summary {
    (
        alert["subtype"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        detail(alert, "subject").to_string(),
        detail(alert, "window-start").to_string(),
        detail(alert, "count").parse().unwrap_or(0),
        alert["entity"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|e| {
                e["what"]["reference"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect(),
    )
}

fn report_summary(row: &Value) -> Summary {
    (
        row["rule"].as_str().unwrap_or_default().to_string(),
        row["subject"].as_str().unwrap_or_default().to_string(),
        row["window_start"].as_str().unwrap_or_default().to_string(),
        row["count"].as_u64().unwrap_or(0),
        row["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect(),
    )
}

fn refs(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| format!("AuditEvent/{id}")).collect()
}

backend_tests! {
    async fn every_rule_fires_on_its_traffic_and_only_there(backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(&db.url, &dir.path().join("index.json"));
        let app = spawn_app_with(s.clone()).await;

        // phi-read-volume (more than 3 in one hour): 4 reads by dr-busy trip
        // it; 3 by dr-calm in the same hour do not. Wednesday, in hours.
        let mut busy = Vec::new();
        for (i, t) in ["10:01", "10:12", "10:30", "10:59"].iter().enumerate() {
            busy.push(created(&app, &phi_read("dr-busy", &format!("2026-03-11T{t}:00+02:00"), &format!("p{i}"))).await);
        }
        for t in ["10:05", "10:20", "10:40"] {
            created(&app, &phi_read("dr-calm", &format!("2026-03-11T{t}:00+02:00"), "p9")).await;
        }
        // One read per hour all day: never over the hourly threshold.
        for h in 9..15 {
            created(&app, &phi_read("dr-day", &format!("2026-03-11T{h:02}:15:00+02:00"), "p8")).await;
        }
        // after-hours-access (more than 2 outside hours in a UTC day): 3
        // late-evening reads by dr-night trip it; dr-late's 2, and 3 reads
        // by dr-early just inside the hours, do not.
        let mut night = Vec::new();
        for t in ["21:00", "22:30", "23:45"] {
            night.push(created(&app, &phi_read("dr-night", &format!("2026-03-11T{t}:00+02:00"), "p7")).await);
        }
        for t in ["19:00", "20:00"] {
            created(&app, &phi_read("dr-late", &format!("2026-03-11T{t}:00+02:00"), "p6")).await;
        }
        for t in ["08:00", "17:59", "12:00"] {
            created(&app, &phi_read("dr-early", &format!("2026-03-11T{t}:00+02:00"), "p5")).await;
        }
        // ai-output-phi: each flagged output is an alert.
        let flagged = guard_posted(&app, &guard("g-phi-1", "ai-output-phi-flagged", "2026-03-11T14:00:00Z")).await;
        // prompt-injection-spike (more than 2 in 10 minutes): 3 in
        // 12:00–12:10 trip it; 2 in 13:00–13:10 and one at 12:10 do not.
        let mut spike = Vec::new();
        for (i, t) in ["12:01", "12:04", "12:09"].iter().enumerate() {
            spike.push(guard_posted(&app, &guard(&format!("g-inj-{i}"), "prompt-injection-attempt", &format!("2026-03-11T{t}:00Z"))).await);
        }
        for (i, t) in ["12:10", "13:01", "13:02"].iter().enumerate() {
            guard_posted(&app, &guard(&format!("g-calm-{i}"), "prompt-injection-attempt", &format!("2026-03-11T{t}:00Z"))).await;
        }
        // pixel-digest-mismatch: the study's digest from the folder source
        // differs from the sender's; a matching digest is no alert.
        let (right, _) = reference_study(STUDY);
        let mut forged = study_event("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        forged["recorded"] = json!("2026-03-11T15:00:00Z");
        let mismatch = created(&app, &forged).await;
        let mut fine = study_event(&right);
        fine["recorded"] = json!("2026-03-11T15:05:00Z");
        created(&app, &fine).await;
        // auth-failures (more than 3 per client): 4 refused logins from
        // 127.0.0.3 trip it; 3 from 127.0.0.2 do not.
        refused_logins(&app.base, "127.0.0.2", 3).await;
        refused_logins(&app.base, "127.0.0.3", 4).await;

        let (store, ledger) = open(&db.url).await;
        // The refusals are recorded in the background: wait for all 7, then
        // for the rules to have evaluated everything, alerts included.
        wait_until("refused logins recorded", Duration::from_secs(60), || async {
            events(&store).await.iter().filter(|(_, _, e)| e["type"]["code"] == "110114").count() == 7
        }).await;
        wait_until("six alerts", Duration::from_secs(60), || async {
            events(&store).await.iter().filter(|(_, _, e)| e["meta"]["profile"][0] == ALERT_PROFILE).count() >= 6
        }).await;
        wait_until("the rules caught up", Duration::from_secs(60), || async {
            let head = ledger.head().await.expect("head").seq;
            ledger.export_position("detection").await.expect("position") == head
        }).await;

        let all = events(&store).await;
        let failures_from_3: Vec<String> = all
            .iter()
            .filter(|(_, _, e)| e["type"]["code"] == "110114" && e["agent"][0]["network"]["address"] == "127.0.0.3")
            .map(|(_, id, _)| id.clone())
            .collect();
        assert_eq!(failures_from_3.len(), 4, "{backend:?}");
        let alerts: Vec<Value> = all
            .iter()
            .filter(|(_, _, e)| e["meta"]["profile"][0] == ALERT_PROFILE)
            .map(|(_, _, e)| e.clone())
            .collect();
        let got: BTreeSet<Summary> = alerts.iter().map(stored_summary).collect();
        let user = |u: &str| format!("{USERS}|{u}");
        let want: BTreeSet<Summary> = [
            ("phi-read-volume".to_string(), user("dr-busy"), "2026-03-11T08:00:00.000000Z".to_string(), 4, refs(&busy)),
            ("after-hours-access".into(), user("dr-night"), "2026-03-11T00:00:00.000000Z".into(), 3, refs(&night)),
            ("ai-output-phi".into(), flagged.clone(), "2026-03-11T14:00:00.000000Z".into(), 1, refs(std::slice::from_ref(&flagged))),
            ("prompt-injection-spike".into(), "*".into(), "2026-03-11T12:00:00.000000Z".into(), 3, refs(&spike)),
            ("pixel-digest-mismatch".into(), mismatch.clone(), "2026-03-11T15:00:00.000000Z".into(), 1, refs(std::slice::from_ref(&mismatch))),
        ]
        .into_iter()
        .collect();
        // The auth-failures window starts whenever the test runs.
        let (auth, rest): (BTreeSet<Summary>, BTreeSet<Summary>) =
            got.into_iter().partition(|a| a.0 == "auth-failures");
        assert_eq!(rest, want, "{backend:?}");
        let auth: Vec<Summary> = auth.into_iter().collect();
        assert_eq!(auth.len(), 1, "{backend:?}: {auth:?}");
        assert_eq!((auth[0].1.as_str(), auth[0].3), ("127.0.0.3", 4), "{backend:?}");
        assert_eq!(auth[0].4, refs(&failures_from_3), "{backend:?}");
        assert_eq!(alerts.len(), 6, "{backend:?}: one alert per firing");
        for a in &alerts {
            assert_eq!(a["type"]["code"], "110113", "{backend:?}");
            assert_eq!(a["subtype"][0]["system"], "https://vellum-audit.org/fhir/CodeSystem/detection-rule");
            let threshold: u64 = detail(a, "threshold").parse().unwrap();
            let count: u64 = detail(a, "count").parse().unwrap();
            assert!(count > threshold, "{backend:?}: {a}");
        }
        // The AI gateway's guard events as stored: a Security Alert with
        // the guard's code as subtype, only the content's hash.
        let guards: Vec<Value> = all
            .iter()
            .filter(|(_, _, e)| e["subtype"][0]["code"] == "prompt-injection-attempt" || e["subtype"][0]["code"] == "ai-output-phi-flagged")
            .map(|(_, _, e)| e.clone())
            .collect();
        assert_eq!(guards.len(), 7, "{backend:?}");
        for g in &guards {
            assert_eq!((g["type"]["code"].as_str(), g["outcome"].as_str()), (Some("110113"), Some("4")));
            assert_eq!(g["subtype"][0]["system"], "https://vellum-audit.org/fhir/CodeSystem/radiology-ai-event");
            assert_eq!(g["entity"][0]["detail"][0]["type"], "content-sha256", "{g}");
        }
        if tool_available("node + npm (independent validator)", on_path("node")) {
            let (ok, report) = validate_independently(&alerts);
            assert!(ok, "{backend:?}: {report}");
            let (ok, report) = validate_independently(&guards);
            assert!(ok, "{backend:?}: {report}");
        }
        let mut unknown = guard("g-bad", "prompt-injection-attempt", "2026-03-11T12:00:00Z");
        unknown["kind"] = json!("jailbreak");
        let (status, v, _) = app.ai_post("guard-events", &unknown).await;
        assert_eq!((status, v["field"].as_str()), (400, Some("kind")), "{v}");

        // Evaluating the whole stream again (a restart that lost its
        // position) appends nothing: every alert is already stored under its
        // key.
        let before = all.len();
        let intake = Intake::new(ledger.clone(), None, vellum::ledger::canonical::Limits::INTERNAL);
        let report = vellum::detection::recompute(&ledger, std::sync::Arc::new(s.detection.clone()), None, None)
            .await
            .expect("recompute");
        let mut detector = vellum::detection::Detector::new(std::sync::Arc::new(s.detection.clone()));
        let mut again = 0;
        for e in store.entries_after(0, 1_000_000).await.expect("entries") {
            for a in detector.feed(&e) {
                let sub = Submission::mapped(vellum::detection::alert_event(&a)).with_key(a.key()).without_enrichment();
                match intake.submit(sub).await.expect("submit") {
                    Stored::Committed(c) => assert!(!c.created, "{backend:?}: {:?} appended twice", a.rule),
                    Stored::Existing(_) => panic!("no If-None-Exist here"),
                }
                again += 1;
            }
        }
        assert_eq!(again, 6, "{backend:?}");
        assert_eq!(report.alerts.len(), 6, "{backend:?}");
        assert_eq!(events(&store).await.len(), before, "{backend:?}: nothing appended");

        // The period's recomputation over HTTP equals the alerts appended.
        let (status, r) = app.get_json("/reports/detections").await;
        assert_eq!(status, 200, "{r}");
        let recomputed: BTreeSet<Summary> = r["alerts"].as_array().unwrap().iter().map(report_summary).collect();
        let stored: BTreeSet<Summary> = alerts.iter().map(stored_summary).collect();
        assert_eq!(recomputed, stored, "{backend:?}");
        let (status, day) = app.get_json("/reports/detections?from=2026-03-11&to=2026-03-12").await;
        assert_eq!(status, 200, "{day}");
        let day: BTreeSet<Summary> = day["alerts"].as_array().unwrap().iter().map(report_summary).collect();
        assert_eq!(day, want, "{backend:?}: the day's alerts, without today's auth-failures");
        let (status, _) = app.get_json("/reports/detections?from=tomorrow").await;
        assert_eq!(status, 400);
        // The same from the command line, straight from the store.
        let out = std::process::Command::new(vellum_bin())
            .args(["detect", "--database-url", &db.url, "--from", "2026-03-11", "--to", "2026-03-12T00:00:00Z"])
            .env("VELLUM_DETECTION_PHI_READS_PER_HOUR", "3")
            .env("VELLUM_DETECTION_BUSINESS_HOURS", "08:00-18:00")
            .env("VELLUM_DETECTION_TIMEZONE", "+02:00")
            .env("VELLUM_DETECTION_AFTER_HOURS_MAX", "2")
            .env("VELLUM_DETECTION_INJECTION_MAX", "2")
            .env("VELLUM_DETECTION_AUTH_FAILURES_MAX", "3")
            .env("VELLUM_DETECTION_AUTH_FAILURES_WINDOW_MINUTES", "44640")
            .output()
            .expect("run vellum detect");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cli: BTreeSet<Summary> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| report_summary(&serde_json::from_str(l).expect("a JSON line")))
            .collect();
        assert_eq!(cli, want, "{backend:?}: vellum detect");

        // /metrics counts firings per rule; /ui/ lists the recent alerts.
        let text = metrics(&app.base).await;
        for rule in ["phi-read-volume", "after-hours-access", "ai-output-phi", "prompt-injection-spike", "pixel-digest-mismatch", "auth-failures"] {
            assert!(metric(&text, &format!("vellum_detection_alerts_total{{rule=\"{rule}\"}}")) >= 1, "{rule}");
        }
        assert!(text.contains("vellum_detection_lag_events"));
        let html = app.client.get(format!("{}/ui/", app.base)).send().await.unwrap().text().await.unwrap();
        assert!(html.contains("id=\"detection-alerts\"") && html.contains("prompt-injection-spike"), "{backend:?}");
    }
}

/// The stored `security-alert` events, and whether the rules
/// have evaluated every entry (their position is the head).
pub(super) async fn alerts_and_caught_up(ledger: &Ledger, store: &AnyStore) -> (Vec<Value>, bool) {
    let alerts = events(store)
        .await
        .into_iter()
        .filter(|(_, _, e)| e["meta"]["profile"][0] == ALERT_PROFILE)
        .map(|(_, _, e)| e)
        .collect();
    let head = ledger.head().await.expect("head").seq;
    let pos = ledger.export_position("detection").await.expect("position");
    (alerts, pos == head)
}

pub(super) async fn post_guard(base: &str, body: &Value) {
    let r = authed_client()
        .post(format!("{base}/ai/v1/guard-events"))
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
}

backend_tests! {
    async fn a_restart_after_kill_9_rebuilds_the_windows_and_appends_nothing_twice(backend) {
        let db = TestDb::new(backend).await;
        // Later variables win over the harness's VELLUM_DETECTION_ENABLED=false.
        let env = [
            ("VELLUM_DETECTION_ENABLED", "true"),
            ("VELLUM_DETECTION_POLL_MS", "50"),
            ("VELLUM_DETECTION_INJECTION_MAX", "1"),
            ("VELLUM_DETECTION_INJECTION_WINDOW_MINUTES", "60"),
        ];
        let mut first = spawn_server_process(&db.url, &env);
        first.wait_ready().await;
        for (i, t) in ["12:01", "12:02"].iter().enumerate() {
            post_guard(&first.base, &guard(&format!("a-{i}"), "prompt-injection-attempt", &format!("2026-03-11T{t}:00Z"))).await;
        }
        // One attempt in the 14:00 window: not over the threshold yet.
        post_guard(&first.base, &guard("c-0", "prompt-injection-attempt", "2026-03-11T14:01:00Z")).await;
        let (store, ledger) = open(&db.url).await;
        wait_until("the first alert", Duration::from_secs(60), || async {
            let (a, done) = alerts_and_caught_up(&ledger, &store).await;
            a.len() == 1 && done
        }).await;
        first.child.kill().expect("kill -9");
        first.child.wait().expect("reaped");

        let mut second = spawn_server_process(&db.url, &env);
        second.wait_ready().await;
        // The restarted evaluator rebuilt its windows from seq 1: the
        // 12:00 window has fired (a third attempt is no new alert) and the
        // 14:00 window holds the attempt from before the kill, so a second
        // one there fires.
        post_guard(&second.base, &guard("a-2", "prompt-injection-attempt", "2026-03-11T12:03:00Z")).await;
        post_guard(&second.base, &guard("c-1", "prompt-injection-attempt", "2026-03-11T14:02:00Z")).await;
        wait_until("the second window's alert", Duration::from_secs(60), || async {
            let (a, done) = alerts_and_caught_up(&ledger, &store).await;
            a.len() >= 2 && done
        }).await;
        let (alerts, _) = alerts_and_caught_up(&ledger, &store).await;
        let windows: Vec<&str> = alerts.iter().map(|a| detail(a, "window-start")).collect();
        assert_eq!(
            windows,
            vec!["2026-03-11T12:00:00.000000Z", "2026-03-11T14:00:00.000000Z"],
            "{backend:?}: one alert per window across the restart"
        );
        assert_eq!(detail(&alerts[0], "count"), "2", "{backend:?}");
        assert_eq!(detail(&alerts[1], "count"), "2", "{backend:?}");
        assert_eq!(alerts[1]["entity"].as_array().map(Vec::len), Some(3), "{backend:?}: the rule and both attempts");
    }
}

/// A time zone name vellum does not know stops `serve` before it listens,
/// with an error naming the setting and the name.
#[tokio::test]
async fn an_unknown_time_zone_stops_the_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut child = std::process::Command::new(vellum_bin())
        .arg("serve")
        .env("VELLUM_DATABASE_URL", &db.url)
        .env("VELLUM_HTTP_ADDR", "127.0.0.1:0")
        .env("VELLUM_MLLP_ADDR", "")
        .env("VELLUM_DETECTION_TIMEZONE", "Europe/Atlantis")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run vellum serve");
    let mut status = None;
    for _ in 0..300 {
        status = child.try_wait().expect("wait");
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("vellum serve started with an unknown time zone");
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(
        err.contains("detection.timezone") && err.contains("Europe/Atlantis"),
        "{err}"
    );
}
