//! Pending pixel digests become follow-up `pixel-digest` events (DICOM pixel digests),
//! and every way in (single create, batch/transaction Bundle entries, HL7 v2
//! over MLLP) enriches study entities. Real folder sources with the
//! fixtures/dicom files, real SQLite and PostgreSQL, real `vellum serve`
//! processes for the restart case. Digests are checked against the pydicom
//! reference (fixtures/dicom/digests.json, conformance/dicom_digest.py) and
//! `vellum hash`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vellum::config::{RawSettings, Settings};
use vellum_testkit::dicom::{fixtures, reference_study};
use vellum_testkit::*;

const STUDY_MR: &str = "1.2.826.0.1.3680043.8.498.7700.2";
const PIXEL_DIGEST: &str = "https://vellum-audit.org/fhir/StructureDefinition/pixel-digest";
const COUNT_URL: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances";

/// `vellum hash --json DIR`: the study digest (base64) vellum's CLI computes.
fn cli_study_digest(dir: &Path, uid: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(["hash", "--json"])
        .arg(dir)
        .output()
        .expect("run vellum hash");
    let v = vellum_testkit::dicom::hash_report(&out.stdout);
    let s = v["studies"]
        .as_array()
        .expect("studies")
        .iter()
        .find(|s| s["study_instance_uid"] == uid)
        .unwrap_or_else(|| panic!("study in vellum hash output: {v}"));
    s["sha256_base64"].as_str().unwrap_or_default().to_string()
}

/// medplum's validator (conformance/validator, as tests/fhir/independent_validation.rs):
/// base R4 and the vellum profile each resource names.
fn assert_valid_independently(resources: &[Value]) {
    let (valid, report) = vellum_testkit::validator::validate_independently(resources);
    assert!(valid, "follow-ups fail independent validation:\n{report}");
}

fn study_event(uid: &str, supplied: Option<&str>) -> Value {
    let mut entity = vellum_testkit::dicom::study_entity(uid);
    let mut details = json!([]);
    if let Some(d) = supplied {
        details
            .as_array_mut()
            .expect("details")
            .push(json!({"type": "pixel-sha256", "valueBase64Binary": d}));
    }
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        entity["detail"] = details;
    }
    let mut e = sample_event(1);
    e["entity"] = json!([entity]);
    e
}

fn study_entity(event: &Value) -> &Value {
    event["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .find(|e| e["what"]["identifier"]["system"] == "urn:dicom:uid")
        .expect("study entity")
}

fn detail<'a>(entity: &'a Value, kind: &str) -> Option<&'a Value> {
    entity["detail"]
        .as_array()?
        .iter()
        .find(|d| d["type"] == kind)
}

fn instances(entity: &Value) -> Option<u64> {
    entity["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"] == COUNT_URL)?["valueInteger"]
        .as_u64()
}

fn copy_study(to: &Path) {
    for f in std::fs::read_dir(fixtures().join("mr")).expect("mr fixtures") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
    }
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            base: base.to_string(),
            client: vellum_testkit::authed_client(),
        }
    }

    async fn create(&self, event: &Value) -> Value {
        let r = self
            .client
            .post(format!("{}/fhir/AuditEvent", self.base))
            .header("Content-Type", "application/fhir+json")
            .body(event.to_string())
            .send()
            .await
            .expect("POST");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json")
    }

    /// The follow-up events referencing `id`.
    async fn followups(&self, id: &str) -> Vec<Value> {
        let b = self
            .get(&format!(
                "/fhir/AuditEvent?entity=AuditEvent/{id}&_count=100"
            ))
            .await;
        b["entry"]
            .as_array()
            .map(|es| es.iter().map(|e| e["resource"].clone()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|r: &Value| r["meta"]["profile"][0] == PIXEL_DIGEST)
            .collect()
    }

    /// Waits (up to 30 s) until `id` has a follow-up; returns all of them.
    async fn wait_followups(&self, id: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let f = self.followups(id).await;
            if !f.is_empty() {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "no follow-up for {id} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
    }
}

fn pending_settings(db: &TestDb, archive: &Path, index: &Path) -> RawSettings {
    let mut raw = vellum_testkit::raw_settings_for(&db.url);
    raw.dicom.folders.0 = vec![archive.display().to_string()];
    raw.dicom.index_path = index.display().to_string();
    raw.dicom.budget_ms = 2_000;
    raw.dicom.pending_poll_ms = 200;
    raw.dicom.pending_retry_max_ms = 400;
    // Files arrive during the test: rescan the archive at every poll.
    raw.dicom.rescan_min_interval_ms = 100;
    raw
}

async fn a_pending_study_gets_exactly_one_follow_up_when_its_files_arrive(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    let raw = pending_settings(&db, &archive, &dir.path().join("index.json"));
    let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
    let http = Http::new(&app.base);
    let (want, count) = reference_study(STUDY_MR);
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    let plain = http.create(&study_event(STUDY_MR, None)).await;
    let claimed = http.create(&study_event(STUDY_MR, Some(wrong))).await;
    for e in [&plain, &claimed] {
        assert!(
            detail(study_entity(e), "pixel-sha256-pending").is_some(),
            "{backend:?}: stored pending: {e}"
        );
    }
    assert_eq!(http.metric("vellum_dicom_pending_digests").await, 2);
    let mismatches_before = http.metric("vellum_dicom_digest_mismatches_total").await;

    // Still unavailable over several polls: no follow-up, still pending.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let plain_id = plain["id"].as_str().expect("id");
    let claimed_id = claimed["id"].as_str().expect("id");
    assert!(http.followups(plain_id).await.is_empty(), "{backend:?}");
    assert_eq!(http.metric("vellum_dicom_pending_digests").await, 2);

    copy_study(&archive);
    assert_eq!(
        cli_study_digest(&archive, STUDY_MR),
        want,
        "vellum hash = pydicom reference"
    );
    let f = http.wait_followups(plain_id).await;
    let g = http.wait_followups(claimed_id).await;
    // Several more polls: still exactly one follow-up per event.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(http.followups(plain_id).await.len(), 1, "{backend:?}");
    assert_eq!(http.followups(claimed_id).await.len(), 1, "{backend:?}");

    let study = study_entity(&f[0]);
    assert_eq!(
        detail(study, "pixel-sha256").expect("digest")["valueBase64Binary"],
        want
    );
    assert_eq!(instances(study), Some(count));
    assert_eq!(
        detail(study, "digest-check").expect("check")["valueString"],
        "vellum-only"
    );
    assert_eq!(
        study["what"]["identifier"]["value"],
        format!("urn:oid:{STUDY_MR}")
    );
    assert_eq!(f[0]["outcome"], "0");

    // The sender's differing digest: recorded as a mismatch, never replaced.
    let study = study_entity(&g[0]);
    assert_eq!(
        detail(study, "pixel-sha256").expect("digest")["valueBase64Binary"],
        want
    );
    assert_eq!(
        detail(study, "sender-pixel-sha256").expect("sender's")["valueBase64Binary"],
        wrong
    );
    assert_eq!(
        detail(study, "digest-check").expect("check")["valueString"],
        "mismatch"
    );
    assert_eq!(g[0]["outcome"], "4");
    let first = http.get(&format!("/fhir/AuditEvent/{claimed_id}")).await;
    assert_eq!(first, claimed, "the first event is unchanged");
    assert_valid_independently(&[f[0].clone(), g[0].clone()]);

    assert_eq!(http.metric("vellum_dicom_pending_digests").await, 0);
    assert_eq!(http.metric("vellum_dicom_followups_total").await, 2);
    assert!(http.metric("vellum_dicom_digest_mismatches_total").await > mismatches_before);
    assert_eq!(http.metric("vellum_ledger_entries_total").await, 4);
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{backend:?}: {verdict}");
}

#[tokio::test]
async fn a_pending_study_gets_exactly_one_follow_up_when_its_files_arrive_sqlite() {
    a_pending_study_gets_exactly_one_follow_up_when_its_files_arrive(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_pending_study_gets_exactly_one_follow_up_when_its_files_arrive_postgres() {
    a_pending_study_gets_exactly_one_follow_up_when_its_files_arrive(Backend::Postgres).await;
}

/// The pending work is in the database: a server killed while a study is
/// pending completes it after the restart, exactly once.
async fn a_pending_study_is_completed_after_a_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    let archive_s = archive.display().to_string();
    let index_s = dir.path().join("index.json").display().to_string();
    let env = [
        ("VELLUM_DICOM_FOLDERS", archive_s.as_str()),
        ("VELLUM_DICOM_INDEX_PATH", index_s.as_str()),
        ("VELLUM_DICOM_BUDGET_MS", "1000"),
        ("VELLUM_DICOM_PENDING_POLL_MS", "200"),
    ];
    let mut first = spawn_server_process(&db.url, &env);
    first.wait_ready().await;
    let http = Http::new(&first.base);
    let event = http.create(&study_event(STUDY_MR, None)).await;
    let id = event["id"].as_str().expect("id").to_string();
    assert!(detail(study_entity(&event), "pixel-sha256-pending").is_some());
    // Killed (SIGKILL), not stopped: nothing but the database survives.
    first.child.kill().expect("kill");
    first.child.wait().expect("wait");

    copy_study(&archive);
    let mut second = spawn_server_process(&db.url, &env);
    second.wait_ready().await;
    let http = Http::new(&second.base);
    let f = http.wait_followups(&id).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(http.followups(&id).await.len(), 1, "{backend:?}");
    let (want, count) = reference_study(STUDY_MR);
    let study = study_entity(&f[0]);
    assert_eq!(
        detail(study, "pixel-sha256").expect("digest")["valueBase64Binary"],
        want
    );
    assert_eq!(instances(study), Some(count));
    assert_eq!(
        f[0]["entity"][0]["what"]["reference"],
        format!("AuditEvent/{id}")
    );
    drop(second);
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{backend:?}: {verdict}");
    assert_eq!(verdict["entries"], 2);
}

#[tokio::test]
async fn a_pending_study_is_completed_after_a_restart_sqlite() {
    a_pending_study_is_completed_after_a_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_pending_study_is_completed_after_a_restart_postgres() {
    a_pending_study_is_completed_after_a_restart(Backend::Postgres).await;
}

#[tokio::test]
async fn a_study_that_stays_unavailable_gets_a_gave_up_follow_up_after_the_max_age() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    let mut raw = pending_settings(&db, &archive, &dir.path().join("index.json"));
    raw.dicom.budget_ms = 200;
    raw.dicom.pending_give_up_after_s = 1;
    let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
    let http = Http::new(&app.base);
    let event = http.create(&study_event(STUDY_MR, None)).await;
    let id = event["id"].as_str().expect("id");
    let f = http.wait_followups(id).await;
    assert_eq!(f.len(), 1);
    let study = study_entity(&f[0]);
    assert!(detail(study, "pixel-sha256").is_none());
    assert!(
        detail(study, "pixel-sha256-unavailable").is_some(),
        "{}",
        f[0]
    );
    assert_eq!(
        detail(study, "digest-check").expect("check")["valueString"],
        "unavailable"
    );
    assert_eq!(f[0]["outcome"], "4");
    assert_eq!(http.metric("vellum_dicom_pending_digests").await, 0);
}

fn with_study_folder(db: &TestDb, index: &Path) -> RawSettings {
    let mut raw = vellum_testkit::raw_settings_for(&db.url);
    raw.dicom.folders.0 = vec![fixtures().display().to_string()];
    raw.dicom.index_path = index.display().to_string();
    raw.dicom.budget_ms = 20_000;
    raw
}

backend_tests! {
    async fn batch_and_transaction_bundle_entries_get_the_study_digest(backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = with_study_folder(&db, &dir.path().join("index.json"));
        let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
        let http = Http::new(&app.base);
        let (want, count) = reference_study(STUDY_MR);
        for kind in ["batch", "transaction"] {
            let bundle = json!({
                "resourceType": "Bundle",
                "type": kind,
                "entry": [{
                    "resource": study_event(STUDY_MR, None),
                    "request": {"method": "POST", "url": "AuditEvent"}
                }]
            });
            let r = http
                .client
                .post(format!("{}/fhir", http.base))
                .header("Content-Type", "application/fhir+json")
                .body(bundle.to_string())
                .send()
                .await
                .expect("POST bundle");
            assert_eq!(r.status(), 200, "{backend:?} {kind}");
            let resp: Value = r.json().await.expect("json");
            let location = resp["entry"][0]["response"]["location"]
                .as_str()
                .unwrap_or_else(|| panic!("{backend:?} {kind}: {resp}"));
            let id = location
                .split("AuditEvent/")
                .nth(1)
                .and_then(|s| s.split('/').next())
                .expect("id in location");
            let stored = http.get(&format!("/fhir/AuditEvent/{id}")).await;
            let study = study_entity(&stored);
            assert_eq!(
                detail(study, "pixel-sha256").expect("digest")["valueBase64Binary"],
                want,
                "{backend:?} {kind}"
            );
            assert_eq!(instances(study), Some(count));
        }
    }
}

backend_tests! {
    async fn an_mllp_oru_ai_result_gets_the_study_digest(backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let index = dir.path().join("index.json");
        let app = vellum_testkit::mllp::spawn_mllp_app(&db.url, |raw| {
            raw.dicom.folders.0 = vec![fixtures().display().to_string()];
            raw.dicom.index_path = index.display().to_string();
            raw.dicom.budget_ms = 20_000;
        })
        .await;
        let msg = vellum_testkit::mllp::fixture("oru_r01_ai.hl7").replace(
            "ZDS|1.2.826.0.1.3680043.8.498.1^",
            &format!("ZDS|{STUDY_MR}^"),
        );
        assert!(msg.contains(STUDY_MR));
        let mut c = vellum_testkit::mllp::Client::connect(app.mllp_port).await;
        let ack = c.call(&msg).await;
        assert_eq!(ack.code(), "AA", "{backend:?}: {}", ack.text);
        let (status, stored, _) =
            vellum_testkit::mllp::read_event(&app.client, &app.http, ack.event_id()).await;
        assert_eq!(status, 200);
        let (want, count) = reference_study(STUDY_MR);
        let study = study_entity(&stored);
        assert_eq!(
            detail(study, "pixel-sha256").expect("digest")["valueBase64Binary"],
            want,
            "{backend:?}: {stored}"
        );
        assert_eq!(instances(study), Some(count));
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
    }
}

/// An entry stored pending before the `_pixel-pending` index existed (schema
/// of the previous release, entry and search rows as the old code wrote
/// them) is found as pending after the upgrade's migrations.
#[tokio::test]
async fn events_stored_pending_before_the_upgrade_are_found_after_migrating() {
    use std::borrow::Cow;
    use vellum::fhir::search_index::{extract, PIXEL_DIGEST_FOLLOWUP, PIXEL_PENDING};
    use vellum::ledger::{canonical, Draft, Ledger, STAMP_PLACEHOLDER};
    use vellum::store::{AnyStore, Store};

    for (backend, dir, last_old) in [
        (Backend::Sqlite, "migrations/sqlite", 4),
        (Backend::Postgres, "migrations/postgres", 3),
    ] {
        let db = TestDb::new(backend).await;
        let settings = settings_for(&db.url);
        let store = AnyStore::connect(&settings.database_url, None)
            .await
            .expect("connect");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut old = sqlx::migrate::Migrator::new(path.as_path())
            .await
            .expect("migrations");
        old.migrations = Cow::Owned(
            old.migrations
                .iter()
                // The Merkle tree's tables too: the append below is today's,
                // which keeps the tree (they are independent of the pending rows).
                .filter(|m| m.version <= last_old || m.description.contains("merkle"))
                .cloned()
                .collect(),
        );
        match &store {
            AnyStore::Sqlite(s) => old.run(s.pool()).await.expect("old schema"),
            AnyStore::Postgres(s) => old.run(s.pool()).await.expect("old schema"),
        }
        // The event as stored by the previous release: pending marker in
        // the body, no `_pixel-pending` row.
        let mut event = study_event(STUDY_MR, None);
        event["entity"][0]["detail"] = json!([
            {"type": "pixel-sha256-pending", "valueString": "study not found in the configured sources"}
        ]);
        let draft = vellum::fhir::create::prepare_audit_event(event.to_string().as_bytes())
            .expect("valid event");
        let body = draft.body().to_vec();
        let at = body
            .windows(STAMP_PLACEHOLDER.len())
            .position(|w| w == STAMP_PLACEHOLDER.as_bytes())
            .expect("placeholder");
        let rows: Vec<_> = extract(&canonical::parse(&body).expect("canonical"))
            .into_rows()
            .into_iter()
            .filter(|r| r.param != PIXEL_PENDING)
            .collect();
        let old_draft = Draft::with_index(draft.id().to_string(), body, at, rows).expect("draft");
        let ledger = Ledger::start(store.clone(), settings.writer);
        let c = ledger.append(old_draft).await.expect("append");
        assert!(ledger
            .pending_followups(&PIXEL_DIGEST_FOLLOWUP, 0, 10)
            .await
            .expect("query")
            .is_empty());

        store.migrate().await.expect("upgrade");
        let pending = ledger
            .pending_followups(&PIXEL_DIGEST_FOLLOWUP, 0, 10)
            .await
            .expect("query");
        assert_eq!(pending.len(), 1, "{backend:?}");
        assert_eq!(pending[0].event_id, c.receipt.id);
        assert_eq!(pending[0].value, STUDY_MR);
        assert_eq!(
            ledger
                .pending_count(&PIXEL_DIGEST_FOLLOWUP)
                .await
                .expect("count"),
            1
        );
        drop(ledger);
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{backend:?}: {verdict}");
    }
}

/// Two vellum instances on one PostgreSQL, both running the worker, race
/// for the same pending study: the follow-up is stored exactly once.
#[tokio::test]
async fn two_instances_store_one_follow_up_per_pending_study() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    let mut apps = Vec::new();
    for i in 0..2 {
        let mut raw = pending_settings(&db, &archive, &dir.path().join(format!("index-{i}.json")));
        raw.dicom.pending_poll_ms = 50;
        raw.dicom.pending_retry_max_ms = 50;
        apps.push(spawn_app_with(Settings::validate(raw).expect("settings")).await);
    }
    let a = Http::new(&apps[0].base);
    let b = Http::new(&apps[1].base);
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut e = study_event(STUDY_MR, None);
        e["source"]["site"] = json!(format!("site-{n}"));
        let stored = a.create(&e).await;
        ids.push(stored["id"].as_str().expect("id").to_string());
    }
    copy_study(&archive);
    for id in &ids {
        b.wait_followups(id).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &ids {
        assert_eq!(a.followups(id).await.len(), 1, "{id}");
    }
    assert_eq!(b.metric("vellum_dicom_followups_total").await, 3);
    assert_eq!(a.metric("vellum_ledger_entries_total").await, 6);
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{verdict}");
}

/// `_pixel-pending` is internal: not a search parameter clients can use,
/// not in the CapabilityStatement.
#[tokio::test]
async fn the_internal_pending_index_is_not_a_public_search_parameter() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    let raw = pending_settings(&db, &archive, &dir.path().join("index.json"));
    let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
    let http = Http::new(&app.base);
    http.create(&study_event(STUDY_MR, None)).await;
    let strict = http
        .client
        .get(format!(
            "{}/fhir/AuditEvent?_pixel-pending={STUDY_MR}",
            http.base
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        strict.status(),
        400,
        "unknown parameter refused (strict is the default)"
    );
    let lenient: Value = http
        .client
        .get(format!(
            "{}/fhir/AuditEvent?_pixel-pending=no-such-study",
            http.base
        ))
        .header("Prefer", "handling=lenient")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    // Ignored when lenient: the search is not narrowed by it.
    assert_eq!(lenient["total"], 1, "{lenient}");
    assert!(lenient
        .to_string()
        .contains("_pixel-pending is not supported"));
    let cap = http.get("/fhir/metadata").await.to_string();
    assert!(!cap.contains("_pixel-pending"));
    assert!(cap.contains(PIXEL_DIGEST));
}

backend_tests! {
    /// An AI API inference whose study is not available yet is stored pending
    /// too; the follow-up compares vellum's digest with the engine's.
    async fn an_ai_inference_with_an_unavailable_study_gets_a_follow_up(backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("archive");
        std::fs::create_dir(&archive).expect("archive dir");
        let mut raw = pending_settings(&db, &archive, &dir.path().join("index.json"));
        raw.dicom.budget_ms = 300;
        let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
        let (s, m, _) = app
            .ai_post(
                "models",
                &vellum_testkit::ai::model("chest-xray-ai", "2.4.1", "2026-01-10T08:00:00Z"),
            )
            .await;
        assert!(s == 201 || s == 200, "{s} {m}");
        let v: Value =
            serde_json::from_slice(&std::fs::read(fixtures().join("digests.json")).expect("read"))
                .expect("digests.json");
        let hex = v["studies"]
            .as_array()
            .expect("studies")
            .iter()
            .find(|s| s["study_instance_uid"] == STUDY_MR)
            .and_then(|s| s["sha256_hex"].as_str())
            .expect("hex")
            .to_string();
        let mut inf = vellum_testkit::ai::inference("inf-pending", "2.4.1");
        inf["study"]["uid"] = json!(STUDY_MR);
        inf["study"]["pixel_sha256"] = json!(hex);
        let (s, r, _) = app.ai_post("inferences", &inf).await;
        assert_eq!(s, 201, "{backend:?}: {r}");
        let id = r["id"].as_str().expect("id").to_string();
        let http = Http::new(&app.base);
        let first = http.get(&format!("/fhir/AuditEvent/{id}")).await;
        assert!(
            detail(study_entity(&first), "pixel-sha256-pending").is_some(),
            "{backend:?}: {first}"
        );
        copy_study(&archive);
        let f = http.wait_followups(&id).await;
        let (want, count) = reference_study(STUDY_MR);
        let study = study_entity(&f[0]);
        assert_eq!(
            detail(study, "pixel-sha256").expect("digest")["valueBase64Binary"],
            want
        );
        assert_eq!(instances(study), Some(count));
        assert_eq!(
            detail(study, "digest-check").expect("check")["valueString"],
            "agree"
        );
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{backend:?}: {verdict}");
    }
}

#[tokio::test]
async fn metrics_are_served_in_openmetrics_text_format_without_dicom_sources() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let http = Http::new(&app.base);
    http.create(&sample_event(7)).await;
    let r = http
        .client
        .get(format!("{}/metrics", http.base))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        ct.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ct}"
    );
    let text = r.text().await.expect("text");
    assert!(
        text.contains("# TYPE vellum_dicom_digest_mismatches counter"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(http.metric("vellum_ledger_entries_total").await, 1);
    assert_eq!(http.metric("vellum_dicom_pending_digests").await, 0);
    assert_eq!(http.metric("vellum_dicom_followups_total").await, 0);
}
