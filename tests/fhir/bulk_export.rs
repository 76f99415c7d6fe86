//! FHIR Bulk Data `$export` of AuditEvent over real HTTP, on both backends:
//! kick-off → status (202 with X-Progress, then the manifest) → download,
//! each NDJSON line byte-equal to the stored body `GET` returns, in seq
//! order; `_since` filters; DELETE cancels and removes the files; the job
//! limit; the kick-off recorded as an `audit-log-access` export event.

use std::collections::HashMap;

use serde_json::Value;
use vellum_testkit::*;

async fn app(db: &TestDb, jobs_dir: &std::path::Path, record_reads: bool) -> TestApp {
    let mut raw = raw_settings_for(&db.url);
    raw.bulk_export.dir = Some(jobs_dir.display().to_string());
    raw.bulk_export.max_jobs = 2;
    raw.auth.record_reads = record_reads;
    spawn_app_with(vellum::config::Settings::validate(raw).unwrap()).await
}

/// Kick-off with `Prefer: respond-async`: the status URL.
async fn kick_off(app: &TestApp, path_and_query: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path_and_query}", app.base))
        .header("Prefer", "respond-async")
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .unwrap()
}

/// Polls the status URL until the manifest comes (202 meanwhile).
async fn manifest(app: &TestApp, status_url: &str) -> Value {
    for _ in 0..600 {
        let r = app.client.get(status_url).send().await.unwrap();
        match r.status().as_u16() {
            200 => return r.json().await.unwrap(),
            202 => {
                assert!(r.headers().contains_key("X-Progress"));
                assert!(r.headers().contains_key("Retry-After"));
            }
            s => panic!("status {s}: {}", r.text().await.unwrap()),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the export did not finish");
}

async fn download(app: &TestApp, url: &str) -> (String, Vec<u8>) {
    let r = app.client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    (ct, r.bytes().await.unwrap().to_vec())
}

backend_tests! {
    async fn export_kick_off_status_manifest_download_and_since(backend) {
        let db = TestDb::new(backend).await;
        let jobs = tempfile::tempdir().unwrap();
        let app = app(&db, jobs.path(), false).await;
        // (seq, stored bytes, lastUpdated) of every event, as GET returns them.
        let mut stored: Vec<(i64, Vec<u8>, String)> = Vec::new();
        for n in 0..7 {
            let r = app.post_event(&sample_event(n)).await;
            assert_eq!(r.status(), 201);
            let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
            let g = app.client.get(format!("{}/fhir/AuditEvent/{id}", app.base)).send().await.unwrap();
            let seq: i64 = g.headers()["X-Vellum-Seq"].to_str().unwrap().parse().unwrap();
            let bytes = g.bytes().await.unwrap().to_vec();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let updated = body["meta"]["lastUpdated"].as_str().unwrap().to_string();
            stored.push((seq, bytes, updated));
        }
        stored.sort_by_key(|s| s.0);

        // Without Prefer: respond-async, or with what vellum cannot do: 400.
        let r = app.client.get(format!("{}/fhir/$export", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 400);
        for bad in ["_type=Patient", "_outputFormat=text/csv", "_since=yesterday", "_typeFilter=x"] {
            let r = kick_off(&app, &format!("/fhir/$export?{bad}")).await;
            assert_eq!(r.status(), 400, "{bad}");
        }

        let r = kick_off(&app, "/fhir/AuditEvent/$export?_type=AuditEvent&_outputFormat=application%2Ffhir%2Bndjson").await;
        assert_eq!(r.status(), 202);
        let status_url = r.headers()["Content-Location"].to_str().unwrap().to_string();
        assert!(status_url.starts_with(&format!("{}/fhir/$export-status/", app.base)), "{status_url}");
        let m = manifest(&app, &status_url).await;
        assert_eq!(m["requiresAccessToken"], true);
        assert_eq!(m["error"], serde_json::json!([]));
        assert_eq!(m["transactionTime"], stored[6].2.as_str());
        assert!(m["request"].as_str().unwrap().ends_with("/fhir/AuditEvent/$export?_type=AuditEvent&_outputFormat=application%2Ffhir%2Bndjson"), "{m}");
        let out = m["output"].as_array().unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["type"], "AuditEvent");
        assert_eq!(out[0]["count"], 7);
        let (ct, ndjson) = download(&app, out[0]["url"].as_str().unwrap()).await;
        assert_eq!(ct, "application/fhir+ndjson");
        let lines: Vec<&[u8]> = ndjson.strip_suffix(b"\n").unwrap().split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 7);
        for (line, (seq, bytes, _)) in lines.iter().zip(&stored) {
            assert_eq!(*line, &bytes[..], "seq {seq}: the exported line is the stored body");
        }

        // _since: only events updated after it (the 4th event's time → 3 left).
        let since = stored[3].2.clone();
        let r = kick_off(&app, &format!("/fhir/$export?_since={since}")).await;
        assert_eq!(r.status(), 202);
        let since_url = r.headers()["Content-Location"].to_str().unwrap().to_string();
        let m = manifest(&app, &since_url).await;
        assert_eq!(m["output"][0]["count"], 3);
        let (_, ndjson) = download(&app, m["output"][0]["url"].as_str().unwrap()).await;
        let expected: Vec<u8> = stored[4..].iter().flat_map(|s| [&s.1[..], b"\n"].concat()).collect();
        assert_eq!(ndjson, expected);

        // Two jobs exist (max_jobs = 2): a third kick-off must wait.
        let r = kick_off(&app, "/fhir/$export").await;
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("Retry-After"));

        // DELETE removes the job and its files; its URLs are gone.
        let file_url = m["output"][0]["url"].as_str().unwrap().to_string();
        let r = app.client.delete(&since_url).send().await.unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(app.client.get(&since_url).send().await.unwrap().status(), 404);
        assert_eq!(app.client.get(&file_url).send().await.unwrap().status(), 404);
        assert_eq!(app.client.delete(&since_url).send().await.unwrap().status(), 404);
        let job_id = since_url.rsplit('/').next().unwrap();
        assert!(!jobs.path().join(job_id).exists(), "the job's directory is removed");
        let r = app.client.delete(&status_url).send().await.unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(std::fs::read_dir(jobs.path()).unwrap().count(), 0, "no job files remain");
        let r = kick_off(&app, "/fhir/$export").await;
        assert_eq!(r.status(), 202, "deleting frees a job slot");
    }

    async fn export_kick_off_is_recorded_as_an_access_event(backend) {
        let db = TestDb::new(backend).await;
        let jobs = tempfile::tempdir().unwrap();
        let app = app(&db, jobs.path(), true).await;
        for n in 0..2 {
            assert_eq!(app.post_event(&sample_event(n)).await.status(), 201);
        }
        let r = kick_off(&app, "/fhir/$export?_type=AuditEvent").await;
        assert_eq!(r.status(), 202);
        let status_url = r.headers()["Content-Location"].to_str().unwrap().to_string();
        let m = manifest(&app, &status_url).await;
        // The snapshot is the log before the kick-off: its own record is not in it.
        assert_eq!(m["output"][0]["count"], 2);
        let r = app.client.get(format!("{}/fhir/AuditEvent?type=rest&_count=100", app.base)).send().await.unwrap();
        let bundle: Value = r.json().await.unwrap();
        let exports: Vec<&Value> = bundle["entry"].as_array().unwrap().iter()
            .map(|e| &e["resource"])
            .filter(|e| e["subtype"][1]["code"] == "export")
            .collect();
        assert_eq!(exports.len(), 1, "{bundle}");
        let query = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            exports[0]["entity"][0]["query"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(String::from_utf8(query).unwrap(), "GET /fhir/$export?_type=AuditEvent");
        let by_user: HashMap<&str, &Value> = exports[0]["agent"].as_array().unwrap().iter()
            .filter(|a| a["requestor"] == true)
            .map(|a| (a["who"]["identifier"]["value"].as_str().unwrap_or(""), a))
            .collect();
        assert_eq!(by_user.len(), 1);
    }
}
