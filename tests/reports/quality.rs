//! `GET /reports/quality` against demo data plus one AI API inference with a
//! sender digest, recounted from the raw entries.

use std::collections::BTreeMap;

use serde_json::Value;
use vellum_testkit::*;

use super::recount;

/// Per `name|version|month`: (latencies, cpu-fallback values, digest
/// checks, per finding the confidence texts).
#[derive(Default, Debug)]
struct Want {
    requests: u64,
    latencies: Vec<i64>,
    fallbacks: Vec<bool>,
    checks: BTreeMap<String, u64>,
    confidences: BTreeMap<String, Vec<String>>,
}

fn recount_quality(raw: &recount::Raw) -> BTreeMap<String, Want> {
    let mut out: BTreeMap<String, Want> = BTreeMap::new();
    for (_, v) in &raw.entries {
        if !v["meta"]["profile"][0]
            .as_str()
            .unwrap_or("")
            .ends_with("/radiology-ai-inference")
        {
            continue;
        }
        let entities = v["entity"].as_array().unwrap();
        let detail = |t: &str| -> Vec<String> {
            entities
                .iter()
                .flat_map(|e| e["detail"].as_array().cloned().unwrap_or_default())
                .filter(|d| d["type"] == t)
                .filter_map(|d| d["valueString"].as_str().map(str::to_string))
                .collect()
        };
        let mv = entities
            .iter()
            .find_map(|e| {
                let id = &e["what"]["identifier"];
                id["system"]
                    .as_str()?
                    .ends_with("ai-model-version")
                    .then(|| id["value"].as_str().unwrap().to_string())
            })
            .unwrap();
        let key = format!("{mv}|{}", &v["recorded"].as_str().unwrap()[..7]);
        let w = out.entry(key).or_default();
        w.requests += 1;
        w.latencies.extend(
            detail("latency-ms")
                .iter()
                .map(|s| s.parse::<i64>().unwrap()),
        );
        w.fallbacks
            .extend(detail("cpu-fallback").iter().map(|s| s == "true"));
        for c in detail("digest-check") {
            *w.checks.entry(c).or_default() += 1;
        }
        for f in detail("finding") {
            let f: Value = serde_json::from_str(&f).unwrap();
            if let Some(c) = f["confidence"].as_str() {
                w.confidences
                    .entry(f["code"].as_str().unwrap().to_string())
                    .or_default()
                    .push(c.to_string());
            }
        }
    }
    out
}

fn nearest(sorted: &[i64], q: f64) -> Option<i64> {
    recount::nearest_rank(sorted, q)
}

backend_tests! {
    async fn quality_metrics_agree_with_a_brute_force_recount(backend) {
        let db = TestDb::new(backend).await;
        vellum::demo::run_configured(&settings_for(&db.url), 500, 3).await.unwrap();
        let app = spawn_app(&db.url).await;
        app.ai_inference_chain("quality").await;
        let raw = recount::load(&db.url).await;
        let want = recount_quality(&raw);

        let r: Value = app.client.get(format!("{}/reports/quality?group_by=month", app.base))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(r["period"], "month");
        let rows = r["rows"].as_array().unwrap();
        let got: BTreeMap<String, &Value> = rows
            .iter()
            .map(|x| (format!("{}|{}|{}", x["model"].as_str().unwrap(), x["version"].as_str().unwrap(),
                x["period"].as_str().unwrap()), x))
            .collect();
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{backend:?}");
        for (k, w) in &want {
            let row = got[k];
            assert_eq!(row["requests"], w.requests, "{k}");
            let mut lat = w.latencies.clone();
            lat.sort_unstable();
            assert_eq!(row["latency_count"], lat.len(), "{k}");
            let mean = lat.iter().sum::<i64>() as f64 / lat.len() as f64;
            assert!((row["latency_mean_ms"].as_f64().unwrap() - mean).abs() < 1e-9, "{k}");
            assert_eq!(row["latency_p50_ms"].as_i64(), nearest(&lat, 0.5), "{k}");
            assert_eq!(row["latency_p95_ms"].as_i64(), nearest(&lat, 0.95), "{k}");
            assert_eq!(row["latency_p99_ms"].as_i64(), nearest(&lat, 0.99), "{k}");
            let fb = w.fallbacks.iter().filter(|b| **b).count();
            assert_eq!(row["cpu_fallback_known"], w.fallbacks.len(), "{k}");
            assert_eq!(row["cpu_fallbacks"], fb, "{k}");
            assert_eq!(row["digest_mismatches"], w.checks.get("mismatch").copied().unwrap_or(0), "{k}");
            assert_eq!(row["digest_checks"], serde_json::json!(w.checks), "{k}");
            for (code, texts) in &w.confidences {
                let c = &row["confidence"][code];
                assert_eq!(c["count"], texts.len(), "{k} {code}");
                // Bins from the decimal text: the first digit after "0.".
                let mut bins = [0u64; 10];
                for t in texts {
                    let b = if t.starts_with('1') { 9 } else { (t.as_bytes()[2] - b'0') as usize };
                    bins[b] += 1;
                }
                assert_eq!(c["bins"], serde_json::json!(bins), "{k} {code}");
                let vals: Vec<f64> = texts.iter().map(|t| t.parse().unwrap()).collect();
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                assert!((c["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{k} {code}");
            }
        }
        // The AI API inference: its sender digest, not checked by vellum.
        assert_eq!(got["chest-xray-ai|2.4.1|2026-03"]["digest_checks"]["unverified"], 1);

        // CSV: the documented columns, one line per row and finding.
        let csv = app.client.get(format!("{}/reports/quality?group_by=month&format=csv", app.base))
            .send().await.unwrap().text().await.unwrap();
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines[0].starts_with("model,version,period,finding,requests,latency_count,latency_mean_ms,\
            latency_p50_ms,latency_p95_ms,latency_p99_ms,cpu_fallback_known,cpu_fallbacks,cpu_fallback_rate,\
            digest_mismatches,confidence_count,confidence_mean,confidence_median,bin_0_0.1,"));
        let findings: usize = rows.iter().map(|r| r["confidence"].as_object().unwrap().len()).sum();
        assert_eq!(lines.len() - 1, rows.len() + findings);
        let status = app.client.get(format!("{}/reports/quality?group_by=site", app.base))
            .send().await.unwrap().status();
        assert_eq!(status, 400);
    }
}
