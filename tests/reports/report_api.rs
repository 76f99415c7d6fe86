//! `/reports/overrides`, `/reports/model-versions` and `/ui/` against a
//! store filled by the demo generator, checked against [`super::recount`].

use std::collections::BTreeMap;

use serde_json::Value;
use vellum::config::Settings;
use vellum_testkit::*;

use super::recount::{self, Expected};

const FAST_MS: u64 = 3000;

fn settings(db_url: &str) -> Settings {
    let mut raw = vellum_testkit::raw_settings_for(db_url);
    raw.reports.fast_accept_ms = FAST_MS;
    Settings::validate(raw).unwrap()
}

/// A store with demo traffic and a server over it.
async fn filled(backend: Backend, events: u64) -> (TestDb, TestApp) {
    let db = TestDb::new(backend).await;
    let s = settings(&db.url);
    let sum = vellum::demo::run_configured(&s, events, 7).await.unwrap();
    assert!(sum.events >= events && sum.created == sum.events, "{sum:?}");
    let app = spawn_app_with(s).await;
    // A non-AI event beside them must not count anywhere.
    assert_eq!(app.post_event(&sample_event(1)).await.status(), 201);
    (db, app)
}

async fn get(app: &TestApp, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut req = app.client.get(format!("{}{path}", app.base));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

async fn json(app: &TestApp, path: &str) -> Value {
    let (s, _, body) = get(app, path, None).await;
    assert_eq!(s, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn assert_row(ctx: &str, row: &Value, e: &Expected) {
    let n = |k: &str| {
        row[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{ctx}: {k} in {row}"))
    };
    assert_eq!(n("inferences"), e.inferences, "{ctx}");
    assert_eq!(n("acted_on"), e.acted_on, "{ctx}");
    for a in ["accept", "accept_with_edit", "reject", "escalate", "ignore"] {
        assert_eq!(n(a), e.actions.get(a).copied().unwrap_or(0), "{ctx}: {a}");
    }
    assert_eq!(n("overrides"), e.overrides, "{ctx}");
    assert_eq!(n("fast_accepts"), e.fast_accepts, "{ctx}");
    assert_eq!(n("never_rendered"), e.never_rendered, "{ctx}");
    assert_eq!(n("never_acted_on"), e.never_acted_on, "{ctx}");
    assert_eq!(
        row["median_time_to_action_ms"].as_i64(),
        recount::nearest_rank(&e.times, 0.5),
        "{ctx}"
    );
    assert_eq!(
        row["p90_time_to_action_ms"].as_i64(),
        recount::nearest_rank(&e.times, 0.9),
        "{ctx}"
    );
    if e.acted_on > 0 {
        let rate = e.overrides as f64 / e.acted_on as f64;
        assert!(
            (row["override_rate"].as_f64().unwrap() - rate).abs() < 1e-12,
            "{ctx}"
        );
        let (lo, hi) = (
            row["override_rate_low"].as_f64().unwrap(),
            row["override_rate_high"].as_f64().unwrap(),
        );
        assert!(lo <= rate && rate <= hi && lo >= 0.0 && hi <= 1.0, "{ctx}");
    } else {
        assert!(row["override_rate"].is_null(), "{ctx}");
    }
}

fn rows_by(report: &Value, keys: &[&str]) -> BTreeMap<String, Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let k: Vec<&str> = keys
                .iter()
                .map(|k| r["group"][*k].as_str().unwrap())
                .collect();
            (k.join("/"), r.clone())
        })
        .collect()
}

fn check_all(ctx: &str, report: &Value, keys: &[&str], expected: &BTreeMap<String, Expected>) {
    let rows = rows_by(report, keys);
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{ctx}: groups"
    );
    for (k, e) in expected {
        assert_row(&format!("{ctx} [{k}]"), &rows[k], e);
    }
}

backend_tests! {
    async fn report_numbers_agree_with_a_brute_force_recount(backend) {
        let (db, app) = filled(backend, 700).await;
        let raw = recount::load(&db.url).await;
        assert!(raw.inferences.len() > 150);
        let fast = FAST_MS as i64;

        // No grouping: one row over everything.
        let r = json(&app, "/reports/overrides").await;
        assert_eq!(r["fast_accept_ms"], FAST_MS);
        let all = recount::recount(&raw, false, fast, |_, _, _| Some(String::new()));
        assert_eq!(r["rows"].as_array().unwrap().len(), 1);
        assert_row("all", &r["rows"][0], &all[""]);

        // model_version × radiologist.
        let r = json(&app, "/reports/overrides?group_by=model_version,radiologist").await;
        let e = recount::recount(&raw, false, fast, |i, _, a| {
            Some(format!("{}/{}", i.model_version, a.map(|a| a.radiologist.as_str()).unwrap_or("")))
        });
        check_all("version×radiologist", &r, &["model_version", "radiologist"], &e);

        // finding × site, filtered by model and a period (from inclusive,
        // to exclusive).
        let r = json(
            &app,
            "/reports/overrides?group_by=finding,site&model=chest-xr-triage&from=2026-02-01&to=2026-03-15T00:00:00Z",
        )
        .await;
        let e = recount::recount(&raw, true, fast, |i, f, _| {
            (i.model_version.starts_with("chest-xr-triage|")
                && i.recorded.as_str() >= "2026-02-01"
                && i.recorded.as_str() < "2026-03-15")
                .then(|| format!("{f}/{}", i.site))
        });
        check_all("finding×site, model, period", &r, &["finding", "site"], &e);

        // A finding, a radiologist and a version, grouped by month.
        let r = json(
            &app,
            "/reports/overrides?group_by=month&finding=RID5352&radiologist=rad-eli&model_version=chest-xr-triage|2.1",
        )
        .await;
        let e = recount::recount(&raw, true, fast, |i, f, a| {
            (f == "RID5352"
                && i.model_version == "chest-xr-triage|2.1"
                && a.is_some_and(|a| a.radiologist == "rad-eli"))
                .then(|| i.recorded[..7].to_string())
        });
        assert!(!e.is_empty());
        check_all("month, filtered", &r, &["month"], &e);

        // Unknown parameters and keys are refused.
        let (s, _, _) = get(&app, "/reports/overrides?group_by=patient", None).await;
        assert_eq!(s, 400);
        let (s, _, _) = get(&app, "/reports/overrides?from=yesterday", None).await;
        assert_eq!(s, 400);
    }

    async fn reports_follow_new_events_and_the_cache_equals_a_fresh_load(backend) {
        let db = TestDb::new(backend).await;
        let s = settings(&db.url);
        vellum::demo::run_configured(&s, 300, 7).await.unwrap();
        let server = vellum::startup::Application::build(&s).await.unwrap();
        let ledger = server.ledger().clone();
        let app = TestApp {
            base: format!("http://127.0.0.1:{}", server.port()),
            client: authed_client(),
        };
        tokio::spawn(server.run_until_stopped());
        // The first report loads the in-memory dataset.
        let before = json(&app, "/reports/overrides").await;
        let cache = vellum::reports::cache::ReportCache::new(ledger.clone());
        cache.refresh().await.unwrap();
        let intake = vellum::intake::Intake::new(
            ledger.clone(),
            None,
            vellum::ledger::canonical::Limits::INTERNAL,
        );
        let privacy = settings(&db.url).privacy;
        vellum::demo::run(&intake, &privacy, 150, 8, 8).await.unwrap();
        cache.refresh().await.unwrap();
        vellum::demo::run(&intake, &privacy, 150, 9, 8).await.unwrap();

        // Reports see what was appended after their dataset was loaded.
        let after = json(&app, "/reports/overrides").await;
        let raw = recount::load(&db.url).await;
        let all = recount::recount(&raw, false, FAST_MS as i64, |_, _, _| Some(String::new()));
        assert!(after["rows"][0]["inferences"].as_u64() > before["rows"][0]["inferences"].as_u64());
        assert_row("after more events", &after["rows"][0], &all[""]);

        // Followed piece by piece, the dataset is the one a single load
        // of every summary row gives.
        let fresh = vellum::reports::events::load(
            &ledger,
            vellum::reports::events::Needs {
                patient: false,
                ..vellum::reports::events::Needs::ALL
            },
        )
        .await
        .unwrap();
        let followed = cache.current().await.unwrap();
        assert!(fresh.inferences.len() > 200);
        // Each inference carries its overrides and whether it was rendered.
        assert_eq!(followed.inferences, fresh.inferences);
        assert!(fresh.inferences.iter().any(|i| i.rendered && !i.actions.is_empty()));
        assert_eq!(followed.deployments, fresh.deployments);
    }

    async fn csv_has_the_documented_columns_and_the_json_numbers(backend) {
        let (_db, app) = filled(backend, 300).await;
        let report = json(&app, "/reports/overrides?group_by=site").await;
        let (s, ct, by_accept) = get(&app, "/reports/overrides?group_by=site", Some("text/csv")).await;
        assert_eq!(s, 200);
        assert!(ct.starts_with("text/csv"), "{ct}");
        let (_, _, by_param) = get(&app, "/reports/overrides?group_by=site&format=csv", None).await;
        assert_eq!(by_accept, by_param);
        let lines: Vec<&str> = by_accept.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines[0],
            "model_version,finding,radiologist,site,week,month,inferences,acted_on,accept,\
             accept_with_edit,reject,escalate,ignore,overrides,override_rate,override_rate_low,\
             override_rate_high,median_time_to_action_ms,p90_time_to_action_ms,fast_accepts,\
             never_rendered,never_acted_on,fast_accept_ms"
        );
        let rows = report["rows"].as_array().unwrap();
        assert_eq!(lines.len() - 1, rows.len());
        for (line, row) in lines[1..].iter().zip(rows) {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), 23, "{line}");
            assert_eq!(cells[3], row["group"]["site"].as_str().unwrap());
            assert_eq!(cells[0], "");
            assert_eq!(cells[6], row["inferences"].to_string());
            assert_eq!(cells[13], row["overrides"].to_string());
            assert_eq!(cells[14], format!("{:.6}", row["override_rate"].as_f64().unwrap()));
            assert_eq!(cells[17], row["median_time_to_action_ms"].to_string());
            assert_eq!(cells[22], FAST_MS.to_string());
        }
    }

    async fn model_versions_follow_deployment_order_with_a_named_test(backend) {
        let (db, app) = filled(backend, 600).await;
        let raw = recount::load(&db.url).await;
        let (s, _, _) = get(&app, "/reports/model-versions", None).await;
        assert_eq!(s, 400, "model is required");
        let c = json(&app, "/reports/model-versions?model=chest-xr-triage").await;
        assert!(c["test"].as_str().unwrap().contains("two-proportion z-test"));
        let versions = c["versions"].as_array().unwrap();
        let names: Vec<&str> = versions.iter().map(|v| v["version"].as_str().unwrap()).collect();
        assert_eq!(names, ["2.0", "2.1", "2.2"]);
        assert!(versions[0]["change"].is_null());
        let e = recount::recount(&raw, false, 0, |i, _, _| Some(i.model_version.clone()));
        for v in versions {
            let key = format!("chest-xr-triage|{}", v["version"].as_str().unwrap());
            let x = &e[&key];
            assert_eq!(v["cases"].as_u64().unwrap(), x.inferences, "{key}");
            assert_eq!(v["acted_on"].as_u64().unwrap(), x.acted_on, "{key}");
            assert_eq!(v["overrides"].as_u64().unwrap(), x.overrides, "{key}");
            assert_eq!(
                v["rejects"].as_u64().unwrap(),
                x.actions.get("reject").copied().unwrap_or(0),
                "{key}"
            );
            assert!(v["deployed_at"].as_str().unwrap().starts_with("2026-"));
        }
        // The change against the predecessor, recomputed.
        let (a, b) = (&versions[0], &versions[1]);
        let (k1, n1) = (a["overrides"].as_f64().unwrap(), a["acted_on"].as_f64().unwrap());
        let (k2, n2) = (b["overrides"].as_f64().unwrap(), b["acted_on"].as_f64().unwrap());
        let p = (k1 + k2) / (n1 + n2);
        let z = (k2 / n2 - k1 / n1) / (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
        let ch = &b["change"];
        assert_eq!(ch["previous_version"], "2.0");
        assert!((ch["z"].as_f64().unwrap() - z).abs() < 1e-9);
        let pv = ch["p_value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pv));
        assert_eq!(ch["significant"].as_bool().unwrap(), pv < 0.05);
        // Per finding, and as CSV.
        assert!(b["findings"]["RID5352"]["cases"].as_u64().unwrap() > 0);
        let (s, ct, csv) = get(&app, "/reports/model-versions?model=chest-xr-triage&format=csv", None).await;
        assert_eq!(s, 200);
        assert!(ct.starts_with("text/csv"));
        assert!(csv.starts_with("model,version,deployed_at,finding,cases,acted_on,overrides,rejects,"));
    }

    async fn the_ui_page_shows_the_report_numbers(backend) {
        let (_db, app) = filled(backend, 300).await;
        let report = json(&app, "/reports/overrides?group_by=model_version").await;
        let (s, ct, html) = get(&app, "/ui/?group_by=model_version", None).await;
        assert_eq!(s, 200);
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(html.contains("<table id=\"overrides\""));
        assert!(html.contains("<svg") && html.contains("chart-rate") && html.contains("chart-tta"));
        assert!(html.contains("<label for=\"f-model\">"), "labelled form controls");
        assert!(html.contains("@media print"));
        for row in report["rows"].as_array().unwrap() {
            let v = row["group"]["model_version"].as_str().unwrap();
            let cells = format!(
                "<td class=\"k\">{v}</td><td>{}</td><td>{}</td>",
                row["inferences"], row["acted_on"]
            );
            assert!(html.contains(&cells), "{cells}");
            let rate = format!("{:.1} %", row["override_rate"].as_f64().unwrap() * 100.0);
            assert!(html.contains(&rate), "{rate}");
        }
        // Text filters are escaped, never markup.
        let (s, _, html) = get(&app, "/ui/?site=%3Cscript%3E", None).await;
        assert_eq!(s, 200);
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    }

    async fn the_demo_is_reproducible_and_idempotent(backend) {
        let db = TestDb::new(backend).await;
        let s = settings(&db.url);
        let first = vellum::demo::run_configured(&s, 200, 11).await.unwrap();
        let again = vellum::demo::run_configured(&s, 200, 11).await.unwrap();
        assert_eq!(first.events, again.events);
        assert_eq!(again.created, 0, "a rerun stores nothing new");
        let raw = recount::load(&db.url).await;
        assert_eq!(raw.inferences.len() as u64, first.inferences);
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
    }
}
