//! The drift check scheduled inside `serve`: every
//! `[reports] drift_check_seconds` it recomputes the drift windows from the
//! ledger (the same [`super::drift::compute`] as `GET /reports/drift`) and
//! appends one `radiology-ai-drift-alert` event per alerting window through
//! intake. Each alert carries an idempotency key naming its model version,
//! site and window, so no window is ever alerted twice.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::cache::ReportCache;
use super::drift::{self, DriftRule, Window};
use crate::intake::{Intake, IntakeError, Stored, Submission};
use crate::radiology::drift_alert::{drift_alert, DriftAlert};

#[derive(Debug, thiserror::Error)]
pub enum DriftCheckError {
    #[error("reading the ledger failed: {0}")]
    Store(#[from] vellum_ledger::store::StoreError),
    #[error("appending a drift alert failed: {0}")]
    Intake(#[from] IntakeError),
}

/// What one check did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Windows in drift.
    pub alerting: u64,
    /// Alerts appended now (the others were stored by an earlier check).
    pub appended: u64,
}

fn alert_body(w: &Window, rule: DriftRule, test: &str, now: &str) -> String {
    drift_alert(&DriftAlert {
        model: &w.model,
        version: &w.version,
        site: &w.site,
        window_start: &w.window_start,
        window_end: &w.window_end,
        baseline_cases: w.baseline_cases,
        baseline_overrides: w.baseline_overrides,
        window_cases: w.cases,
        window_overrides: w.overrides,
        z: w.z,
        z_threshold: rule.z_threshold,
        test,
        recorded: now,
    })
}

/// One check: recompute, then append what is not stored yet.
pub async fn check_once(
    cache: &ReportCache,
    intake: &Intake,
    rule: DriftRule,
) -> Result<CheckOutcome, DriftCheckError> {
    let now = OffsetDateTime::now_utc();
    let report = drift::compute(&*cache.current().await?, rule, now);
    let stamp = vellum_ledger::stamp(now);
    let metrics = crate::metrics::global();
    // Every tested series, 0 when none of its windows drifted.
    let mut per_series: std::collections::BTreeMap<(&str, &str, &str), i64> =
        std::collections::BTreeMap::new();
    for w in &report.windows {
        *per_series
            .entry((w.model.as_str(), w.version.as_str(), w.site.as_str()))
            .or_default() += i64::from(w.alert);
    }
    for ((model, version, site), n) in per_series {
        metrics
            .drift_windows
            .get_or_create(&crate::metrics::DriftLabels {
                model: model.to_string(),
                version: version.to_string(),
                site: site.to_string(),
            })
            .set(n);
    }
    let mut outcome = CheckOutcome::default();
    for w in report.windows.iter().filter(|w| w.alert) {
        outcome.alerting += 1;
        let body = alert_body(w, rule, report.test, &stamp);
        let submission = Submission::mapped(body)
            .with_key(w.key())
            .without_enrichment();
        if let Stored::Committed(c) = intake.submit(submission).await? {
            if c.created {
                outcome.appended += 1;
                metrics.drift_alerts_appended.inc();
            }
        }
    }
    Ok(outcome)
}

/// Runs [`check_once`] every `every` until the task is dropped. Failures are
/// logged (counts only) and retried at the next tick.
pub async fn run(cache: Arc<ReportCache>, intake: Intake, rule: DriftRule, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match check_once(&cache, &intake, rule).await {
            Ok(o) => tracing::info!(
                alerting = o.alerting,
                appended = o.appended,
                "drift check done"
            ),
            Err(e) => tracing::warn!(error = %e, "drift check failed"),
        }
    }
}
