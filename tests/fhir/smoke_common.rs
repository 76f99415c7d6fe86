//! The shared harness end to end: create, read back, verify.

use vellum_testkit::*;

backend_tests! {
    async fn created_event_reads_back(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let r = app.post_event(&sample_event(1)).await;
        assert_eq!(r.status(), 201, "{backend:?}");
        let body = r.text().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let got = app
            .client
            .get(format!(
                "{}/fhir/AuditEvent/{}",
                app.base,
                v["id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.text().await.unwrap(), body);
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
        assert_eq!(verdict["entries"], 1);
    }
}
