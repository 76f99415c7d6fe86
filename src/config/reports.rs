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
}

impl Default for RawReports {
    fn default() -> Self {
        RawReports {
            fast_accept_ms: 5000,
        }
    }
}

/// Validated `[reports]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportSettings {
    pub fast_accept_ms: u64,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            fast_accept_ms: RawReports::default().fast_accept_ms,
        }
    }
}

impl ReportSettings {
    pub fn validate(raw: &RawReports) -> Result<Self, ConfigError> {
        if raw.fast_accept_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "reports.fast_accept_ms",
                reason: "must be greater than 0".into(),
            });
        }
        Ok(ReportSettings {
            fast_accept_ms: raw.fast_accept_ms,
        })
    }
}
