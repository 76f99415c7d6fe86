//! Drift of a model version's override rate, per site (and over all sites,
//! site `*`): each completed window's rate against the version's baseline
//! at that site, with a one-sided pooled two-proportion z-test. The same
//! function serves `GET /reports/drift`, the page and the scheduled check
//! in `serve`, so an alert can always be recomputed from the stored events.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::events::Dataset;
use crate::config::ReportSettings;

/// The site key of the all-sites series.
pub const ALL_SITES: &str = "*";

/// The first window boundary: Monday 1970-01-05 00:00 UTC, so 7-day
/// windows are ISO weeks.
const EPOCH: OffsetDateTime = time::macros::datetime!(1970-01-05 00:00 UTC);

/// The settings the verdicts depend on.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DriftRule {
    pub baseline_cases: u64,
    pub window_days: u64,
    pub min_cases: u64,
    pub z_threshold: f64,
}

impl DriftRule {
    pub fn of(s: &ReportSettings) -> Self {
        DriftRule {
            baseline_cases: s.drift_baseline_cases,
            window_days: s.drift_window_days,
            min_cases: s.drift_min_cases,
            z_threshold: s.drift_z,
        }
    }
}

/// One evaluated window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Window {
    pub model: String,
    pub version: String,
    pub site: String,
    /// Start (inclusive) and end (exclusive) of the window, UTC.
    pub window_start: String,
    pub window_end: String,
    pub baseline_cases: u64,
    pub baseline_overrides: u64,
    pub baseline_rate: f64,
    /// The baseline's last case (recorded time).
    pub baseline_end: String,
    pub cases: u64,
    pub overrides: u64,
    pub rate: f64,
    pub z: f64,
    pub alert: bool,
}

impl Window {
    /// The alert's idempotency key: one alert per series and window.
    pub fn key(&self) -> String {
        format!(
            "drift-alert|{}|{}|{}|{}",
            self.model, self.version, self.site, self.window_start
        )
    }
}

/// The answer of `GET /reports/drift`.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub test: &'static str,
    pub rule: DriftRule,
    pub alerts: usize,
    pub windows: Vec<Window>,
}

/// One acted-on case: when, and whether it was an override.
type Case = (OffsetDateTime, bool);

/// Pooled two-proportion z of the window (k2/n2) against the baseline
/// (k1/n1) (the same test as the version comparison); 0 when a sample is
/// empty or the pooled rate is 0 or 1 (no evidence either way).
pub fn z_score(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    super::stats::two_proportion_z(k1, n1, k2, n2).map_or(0.0, |(z, _)| z)
}

/// The window index of an instant.
fn window_of(t: OffsetDateTime, days: i64) -> i64 {
    (t - EPOCH).whole_days().div_euclid(days)
}

/// Every completed window (ending at or before `now`) of every version and
/// site that has a full baseline.
pub fn compute(data: &Dataset, rule: DriftRule, now: OffsetDateTime) -> DriftReport {
    // (model, version, site) -> acted-on cases, by the inference's time.
    // Keys borrow from `data`: no allocation per inference.
    let mut series: BTreeMap<(&str, &str, &str), Vec<Case>> = BTreeMap::new();
    for inf in &data.inferences {
        let Some(first) = inf.first_action() else {
            continue;
        };
        let over = first.action == "reject" || first.action == "accept_with_edit";
        for site in [inf.site.as_str(), ALL_SITES] {
            series
                .entry((inf.model.as_str(), inf.version.as_str(), site))
                .or_default()
                .push((inf.recorded, over));
        }
    }
    let days = i64::try_from(rule.window_days.max(1)).unwrap_or(7);
    let baseline_n = usize::try_from(rule.baseline_cases).unwrap_or(usize::MAX);
    let mut windows = Vec::new();
    for ((model, version, site), mut cases) in series {
        cases.sort_by_key(|c| c.0);
        if cases.len() <= baseline_n || baseline_n == 0 {
            continue;
        }
        let (baseline, rest) = cases.split_at(baseline_n);
        let k1 = baseline.iter().filter(|c| c.1).count() as u64;
        let n1 = baseline.len() as u64;
        let baseline_end = baseline.last().map(|c| c.0).unwrap_or(EPOCH);
        let mut by_window: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for (t, over) in rest {
            let w = by_window.entry(window_of(*t, days)).or_default();
            w.0 += 1;
            w.1 += u64::from(*over);
        }
        for (w, (n2, k2)) in by_window {
            let start = EPOCH + Duration::days(w * days);
            let end = start + Duration::days(days);
            if end > now || n2 < rule.min_cases {
                continue;
            }
            let z = z_score(k1, n1, k2, n2);
            windows.push(Window {
                model: model.to_string(),
                version: version.to_string(),
                site: site.to_string(),
                window_start: vellum_ledger::stamp(start),
                window_end: vellum_ledger::stamp(end),
                baseline_cases: n1,
                baseline_overrides: k1,
                baseline_rate: k1 as f64 / n1 as f64,
                baseline_end: vellum_ledger::stamp(baseline_end),
                cases: n2,
                overrides: k2,
                rate: k2 as f64 / n2 as f64,
                z,
                alert: z >= rule.z_threshold,
            });
        }
    }
    DriftReport {
        test: "one-sided pooled two-proportion z-test, window against baseline",
        rule,
        alerts: windows.iter().filter(|w| w.alert).count(),
        windows,
    }
}

/// The CSV columns, in order. Stable: new columns are only ever appended.
pub const CSV_COLUMNS: [&str; 15] = [
    "model",
    "version",
    "site",
    "window_start",
    "window_end",
    "baseline_cases",
    "baseline_overrides",
    "baseline_rate",
    "baseline_end",
    "cases",
    "overrides",
    "rate",
    "z",
    "alert",
    "z_threshold",
];

pub fn to_csv(r: &DriftReport) -> String {
    let mut out = String::new();
    super::csv::line(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    for w in &r.windows {
        super::csv::line(
            &mut out,
            [
                w.model.clone(),
                w.version.clone(),
                w.site.clone(),
                w.window_start.clone(),
                w.window_end.clone(),
                w.baseline_cases.to_string(),
                w.baseline_overrides.to_string(),
                format!("{:.6}", w.baseline_rate),
                w.baseline_end.clone(),
                w.cases.to_string(),
                w.overrides.to_string(),
                format!("{:.6}", w.rate),
                format!("{:.6}", w.z),
                w.alert.to_string(),
                format!("{}", r.rule.z_threshold),
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_is_the_pooled_two_proportion_statistic() {
        // 10/100 against 30/100: p = 0.2, se = sqrt(0.2 * 0.8 * 0.02).
        let z = z_score(10, 100, 30, 100);
        assert!((z - 0.2 / (0.2f64 * 0.8 * 0.02).sqrt()).abs() < 1e-12);
        assert!(z_score(30, 100, 10, 100) < 0.0, "a fall is not drift");
        assert_eq!(z_score(0, 50, 0, 50), 0.0);
        assert_eq!(z_score(1, 0, 1, 1), 0.0);
    }

    #[test]
    fn seven_day_windows_are_iso_weeks() {
        let monday = time::macros::datetime!(2026-03-02 00:00 UTC);
        let sunday = time::macros::datetime!(2026-03-08 23:59 UTC);
        assert_eq!(window_of(monday, 7), window_of(sunday, 7));
        assert_eq!(
            window_of(monday, 7) + 1,
            window_of(sunday + Duration::minutes(1), 7)
        );
    }
}
