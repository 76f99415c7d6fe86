//! The configured study sources, tried in order: folder trees, then the
//! DICOMweb server. One per server process, shared by the routes.

use std::sync::Arc;

use crate::config::DicomSettings;

use super::dicomweb::{DicomWebError, DicomWebSource};
use super::folder::{FolderError, FolderOptions, FolderSource, StudyFound};
use super::index::SharedIndex;
use super::study::StudyDigest;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("folder source: {0}")]
    Folder(#[from] FolderError),
    #[error("{0}")]
    DicomWeb(#[from] DicomWebError),
    #[error("folder source task failed: {0}")]
    Task(String),
}

/// Which source answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Folder,
    DicomWeb,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Folder => "the DICOM folder",
            SourceKind::DicomWeb => "the DICOMweb server",
        })
    }
}

pub struct DicomService {
    settings: DicomSettings,
    folder: Option<Arc<FolderSource>>,
    web: Option<DicomWebSource>,
}

impl DicomService {
    pub fn new(settings: &DicomSettings) -> Result<Self, SourceError> {
        let index = Arc::new(SharedIndex::open(settings.index_path.clone()));
        let folder = (!settings.folders.is_empty()).then(|| {
            Arc::new(FolderSource::open(
                settings.folders.clone(),
                index.clone(),
                FolderOptions {
                    workers: settings.workers,
                    header: settings.header,
                    rescan_min_interval: settings.rescan_min_interval,
                },
            ))
        });
        let web = match &settings.dicomweb_url {
            Some(url) => Some(DicomWebSource::new(
                url.clone(),
                settings.dicomweb_timeout,
                index,
                settings.header,
            )?),
            None => None,
        };
        Ok(DicomService {
            settings: settings.clone(),
            folder,
            web,
        })
    }

    pub fn settings(&self) -> &DicomSettings {
        &self.settings
    }

    /// Is any study source configured?
    pub fn has_sources(&self) -> bool {
        self.folder.is_some() || self.web.is_some()
    }

    /// The study's digest from the first source that has the study.
    pub async fn study(
        &self,
        study_uid: &str,
    ) -> Result<Option<(StudyFound, SourceKind)>, SourceError> {
        let started = std::time::Instant::now();
        let found = self.find_study(study_uid).await;
        if let Ok(Some(_)) = &found {
            crate::metrics::global()
                .dicom_digest_duration
                .observe(started.elapsed().as_secs_f64());
        }
        found
    }

    async fn find_study(
        &self,
        study_uid: &str,
    ) -> Result<Option<(StudyFound, SourceKind)>, SourceError> {
        if let Some(folder) = &self.folder {
            let f = folder.clone();
            let uid = study_uid.to_string();
            let found = tokio::task::spawn_blocking(move || f.study(&uid))
                .await
                .map_err(|e| SourceError::Task(e.to_string()))??;
            if let Some(found) = found {
                return Ok(Some((found, SourceKind::Folder)));
            }
        }
        if let Some(web) = &self.web {
            if let Some(found) = web.study(study_uid).await? {
                return Ok(Some((found, SourceKind::DicomWeb)));
            }
        }
        Ok(None)
    }
}

impl DicomService {
    /// vellum's own digest of a study within the configured time budget
    /// (the AI API's inferences); `None` when the study is not found, has no
    /// pixel data, a source fails, or the budget runs out.
    pub async fn study_digest_within_budget(&self, study_uid: &str) -> Option<StudyDigest> {
        let budget = self.settings().budget;
        let found = tokio::time::timeout(budget, self.study(study_uid))
            .await
            .ok()?
            .ok()??;
        Some(found.0.digest)
    }
}
