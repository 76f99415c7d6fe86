//! `POST /dicom/digest` over real HTTP: single instances and STOW-RS style
//! multipart/related uploads answer the same digests as the pydicom
//! reference recorded in fixtures/dicom/digests.json.

use std::collections::BTreeMap;

use serde_json::Value;
use vellum::config::Settings;
use vellum_testkit::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/dicom/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture readable")
}

/// Known answers from the independent reference (path → hex).
fn reference() -> BTreeMap<String, String> {
    let v: Value = serde_json::from_slice(&fixture("digests.json")).expect("digests.json");
    v["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["status"] == "hashed")
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_string(),
                f["sha256_hex"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn app(max_upload: usize) -> (TestDb, TestApp) {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut raw = vellum_testkit::raw_settings_for(&db.url);
    raw.dicom.max_upload_bytes = max_upload;
    let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
    (db, app)
}

async fn post(app: &TestApp, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(format!("{}/dicom/digest", app.base))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

fn multipart(boundary: &str, parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (ct, bytes) in parts {
        b.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

#[tokio::test]
async fn one_instance_is_hashed_and_not_stored() {
    let (_db, app) = app(1 << 20).await;
    let r = post(
        &app,
        "application/dicom",
        fixture("compressed/jpeg-lossless.dcm"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["instances"][0]["sha256_hex"].as_str(),
        reference()
            .get("compressed/jpeg-lossless.dcm")
            .map(String::as_str)
    );
    assert_eq!(v["instances"][0]["encapsulated"], true);
    assert_eq!(v["studies"][0]["instances"], 1);
    // Nothing was appended to the ledger.
    let r = app
        .client
        .get(format!("{}/admin/verify", app.base))
        .send()
        .await
        .expect("verify");
    let verdict: Value = r.json().await.expect("json");
    assert_eq!(verdict["entries"], 0, "{verdict}");
}

#[tokio::test]
async fn stow_style_multipart_answers_each_part_and_the_study() {
    let (_db, app) = app(1 << 20).await;
    let names = [
        "mr/multiframe-8bit.dcm",
        "mr/odd-length-3x3.dcm",
        "mr/8bit-ow-be.dcm",
    ];
    let mut parts: Vec<(&str, Vec<u8>)> = names
        .iter()
        .map(|n| ("application/dicom", fixture(n)))
        .collect();
    parts.push(("text/plain", b"not an image".to_vec()));
    parts.push(("application/dicom", fixture("no-pixels/report-sr.dcm")));
    let r = post(
        &app,
        "multipart/related; type=\"application/dicom\"; boundary=vellum-test-7f3a",
        multipart("vellum-test-7f3a", &parts),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let reference = reference();
    let got: Vec<&str> = v["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["sha256_hex"].as_str().unwrap_or_default())
        .collect();
    let want: Vec<&str> = names.iter().map(|n| reference[*n].as_str()).collect();
    assert_eq!(got, want);
    let skipped = v["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 2, "{v}");
    assert_eq!(skipped[0]["source"], "part 4");
    assert!(skipped[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("text/plain"));
    assert!(skipped[1]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("no pixel data"));
    // Three of the study's four instances: a digest over those three.
    assert_eq!(v["studies"][0]["instances"], 3);
    assert_eq!(
        v["studies"][0]["study_instance_uid"],
        "1.2.826.0.1.3680043.8.498.7700.2"
    );
}

#[tokio::test]
async fn wrong_media_types_and_malformed_bodies_are_refused_precisely() {
    let (_db, app) = app(64 * 1024).await;
    let r = post(&app, "image/png", vec![1, 2, 3]).await;
    assert_eq!(r.status(), 415);
    let r = post(
        &app,
        "multipart/related; type=\"image/jpeg\"; boundary=x",
        vec![],
    )
    .await;
    assert_eq!(r.status(), 415);
    let r = post(
        &app,
        "multipart/related; type=\"application/dicom\"",
        vec![],
    )
    .await;
    assert_eq!(r.status(), 400);
    let oo: Value = r.json().await.expect("OperationOutcome");
    assert!(oo["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .contains("boundary"));
    // Unterminated multipart body.
    let mut body = multipart(
        "b",
        &[("application/dicom", fixture("mr/odd-length-3x3.dcm"))],
    );
    body.truncate(body.len() - 8);
    let r = post(&app, "multipart/related; boundary=b", body).await;
    assert_eq!(r.status(), 400);
    // Over the configured limit (a 64 KiB limit, a 71 KiB upload).
    let big = fixture("ct/explicit-le.dcm").repeat(8);
    let r = post(&app, "application/dicom", big).await;
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn a_chunked_body_of_empty_parts_is_counted_by_its_raw_bytes() {
    let (_db, app) = app(1000).await;
    // 20,000 empty parts, sent chunked (no Content-Length to refuse early):
    // the part bodies add up to 0 bytes, the request to ~700 kB.
    let parts: Vec<(&str, Vec<u8>)> = (0..20_000)
        .map(|_| ("application/dicom", Vec::new()))
        .collect();
    let body = multipart("b0undary", &parts);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let r = app
        .client
        .post(format!("{}/dicom/digest", app.base))
        .header(
            "Content-Type",
            "multipart/related; type=\"application/dicom\"; boundary=b0undary",
        )
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(r.status(), 413);
    let oo: serde_json::Value = r.json().await.expect("an OperationOutcome");
    assert_eq!(oo["resourceType"], "OperationOutcome");
}
