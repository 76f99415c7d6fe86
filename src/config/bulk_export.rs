//! `[bulk_export]`: the FHIR Bulk Data `$export` jobs (env
//! `VELLUM_BULK_EXPORT_<KEY>`): where their NDJSON files are written and how
//! many may exist at once.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[bulk_export]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBulkExport {
    /// Directory the jobs write into. Unset: beside the SQLite file
    /// (`<file>.bulk-export`), or `vellum-bulk-export` in the system's
    /// temporary directory on PostgreSQL.
    pub dir: Option<String>,
    /// Jobs that may exist at once (running, or finished and not yet
    /// deleted or expired); one more kick-off is answered 429.
    pub max_jobs: usize,
}

impl Default for RawBulkExport {
    fn default() -> Self {
        RawBulkExport {
            dir: None,
            max_jobs: 4,
        }
    }
}

/// Validated `[bulk_export]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkExportSettings {
    /// `None`: the default beside the database (see [`RawBulkExport::dir`]).
    pub dir: Option<PathBuf>,
    pub max_jobs: usize,
}

impl Default for BulkExportSettings {
    fn default() -> Self {
        BulkExportSettings {
            dir: None,
            max_jobs: RawBulkExport::default().max_jobs,
        }
    }
}

impl BulkExportSettings {
    pub fn validate(raw: RawBulkExport) -> Result<Self, ConfigError> {
        super::positive("bulk_export.max_jobs", raw.max_jobs)?;
        Ok(BulkExportSettings {
            dir: raw.dir.filter(|d| !d.is_empty()).map(PathBuf::from),
            max_jobs: raw.max_jobs,
        })
    }
}
