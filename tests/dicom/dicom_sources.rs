//! Study sources and events: a folder tree, and a real Orthanc with its
//! DICOMweb plugin (started here on free loopback ports with its own
//! configuration and storage; fixtures uploaded through its REST API).
//! The digests are compared with the independent pydicom reference in
//! fixtures/dicom/digests.json. Needs the Debian packages `orthanc` and
//! `orthanc-dicomweb` (scripts/test installs them); without them that test
//! fails on CI and skips only locally.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vellum::config::{DicomSettings, RawSettings, Settings};
use vellum::dicom::service::{DicomService, SourceKind};
use vellum_testkit::dicom::{fixtures, reference_study, study_entity};
use vellum_testkit::*;

const STUDY_CT: &str = "1.2.826.0.1.3680043.8.498.7700.1";
const STUDY_MR: &str = "1.2.826.0.1.3680043.8.498.7700.2";

fn study_event(uid: &str, supplied: Option<&str>) -> Value {
    let mut entity = study_entity(uid);
    let mut details = json!([{"type": "confidence", "valueString": "0.940"}]);
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

fn detail<'a>(stored: &'a Value, kind: &str) -> Option<&'a Value> {
    stored["entity"][0]["detail"]
        .as_array()?
        .iter()
        .find(|d| d["type"] == kind)
}

fn instances_extension(stored: &Value) -> Option<u64> {
    stored["entity"][0]["extension"]
        .as_array()?
        .iter()
        .find(|e| {
            e["url"] == "http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances"
        })?["valueInteger"]
        .as_u64()
}

async fn app_with(dicom: impl FnOnce(&mut RawSettings)) -> (TestDb, TestApp) {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut raw = vellum_testkit::raw_settings_for(&db.url);
    dicom(&mut raw);
    let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
    (db, app)
}

async fn create(app: &TestApp, event: &Value) -> Value {
    let r = app.post_event(event).await;
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn events_get_the_study_digest_from_a_folder_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = dir.path().join("index.json");
    let (_db, app) = app_with(|raw| {
        raw.dicom.folders.0 = vec![fixtures().display().to_string()];
        raw.dicom.index_path = index.display().to_string();
    })
    .await;
    let (want, count) = reference_study(STUDY_MR);

    let mut all = Vec::new();
    let stored = create(&app, &study_event(STUDY_MR, None)).await;
    assert_eq!(
        detail(&stored, "pixel-sha256").expect("digest")["valueBase64Binary"],
        want
    );
    assert_eq!(instances_extension(&stored), Some(count));
    assert_eq!(stored["entity"][0]["detail"][0]["valueString"], "0.940");
    assert!(index.is_file(), "the folder index is persisted");
    all.push(stored);

    // A sender's digest that differs is kept, vellum's recorded beside it.
    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let stored = create(&app, &study_event(STUDY_MR, Some(forged))).await;
    assert_eq!(
        detail(&stored, "pixel-sha256").expect("kept")["valueBase64Binary"],
        forged
    );
    assert_eq!(
        detail(&stored, "pixel-sha256-mismatch").expect("mismatch")["valueBase64Binary"],
        want
    );
    all.push(stored);

    // An unknown study is stored with the digest marked pending.
    let stored = create(&app, &study_event("1.2.3.999", None)).await;
    assert!(detail(&stored, "pixel-sha256").is_none());
    let pending = detail(&stored, "pixel-sha256-pending").expect("pending");
    assert!(pending["valueString"]
        .as_str()
        .unwrap_or_default()
        .contains("not found"));
}

#[tokio::test]
async fn without_sources_events_are_stored_as_sent() {
    let (_db, app) = app_with(|_| {}).await;
    let stored = create(&app, &study_event(STUDY_MR, None)).await;
    assert!(detail(&stored, "pixel-sha256").is_none());
    assert!(detail(&stored, "pixel-sha256-pending").is_none());
    assert!(instances_extension(&stored).is_none());
}

/// A throwaway Orthanc with the DICOMweb plugin on free loopback ports.
struct Orthanc {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_dicomweb_plugin() -> Option<PathBuf> {
    [
        "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
        "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn dicomweb_plugin() -> PathBuf {
    find_dicomweb_plugin().expect(
        "the orthanc-dicomweb package is installed (apt-get install orthanc orthanc-dicomweb)",
    )
}

async fn start_orthanc() -> Orthanc {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_port();
    let config = json!({
        "Name": "vellum-test",
        "StorageDirectory": dir.path().join("storage"),
        "IndexDirectory": dir.path().join("index"),
        "HttpPort": http,
        "DicomPort": free_port(),
        "DicomServerEnabled": false,
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "HttpServerEnabled": true,
        "Plugins": [dicomweb_plugin()],
        "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
    });
    let path = dir.path().join("orthanc.json");
    std::fs::write(&path, config.to_string()).expect("write config");
    let child = Command::new("Orthanc")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Orthanc runs (apt-get install orthanc orthanc-dicomweb)");
    let mut o = Orthanc {
        child,
        base: format!("http://127.0.0.1:{http}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = o.child.try_wait() {
            panic!("Orthanc exited at start-up: {status}");
        }
        if let Ok(r) = client.get(format!("{}/system", o.base)).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Orthanc did not start within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Upload the CT study through Orthanc's REST API.
    for name in [
        "explicit-le",
        "implicit-le",
        "explicit-be",
        "deflated",
        "second-image",
    ] {
        let bytes = std::fs::read(fixtures().join(format!("ct/{name}.dcm"))).expect("fixture");
        let r = client
            .post(format!("{}/instances", o.base))
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 200, "Orthanc accepted ct/{name}.dcm");
    }
    o.base = format!("{}/dicom-web", o.base);
    o
}

#[tokio::test]
async fn a_study_is_hashed_from_a_real_dicomweb_server_once() {
    let installed = on_path("Orthanc") && find_dicomweb_plugin().is_some();
    if !tool_available("Orthanc with its DICOMweb plugin", installed) {
        return;
    }
    let orthanc = start_orthanc().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = vellum::config::RawDicomSettings {
        dicomweb_url: Some(orthanc.base.clone()),
        index_path: dir.path().join("index.json").display().to_string(),
        budget_ms: 20_000,
        ..Default::default()
    };
    let settings = DicomSettings::validate(raw.clone()).expect("settings");
    let service = DicomService::new(&settings).expect("service");
    let (want, count) = reference_study(STUDY_CT);

    let (found, kind) = service
        .study(STUDY_CT)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(kind, SourceKind::DicomWeb);
    assert_eq!(found.digest.base64(), want);
    assert_eq!(found.digest.instances as u64, count);
    assert_eq!(found.cached, 0);

    // Again: every instance digest comes from the cache, nothing is fetched.
    let (again, _) = service
        .study(STUDY_CT)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(again.digest, found.digest);
    assert_eq!(again.cached as u64, count);
    // The cache is persisted: a new service (a restart) uses it too.
    let restarted = DicomService::new(&settings).expect("service");
    let (third, _) = restarted
        .study(STUDY_CT)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(third.cached as u64, count);

    assert!(service
        .study("1.2.3.4.5.6")
        .await
        .expect("lookup")
        .is_none());

    // Through an event on a server configured with the DICOMweb source.
    let (_db, app) = app_with(|r| r.dicom = raw).await;
    let stored = create(&app, &study_event(STUDY_CT, None)).await;
    assert_eq!(
        detail(&stored, "pixel-sha256").expect("digest")["valueBase64Binary"],
        want
    );
    assert_eq!(instances_extension(&stored), Some(count));
}

fn run_verify_event(db_url: &str, folder: &Path, index: &Path, id: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(["hash", "--verify", id, "--database-url", db_url])
        .env("VELLUM_DICOM_FOLDERS", folder)
        .env("VELLUM_DICOM_INDEX_PATH", index)
        .output()
        .expect("run vellum hash --verify");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn verify_rehashes_a_recorded_study_and_notices_changed_pixels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("mr");
    std::fs::create_dir(&folder).expect("mkdir");
    for e in std::fs::read_dir(fixtures().join("mr")).expect("mr fixtures") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, folder.join(p.file_name().expect("name"))).expect("copy");
    }
    let index = dir.path().join("index.json");
    let (db, app) = app_with(|raw| {
        raw.dicom.folders.0 = vec![folder.display().to_string()];
        raw.dicom.index_path = index.display().to_string();
    })
    .await;
    let stored = create(&app, &study_event(STUDY_MR, None)).await;
    let id = stored["id"].as_str().expect("id").to_string();

    let (code, out) = run_verify_event(&db.url, &folder, &index, &id);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("match: study 1.2.826.0.1.3680043.8.498.7700.2"),
        "{out}"
    );

    // Change one pixel (the pixel value is the file's last element).
    let victim = folder.join("multiframe-8bit.dcm");
    let mut bytes = std::fs::read(&victim).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::thread::sleep(Duration::from_millis(20)); // a distinct mtime
    std::fs::write(&victim, bytes).expect("write");
    let (code, out) = run_verify_event(&db.url, &folder, &index, &id);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("MISMATCH"), "{out}");
}
