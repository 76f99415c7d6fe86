//! Deflate bombs over `POST /dicom/digest` (issue 12, item 5): a deflated
//! data set of a few hundred KiB whose header inflates to hundreds of MiB
//! is refused by the walker before dicom-object reads (and holds) any of
//! it, with a reason naming the setting.

use serde_json::Value;
use vellum::config::{RawSettings, Settings};
use vellum_testkit::dicom::deflated_instance;
use vellum_testkit::*;

async fn app(dicom: impl FnOnce(&mut RawSettings)) -> (TestDb, TestApp) {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut raw = vellum_testkit::raw_settings_for(&db.url);
    dicom(&mut raw);
    let app = spawn_app_with(Settings::validate(raw).expect("settings")).await;
    // /readyz answers 503 until the start-up verification has held (a
    // moment on a busy machine): wait for it, so the check after the bomb
    // says whether the bomb harmed the server, not whether it had started.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while readyz(&app).await != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (db, app)
}

async fn readyz(app: &TestApp) -> u16 {
    app.client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

async fn upload(app: &TestApp, body: Vec<u8>) -> Value {
    let r = app
        .client
        .post(format!("{}/dicom/digest", app.base))
        .header("Content-Type", "application/dicom")
        .body(body)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(r.status(), 200);
    r.json().await.expect("the digest report")
}

fn only_skip_reason(report: &Value) -> String {
    assert_eq!(report["instances"].as_array().map(Vec::len), Some(0));
    let skipped = report["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 1, "{report}");
    skipped[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_deflate_bomb_is_refused_by_its_element_size_before_it_is_read() {
    let (_db, app) = app(|_| {}).await;
    // The bomb: three 200 MiB elements, well under 1 MiB deflated.
    let bomb = deflated_instance(3, 200 << 20);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let reason = only_skip_reason(&upload(&app, bomb).await);
    assert!(reason.contains("dicom.max_element_bytes"), "{reason}");
    // The server is unharmed.
    assert_eq!(readyz(&app).await, 200);
}

#[tokio::test]
async fn many_elements_each_under_the_element_bound_hit_the_header_bound() {
    let (_db, app) = app(|raw| {
        raw.dicom.max_header_bytes = 1 << 20;
        raw.dicom.max_element_bytes = 256 << 10;
    })
    .await;
    let reason = only_skip_reason(&upload(&app, deflated_instance(8, 200 << 10)).await);
    assert!(reason.contains("dicom.max_header_bytes"), "{reason}");
    // Under both bounds, the same shape is hashed.
    let report = upload(&app, deflated_instance(2, 200 << 10)).await;
    assert_eq!(
        report["instances"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["instances"][0]["pixel_bytes"], 4, "{report}");
}
