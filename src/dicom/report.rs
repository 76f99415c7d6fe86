//! The answer of `vellum hash` and `POST /dicom/digest`: instance digests,
//! skipped inputs with their reasons, and study digests, as JSON or text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::digest::{DigestError, InstanceDigest, Outcome};
use super::study::study_digests;

#[derive(Debug, Clone, Serialize)]
pub struct ReportInstance {
    /// File path (CLI) or part number (upload).
    pub source: String,
    #[serde(flatten)]
    pub digest: InstanceDigest,
    pub sha256_hex: String,
    pub sha256_base64: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportSkip {
    pub source: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportStudy {
    pub study_instance_uid: String,
    pub instances: usize,
    pub sha256_hex: String,
    pub sha256_base64: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub instances: Vec<ReportInstance>,
    pub skipped: Vec<ReportSkip>,
    /// Inputs that could not be read at all (I/O failures, not file content).
    pub errors: Vec<ReportSkip>,
    pub studies: Vec<ReportStudy>,
}

impl Report {
    /// Builds the report from per-input outcomes, computing study digests.
    pub fn new(outcomes: impl IntoIterator<Item = (String, Result<Outcome, DigestError>)>) -> Self {
        let mut r = Report::default();
        for (source, outcome) in outcomes {
            match outcome {
                Ok(Outcome::Hashed(digest)) => r.instances.push(ReportInstance {
                    source,
                    sha256_hex: digest.hex(),
                    sha256_base64: digest.base64(),
                    digest,
                }),
                Ok(Outcome::Skipped(reason)) => r.skipped.push(ReportSkip {
                    source,
                    reason: reason.to_string(),
                }),
                Err(e) => r.errors.push(ReportSkip {
                    source,
                    reason: e.to_string(),
                }),
            }
        }
        r.studies = study_digests(r.instances.iter().map(|i| &i.digest))
            .into_iter()
            .map(|s| ReportStudy {
                sha256_hex: s.hex(),
                sha256_base64: s.base64(),
                study_instance_uid: s.study_instance_uid,
                instances: s.instances,
            })
            .collect();
        r
    }

    /// Human-readable form: one line per instance, skip, error and study.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for i in &self.instances {
            let _ = writeln!(
                out,
                "{}  {}  {}  sop={}",
                i.sha256_hex, i.sha256_base64, i.source, i.digest.sop_instance_uid
            );
        }
        for s in &self.skipped {
            let _ = writeln!(out, "skipped  {}: {}", s.source, s.reason);
        }
        for e in &self.errors {
            let _ = writeln!(out, "error  {}: {}", e.source, e.reason);
        }
        for s in &self.studies {
            let _ = writeln!(
                out,
                "study {}  instances={}  {}  {}",
                s.study_instance_uid, s.instances, s.sha256_hex, s.sha256_base64
            );
        }
        out
    }
}

/// Every regular file under `paths` (folders recursively, in name order;
/// symbolic links to folders are not followed, so a loop cannot hang it).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DigestError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| DigestError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk_dir(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DigestError> {
    let io = |source| DigestError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ft = e.file_type().map_err(io)?;
        let path = e.path();
        if ft.is_dir() {
            walk_dir(&path, out)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}
