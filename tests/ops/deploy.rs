//! The deployment examples in docs/: the systemd unit passes systemd's own
//! checks, the Grafana dashboard only queries metrics vellum exposes.

use std::collections::BTreeSet;
use std::process::Command;

use vellum_testkit::{on_path, repo_root, tool_available, vellum_bin, Backend, TestDb};

use crate::serve;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    if !tool_available("systemd-analyze", on_path("systemd-analyze")) {
        return;
    }
    let unit = std::fs::read_to_string(repo_root().join("docs/deploy/vellum.service"))
        .expect("docs/deploy/vellum.service");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vellum.service");
    let bin = vellum_bin();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/vellum", &bin.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2.0:\n{text}");
}

/// Metric family names in `text` (`vellum_…`, `process_…`), without the
/// sample suffixes PromQL uses.
fn families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["vellum_", "process_"] {
        for (i, _) in text.match_indices(prefix) {
            let preceded = text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if preceded {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_string();
            out.insert(base);
        }
    }
    out
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_vellum_exposes() {
    let dashboard = std::fs::read_to_string(repo_root().join("docs/grafana-dashboard.json"))
        .expect("docs/grafana-dashboard.json");
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = serve(&db.url, &[("VELLUM_MLLP_ADDR", "")]);
    server.ready().await;
    let metrics = server.metrics().await;
    // Labelled families without a sample yet are not printed; take their
    // registered names from the source.
    let registered = ["mod.rs", "snapshot.rs", "process.rs"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(repo_root().join("src/metrics").join(f)).unwrap_or_default()
        })
        .collect::<String>();
    let mut exposed: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    exposed.extend(families(&registered));
    let used = families(&dashboard);
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<_> = used.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries unknown metrics {missing:?}\n{metrics}"
    );
}
