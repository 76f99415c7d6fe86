mod common;
use common::*;

#[tokio::test]
async fn created_event_reads_back_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
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
