//! The CapabilityStatement says exactly what works: every interaction it
//! lists succeeds, every AuditEvent interaction it omits is refused.
//! Cases live in conformance/interactions.json.

use serde_json::Value;
use vellum_testkit::*;

#[tokio::test]
async fn capability_statement_lists_exactly_the_interactions_that_work() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let created: Value = app.post_event(&sample_event(1)).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();

    let cs: Value = app
        .client
        .get(format!("{}/fhir/metadata", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resource = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .expect("AuditEvent in the CapabilityStatement");
    let listed: Vec<&str> = resource["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();

    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string("conformance/interactions.json").unwrap())
            .unwrap();
    let mut probed = Vec::new();
    for case in cases["interactions"].as_array().unwrap() {
        let code = case["code"].as_str().unwrap();
        let url = format!(
            "{}{}",
            app.base,
            case["path"].as_str().unwrap().replace("{id}", &id)
        );
        let method =
            reqwest::Method::from_bytes(case["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut req = app.client.request(method, &url);
        match case["body"].as_str() {
            Some("event") => {
                req = req
                    .header("Content-Type", "application/fhir+json")
                    .body(sample_event(2).to_string())
            }
            Some("patch") => {
                req = req
                    .header("Content-Type", "application/json-patch+json")
                    .body(r#"[{"op":"remove","path":"/action"}]"#)
            }
            _ => {}
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if listed.contains(&code) {
            assert_eq!(
                status,
                case["supported_status"].as_u64().unwrap() as u16,
                "{code} is listed but {url} gave {status}"
            );
        } else {
            let refused: Vec<u16> = case["refused_status"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap() as u16)
                .collect();
            assert!(
                refused.contains(&status),
                "{code} is not listed but {url} gave {status}"
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                body["resourceType"], "OperationOutcome",
                "{code}: refusal must be an OperationOutcome"
            );
        }
        probed.push(code);
    }
    for code in &listed {
        assert!(
            probed.contains(code),
            "listed interaction {code} has no conformance case"
        );
    }
    // The store is unchanged by the refused interactions: the event reads back as created.
    let again: Value = app
        .client
        .get(format!("{}/fhir/AuditEvent/{id}", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, created);
}

#[tokio::test]
async fn capability_statement_is_json_with_the_formats_served() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let r = app
        .client
        .get(format!("{}/fhir/metadata", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    let cs: Value = r.json().await.unwrap();
    assert!(cs["format"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "application/fhir+json"));
    assert_eq!(cs["kind"], "instance");
}
