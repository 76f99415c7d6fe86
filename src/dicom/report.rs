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

/// Which list [`Report::push`] added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Instance,
    Skipped,
    Error,
}

fn instance_text(i: &ReportInstance) -> String {
    format!(
        "{}  {}  {}  sop={}",
        i.sha256_hex, i.sha256_base64, i.source, i.digest.sop_instance_uid
    )
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
            r.push(source, outcome);
        }
        r.finish();
        r
    }

    /// Adds one input's outcome (study digests wait for [`Report::finish`]).
    pub fn push(&mut self, source: String, outcome: Result<Outcome, DigestError>) -> Pushed {
        match outcome {
            Ok(Outcome::Hashed(digest)) => {
                self.instances.push(ReportInstance {
                    source,
                    sha256_hex: digest.hex(),
                    sha256_base64: digest.base64(),
                    digest,
                });
                Pushed::Instance
            }
            Ok(Outcome::Skipped(reason)) => {
                self.skipped.push(ReportSkip {
                    source,
                    reason: reason.to_string(),
                });
                Pushed::Skipped
            }
            Err(e) => {
                self.errors.push(ReportSkip {
                    source,
                    reason: e.to_string(),
                });
                Pushed::Error
            }
        }
    }

    /// Computes the study digests of the instances pushed.
    pub fn finish(&mut self) {
        self.studies = study_digests(self.instances.iter().map(|i| &i.digest))
            .into_iter()
            .map(|s| ReportStudy {
                sha256_hex: s.hex(),
                sha256_base64: s.base64(),
                study_instance_uid: s.study_instance_uid,
                instances: s.instances,
            })
            .collect();
    }

    /// The JSON Lines record of the input pushed last, of kind `kind`
    /// (`type` = `instance`, `skipped` or `error`), as `vellum hash --json`
    /// streams them; [`Report::study_lines`] gives the `study` records.
    pub fn last_line(&self, kind: Pushed) -> serde_json::Value {
        let (t, v) = match kind {
            Pushed::Instance => ("instance", self.instances.last().map(serde_json::to_value)),
            Pushed::Skipped => ("skipped", self.skipped.last().map(serde_json::to_value)),
            Pushed::Error => ("error", self.errors.last().map(serde_json::to_value)),
        };
        let mut v = v.and_then(Result::ok).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), t.into());
        }
        v
    }

    /// The text line of the input pushed last (as in [`Report::to_text`]).
    pub fn last_text(&self, kind: Pushed) -> String {
        match kind {
            Pushed::Instance => self.instances.last().map(instance_text),
            Pushed::Skipped => self
                .skipped
                .last()
                .map(|s| format!("skipped  {}: {}", s.source, s.reason)),
            Pushed::Error => self
                .errors
                .last()
                .map(|e| format!("error  {}: {}", e.source, e.reason)),
        }
        .unwrap_or_default()
    }

    /// The `study` JSON Lines records of the instances hashed.
    pub fn study_lines(&self) -> Vec<serde_json::Value> {
        self.studies
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), "study".into());
                }
                v
            })
            .collect()
    }

    /// Human-readable form: one line per instance, skip, error and study.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for i in &self.instances {
            let _ = writeln!(out, "{}", instance_text(i));
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
