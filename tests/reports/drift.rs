//! Drift alerts over demo data: `GET /reports/drift` recounted window by
//! window from the raw entries, the scheduled check inside the server
//! appending one validated `radiology-ai-drift-alert` per alerting window —
//! for the drifting version only — and never twice, `/metrics` and `/ui/`.

use std::collections::BTreeMap;

use serde_json::Value;
use vellum::config::Settings;
use vellum::reports::drift::DriftRule;
use vellum::startup::Application;
use vellum_testkit::validator::validate_independently;
use vellum_testkit::*;

use super::recount;

/// Enough cases for two-week windows over all sites: with seed 7 the
/// drifting version's last window is at z ≈ 3.2 and no stable version's
/// window reaches 2.1.
const DEMO_EVENTS: u64 = 20_000;
const BASELINE: u64 = 200;
const WINDOW_DAYS: i64 = 14;
const MIN_CASES: u64 = 100;
const Z: f64 = 2.5;
const DRIFT_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-drift-alert";

fn settings(db_url: &str) -> Settings {
    let mut raw = raw_settings_for(db_url);
    raw.reports.drift_check = true;
    raw.reports.drift_check_seconds = 2;
    raw.reports.drift_baseline_cases = BASELINE;
    raw.reports.drift_window_days = WINDOW_DAYS as u64;
    raw.reports.drift_min_cases = MIN_CASES;
    raw.reports.drift_z = Z;
    Settings::validate(raw).unwrap()
}

/// One recounted window: (cases, overrides, baseline cases, baseline
/// overrides, z).
type Recounted = (u64, u64, u64, u64, f64);

/// Every window recounted from the raw entries, keyed
/// `model|version|site|window start date`.
fn recount_windows(raw: &recount::Raw) -> BTreeMap<String, Recounted> {
    let epoch = time::macros::datetime!(1970-01-05 00:00 UTC);
    let mut series: BTreeMap<(String, String), Vec<(time::OffsetDateTime, bool)>> = BTreeMap::new();
    for inf in &raw.inferences {
        let Some(a) = raw.first_action.get(&inf.id) else {
            continue;
        };
        let t = time::OffsetDateTime::parse(
            &inf.recorded,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let over = a.action == "reject" || a.action == "accept_with_edit";
        for site in [inf.site.as_str(), "*"] {
            series
                .entry((inf.model_version.clone(), site.to_string()))
                .or_default()
                .push((t, over));
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let mut out = BTreeMap::new();
    for ((mv, site), mut cases) in series {
        cases.sort_by_key(|c| c.0);
        if cases.len() as u64 <= BASELINE {
            continue;
        }
        let (base, rest) = cases.split_at(BASELINE as usize);
        let n1 = base.len() as f64;
        let k1 = base.iter().filter(|c| c.1).count() as f64;
        let mut windows: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for (t, over) in rest {
            let w = (*t - epoch).whole_days().div_euclid(WINDOW_DAYS);
            let e = windows.entry(w).or_default();
            e.0 += 1;
            e.1 += u64::from(*over);
        }
        for (w, (n2, k2)) in windows {
            let start = epoch + time::Duration::days(w * WINDOW_DAYS);
            if start + time::Duration::days(WINDOW_DAYS) > now || n2 < MIN_CASES {
                continue;
            }
            let (n2f, k2f) = (n2 as f64, k2 as f64);
            let p = (k1 + k2f) / (n1 + n2f);
            let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2f)).sqrt();
            let z = if se > 0.0 {
                (k2f / n2f - k1 / n1) / se
            } else {
                0.0
            };
            out.insert(
                format!("{mv}|{site}|{}", start.date()),
                (n2, k2, n1 as u64, k1 as u64, z),
            );
        }
    }
    out
}

/// Every stored drift alert body.
async fn stored_alerts(db_url: &str) -> Vec<Value> {
    recount::load(db_url)
        .await
        .entries
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v["meta"]["profile"][0] == DRIFT_PROFILE)
        .collect()
}

backend_tests! {
    async fn drift_alerts_fire_for_the_drifting_version_only_and_once(backend) {
        let db = TestDb::new(backend).await;
        let s = settings(&db.url);
        vellum::demo::run_configured(&s, DEMO_EVENTS, 7).await.unwrap();
        let raw = recount::load(&db.url).await;
        let app = Application::build(&s).await.unwrap();
        let ledger = app.ledger().clone();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let client = authed_client();
        let get = |path: &str| client.get(format!("{base}{path}")).send();

        // The verdicts, recounted window by window.
        let r: Value = get("/reports/drift").await.unwrap().json().await.unwrap();
        assert!(r["test"].as_str().unwrap().contains("two-proportion z-test"));
        let expected = recount_windows(&raw);
        let windows = r["windows"].as_array().unwrap();
        let got: BTreeMap<String, &Value> = windows
            .iter()
            .map(|w| {
                let key = format!(
                    "{}|{}|{}|{}",
                    w["model"].as_str().unwrap(),
                    w["version"].as_str().unwrap(),
                    w["site"].as_str().unwrap(),
                    &w["window_start"].as_str().unwrap()[..10]
                );
                (key, w)
            })
            .collect();
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{backend:?}");
        for (k, (n2, k2, n1, k1, z)) in &expected {
            let w = got[k];
            assert_eq!(w["cases"], *n2, "{k}");
            assert_eq!(w["overrides"], *k2, "{k}");
            assert_eq!(w["baseline_cases"], *n1, "{k}");
            assert_eq!(w["baseline_overrides"], *k1, "{k}");
            assert!((w["z"].as_f64().unwrap() - z).abs() < 1e-9, "{k}");
            assert_eq!(w["alert"], *z >= Z, "{k}");
        }
        let alerting: Vec<&String> = expected.iter().filter(|(_, v)| v.4 >= Z).map(|(k, _)| k).collect();
        assert!(!alerting.is_empty(), "{backend:?}: the drifting version must alert");
        assert!(
            alerting.iter().all(|k| k.starts_with("chest-xr-triage|2.1|")),
            "{backend:?}: only the drifting version alerts: {alerting:?}"
        );

        // The scheduled check appends exactly those alerts.
        let mut alerts = Vec::new();
        for _ in 0..600 {
            alerts = stored_alerts(&db.url).await;
            if alerts.len() >= alerting.len() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut keys: Vec<String> = alerts
            .iter()
            .map(|a| {
                let e = &a["entity"][0];
                let d = |t: &str| {
                    e["detail"].as_array().unwrap().iter()
                        .find(|x| x["type"] == t).unwrap()["valueString"].as_str().unwrap().to_string()
                };
                format!("{}|{}|{}", e["what"]["identifier"]["value"].as_str().unwrap(), d("site"), &d("window-start")[..10])
            })
            .collect();
        keys.sort();
        assert_eq!(keys.iter().collect::<Vec<_>>(), alerting, "{backend:?}");
        if tool_available("node + npm (independent validator)", on_path("node")) {
            let (ok, report) = validate_independently(&alerts);
            assert!(ok, "{backend:?}: {report}");
        }

        // Never twice: two more checks append nothing.
        let intake = vellum::intake::Intake::new(ledger.clone(), None, vellum::ledger::canonical::Limits::INTERNAL);
        let cache = vellum::reports::cache::ReportCache::new(ledger.clone());
        for _ in 0..2 {
            let o = vellum::reports::drift_check::check_once(&cache, &intake, DriftRule::of(&s.reports))
                .await
                .unwrap();
            assert_eq!((o.alerting, o.appended), (alerting.len() as u64, 0), "{backend:?}");
        }
        assert_eq!(stored_alerts(&db.url).await.len(), alerting.len(), "{backend:?}");

        // /metrics and the page show them.
        let metrics = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(
            metrics.lines().any(|l| l.starts_with("vellum_drift_alert_windows{")
                && l.contains("model=\"chest-xr-triage\"") && l.contains("version=\"2.1\"")
                && !l.ends_with(" 0")),
            "{backend:?}"
        );
        let html = get("/ui/").await.unwrap().text().await.unwrap();
        assert!(html.contains("id=\"drift-alerts\"") && html.contains("chest-xr-triage|2.1"));
        let csv = get("/reports/drift?format=csv").await.unwrap().text().await.unwrap();
        assert!(csv.starts_with("model,version,site,window_start,window_end,baseline_cases,baseline_overrides,\
            baseline_rate,baseline_end,cases,overrides,rate,z,alert,z_threshold\r\n"));
        assert_eq!(csv.split("\r\n").filter(|l| !l.is_empty()).count(), windows.len() + 1);
    }
}
