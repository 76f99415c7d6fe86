//! Time to action of an HL7 v2 correction over real MLLP: the interval runs
//! between the two messages' own clinical times (MSH-7), whatever time
//! vellum received them; each event keeps its receipt time in `recorded`.

use vellum_testkit::mllp::{fixture, read_event, spawn_mllp_app, Client};
use vellum_testkit::*;

use super::recount;

backend_tests! {
    async fn an_hl7_correction_is_timed_from_the_messages_clinical_times(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_mllp_app(&db.url, |_| {}).await;
        let mut c = Client::connect(app.mllp_port).await;
        let inference = c.call(&fixture("oru_r01_ai.hl7")).await;
        assert_eq!(inference.code(), "AA", "{}", inference.text);
        let correction = c.call(&fixture("oru_r01_ai_correction.hl7")).await;
        assert_eq!(correction.code(), "AA", "{}", correction.text);

        // MSH-7 20260314093112+0100 minus MSH-7 20260314092653+0100.
        let expected_ms = 4 * 60_000 + 19_000;
        let (_, ovr, _) = read_event(&app.client, &app.http, correction.event_id()).await;
        let reference = &ovr["entity"][0];
        let tta = reference["detail"].as_array().unwrap().iter()
            .find(|d| d["type"] == "time-to-action-ms").map(|d| d["valueString"].clone());
        assert_eq!(tta, Some(serde_json::json!(expected_ms.to_string())), "{backend:?}: {ovr}");
        // Receipt times are kept apart: both events were received now, long
        // after the clinical times.
        let (_, inf, _) = read_event(&app.client, &app.http, inference.event_id()).await;
        for e in [&inf, &ovr] {
            assert!(e["recorded"].as_str().unwrap() > "2026-03-15", "{e}");
        }

        // The report's time to action is the same, and so is the recount.
        let raw = recount::load(&db.url).await;
        let act = &raw.first_action[inference.event_id()];
        assert_eq!((act.action.as_str(), act.tta), ("reject", expected_ms), "{backend:?}");
        let r: serde_json::Value = app.client
            .get(format!("{}/reports/overrides?model=chest-xray-ai", app.http))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(r["rows"][0]["median_time_to_action_ms"], expected_ms, "{backend:?}");
    }
}
