//! The QA page in a real browser: headless Chromium (Debian `chromium`)
//! loads `/ui/` from a server filled with demo data; the rendered DOM must
//! show the report's numbers, and a screenshot is kept
//! (`target/tmp/reports-ui-<backend>.png`).

use std::process::Command;

use serde_json::Value;
use vellum_testkit::*;

fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let dir = format!("--user-data-dir={}", profile.path().display());
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            dir.as_str(),
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

backend_tests! {
    async fn headless_chromium_renders_the_report_numbers(backend) {
        if !tool_available("chromium", on_path("chromium")) {
            return;
        }
        let db = TestDb::new(backend).await;
        let s = settings_for(&db.url);
        vellum::demo::run_configured(&s, 1500, 42).await.unwrap();
        let app = spawn_app_with(s).await;
        let report: Value = app
            .client
            .get(format!("{}/reports/overrides?group_by=model_version", app.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The page asks a browser for the token as an HTTP Basic password;
        // Chromium sends URL credentials on a top-level navigation.
        let url = format!(
            "{}/ui/?group_by=model_version",
            app.base
                .replace("http://", &format!("http://qa:{}@", vellum_testkit::DEV_TOKEN))
        );
        // Chromium blocks; run it off the runtime so the server answers.
        let u = url.clone();
        let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom", &u]))
            .await
            .unwrap();
        assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
        let dom = String::from_utf8_lossy(&dom.stdout).to_string();
        assert!(dom.contains("<svg"), "charts rendered");
        // Confidence vs override, recounted from the raw entries: per bin
        // (first decimal digit), acted-on finding confidences and those
        // whose inference's first action was not `accept`.
        let raw = crate::recount::load(&db.url).await;
        let mut bins = [(0u64, 0u64); 10];
        for (_, v) in &raw.entries {
            if !v["meta"]["profile"][0].as_str().unwrap_or("").ends_with("radiology-ai-inference") {
                continue;
            }
            let Some(act) = raw.first_action.get(v["id"].as_str().unwrap()) else {
                continue;
            };
            for e in v["entity"].as_array().unwrap() {
                for d in e["detail"].as_array().into_iter().flatten() {
                    if d["type"] != "finding" {
                        continue;
                    }
                    let f: Value = serde_json::from_str(d["valueString"].as_str().unwrap()).unwrap();
                    let Some(c) = f["confidence"].as_str() else { continue };
                    let bin = match c.strip_prefix("0.") {
                        Some(rest) => usize::from(rest.as_bytes()[0] - b'0'),
                        None => 9,
                    };
                    bins[bin].0 += 1;
                    bins[bin].1 += u64::from(act.action != "accept");
                }
            }
        }
        assert!(bins.iter().map(|b| b.0).sum::<u64>() > 100, "the demo data has confidences");
        assert!(bins.iter().any(|b| b.1 > 0), "some findings were not accepted");
        assert!(dom.contains("id=\"chart-confidence\""), "confidence chart rendered");
        for (i, (acted, not_accepted)) in bins.iter().enumerate() {
            let cells = format!(
                "<td class=\"k\">{:.1}–{:.1}</td><td>{acted}</td><td>{not_accepted}</td>",
                i as f64 / 10.0,
                i as f64 / 10.0 + 0.1
            );
            assert!(dom.contains(&cells), "{cells}");
        }
        for row in report["rows"].as_array().unwrap() {
            let v = row["group"]["model_version"].as_str().unwrap();
            let cells = format!(
                "<td class=\"k\">{v}</td><td>{}</td><td>{}</td>",
                row["inferences"], row["acted_on"]
            );
            assert!(dom.contains(&cells), "{cells}");
        }
        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("reports-ui-{backend:?}.png").to_lowercase());
        let arg = format!("--screenshot={}", shot.display());
        let out = tokio::task::spawn_blocking(move || {
            chromium(&[&arg, "--window-size=1280,1500", &url])
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot kept at {}", shot.display());
        eprintln!("screenshot: {}", shot.display());
    }
}
