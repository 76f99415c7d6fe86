//! `[reports]`: QA report settings (env `VELLUM_REPORTS_<KEY>`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[reports]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReports {
    /// An accept faster than this (time to action, ms) counts as a fast
    /// accept (possible rubber-stamping).
    pub fast_accept_ms: u64,
    /// Run the drift check inside `serve`.
    pub drift_check: bool,
    /// Seconds between two drift checks.
    pub drift_check_seconds: u64,
    /// A version's baseline at a site: its first N acted-on cases.
    pub drift_baseline_cases: u64,
    /// Length of a drift window in days (7: ISO weeks).
    pub drift_window_days: u64,
    /// Fewest acted-on cases a window needs to be tested.
    pub drift_min_cases: u64,
    /// The z at or above which a window is drift.
    pub drift_z: f64,
    /// Seconds between two background refreshes of the reports' in-memory
    /// dataset (0: refresh only when a report is asked for).
    pub cache_refresh_seconds: u64,
}

impl Default for RawReports {
    fn default() -> Self {
        RawReports {
            fast_accept_ms: 5000,
            drift_check: true,
            drift_check_seconds: 3600,
            drift_baseline_cases: 200,
            drift_window_days: 14,
            drift_min_cases: 100,
            drift_z: 3.0,
            cache_refresh_seconds: 10,
        }
    }
}

/// Validated `[reports]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportSettings {
    pub fast_accept_ms: u64,
    pub drift_check: bool,
    pub drift_check_seconds: u64,
    pub drift_baseline_cases: u64,
    pub drift_window_days: u64,
    pub drift_min_cases: u64,
    pub drift_z: f64,
    pub cache_refresh_seconds: u64,
}

impl Default for ReportSettings {
    fn default() -> Self {
        let r = RawReports::default();
        ReportSettings {
            fast_accept_ms: r.fast_accept_ms,
            drift_check: r.drift_check,
            drift_check_seconds: r.drift_check_seconds,
            drift_baseline_cases: r.drift_baseline_cases,
            drift_window_days: r.drift_window_days,
            drift_min_cases: r.drift_min_cases,
            drift_z: r.drift_z,
            cache_refresh_seconds: r.cache_refresh_seconds,
        }
    }
}

fn positive(key: &'static str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        return Err(ConfigError::Invalid {
            key,
            reason: "must be greater than 0".into(),
        });
    }
    Ok(v)
}

impl ReportSettings {
    pub fn validate(raw: &RawReports) -> Result<Self, ConfigError> {
        if !(raw.drift_z.is_finite() && raw.drift_z > 0.0) {
            return Err(ConfigError::Invalid {
                key: "reports.drift_z",
                reason: "must be a number greater than 0".into(),
            });
        }
        if raw.drift_window_days > 3660 {
            return Err(ConfigError::Invalid {
                key: "reports.drift_window_days",
                reason: "must be at most 3660 (ten years)".into(),
            });
        }
        Ok(ReportSettings {
            fast_accept_ms: positive("reports.fast_accept_ms", raw.fast_accept_ms)?,
            drift_check: raw.drift_check,
            drift_check_seconds: positive("reports.drift_check_seconds", raw.drift_check_seconds)?,
            drift_baseline_cases: positive(
                "reports.drift_baseline_cases",
                raw.drift_baseline_cases,
            )?,
            drift_window_days: positive("reports.drift_window_days", raw.drift_window_days)?,
            drift_min_cases: positive("reports.drift_min_cases", raw.drift_min_cases)?,
            drift_z: raw.drift_z,
            cache_refresh_seconds: raw.cache_refresh_seconds,
        })
    }
}
