//! `[dicom]`: pixel digests and the sources studies are found in (env
//! `VELLUM_DICOM_<KEY>`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[dicom]` as written (env: `VELLUM_DICOM_<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDicomSettings {
    /// Folder trees of DICOM files searched for studies (env: comma-separated).
    pub folders: PathList,
    /// Where the folder index (and digest cache) is persisted.
    pub index_path: String,
    /// DICOMweb base URL (QIDO-RS/WADO-RS), e.g. `http://pacs:8042/dicom-web`.
    pub dicomweb_url: Option<String>,
    /// Timeout of one DICOMweb request, ms.
    pub dicomweb_timeout_ms: u64,
    /// How long an event may wait for its study's digest before it is
    /// stored with the digest pending, ms.
    pub budget_ms: u64,
    /// Largest `POST /dicom/digest` body, bytes.
    pub max_upload_bytes: usize,
    /// Files hashed at once; 0 = one per core.
    pub workers: usize,
    /// How often the digest worker looks for pending digests, ms; 0 turns
    /// the worker off (pending studies then wait for an instance with it on).
    pub pending_poll_ms: u64,
    /// Longest wait between two attempts at a study that stays unavailable
    /// (the wait doubles from `pending_poll_ms` up to this), ms.
    pub pending_retry_max_ms: u64,
    /// Age (since the event was stored) after which a still unavailable
    /// digest gets a "gave up" follow-up, s; 0 = keep trying forever.
    pub pending_give_up_after_s: u64,
    /// Pending digests read per poll.
    pub pending_batch: usize,
    /// Most bytes of an instance before its pixel data (file meta and
    /// header, after inflating a deflated data set).
    pub max_header_bytes: u64,
    /// Longest single element before the pixel data (sequences count by
    /// their items' elements).
    pub max_element_bytes: u64,
    /// Least time between two full rescans of the folders, ms (a study UID
    /// found in no file triggers one at most this often).
    pub rescan_min_interval_ms: u64,
}

/// A list of paths: a TOML array, or one string with comma-separated items
/// (how an environment variable carries it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "OneOrMany")]
pub struct PathList(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for PathList {
    fn from(v: OneOrMany) -> Self {
        let items = match v {
            OneOrMany::One(s) => s.split(',').map(str::to_string).collect(),
            OneOrMany::Many(v) => v,
        };
        PathList(
            items
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
}

impl Default for RawDicomSettings {
    fn default() -> Self {
        RawDicomSettings {
            folders: PathList::default(),
            index_path: "vellum-dicom-index.json".into(),
            dicomweb_url: None,
            dicomweb_timeout_ms: 30_000,
            budget_ms: 2_000,
            max_upload_bytes: 1 << 30,
            workers: 0,
            pending_poll_ms: 10_000,
            pending_retry_max_ms: 600_000,
            pending_give_up_after_s: 0,
            pending_batch: 100,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_element_bytes: DEFAULT_MAX_ELEMENT_BYTES,
            rescan_min_interval_ms: 5_000,
        }
    }
}

/// Default of `dicom.max_header_bytes`: far above real headers (tens of KiB,
/// a few MiB for large enhanced multi-frame objects).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 20;
/// Default of `dicom.max_element_bytes`.
pub const DEFAULT_MAX_ELEMENT_BYTES: u64 = 16 << 20;

/// What an instance's header may hold before anything reads it into memory
/// (dicom-object loads every header element whole; a deflated upload of a
/// few hundred KiB can inflate to gigabytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// `dicom.max_header_bytes`.
    pub max_header_bytes: u64,
    /// `dicom.max_element_bytes`.
    pub max_element_bytes: u64,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_element_bytes: DEFAULT_MAX_ELEMENT_BYTES,
        }
    }
}

/// Validated `[dicom]` settings.
#[derive(Debug, Clone)]
pub struct DicomSettings {
    pub folders: Vec<PathBuf>,
    pub index_path: PathBuf,
    /// Without a trailing `/`.
    pub dicomweb_url: Option<String>,
    pub dicomweb_timeout: Duration,
    pub budget: Duration,
    pub max_upload_bytes: usize,
    /// At least 1.
    pub workers: usize,
    /// The pending-digest worker (src/dicom/worker.rs); see RawDicomSettings.
    pub pending: PendingSettings,
    pub header: HeaderLimits,
    pub rescan_min_interval: Duration,
}

/// Validated `pending_*` keys of `[dicom]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSettings {
    /// `None`: the worker does not run.
    pub poll: Option<Duration>,
    pub retry_max: Duration,
    /// `None`: never give up.
    pub give_up_after: Option<Duration>,
    /// At least 1.
    pub batch: i64,
}

impl PendingSettings {
    fn from_raw(raw: &RawDicomSettings) -> Self {
        let poll = (raw.pending_poll_ms > 0).then(|| Duration::from_millis(raw.pending_poll_ms));
        PendingSettings {
            poll,
            retry_max: Duration::from_millis(raw.pending_retry_max_ms.max(raw.pending_poll_ms)),
            give_up_after: (raw.pending_give_up_after_s > 0)
                .then(|| Duration::from_secs(raw.pending_give_up_after_s)),
            batch: i64::try_from(raw.pending_batch.max(1)).unwrap_or(i64::MAX),
        }
    }
}

impl DicomSettings {
    /// Is any study source configured? Without one, events are not enriched.
    pub fn has_sources(&self) -> bool {
        !self.folders.is_empty() || self.dicomweb_url.is_some()
    }

    pub fn validate(raw: RawDicomSettings) -> Result<Self, ConfigError> {
        if let Some(url) = &raw.dicomweb_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "dicom.dicomweb_url",
                    reason: "must be an absolute http(s) URL".into(),
                });
            }
        }
        for f in &raw.folders.0 {
            if !Path::new(f).is_dir() {
                return Err(ConfigError::Invalid {
                    key: "dicom.folders",
                    reason: format!("{f} is not a folder"),
                });
            }
        }
        if raw.max_upload_bytes == 0 || raw.dicomweb_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "dicom.max_upload_bytes",
                reason: "max_upload_bytes and dicomweb_timeout_ms must be greater than 0".into(),
            });
        }
        if raw.max_header_bytes == 0 || raw.max_element_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "dicom.max_header_bytes",
                reason: "max_header_bytes and max_element_bytes must be greater than 0".into(),
            });
        }
        let pending = PendingSettings::from_raw(&raw);
        Ok(DicomSettings {
            pending,
            header: HeaderLimits {
                max_header_bytes: raw.max_header_bytes,
                max_element_bytes: raw.max_element_bytes,
            },
            rescan_min_interval: Duration::from_millis(raw.rescan_min_interval_ms),
            folders: raw.folders.0.iter().map(PathBuf::from).collect(),
            index_path: raw.index_path.into(),
            dicomweb_url: raw
                .dicomweb_url
                .map(|u| u.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
            dicomweb_timeout: Duration::from_millis(raw.dicomweb_timeout_ms),
            budget: Duration::from_millis(raw.budget_ms),
            max_upload_bytes: raw.max_upload_bytes,
            workers: if raw.workers == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                raw.workers
            },
        })
    }
}

impl Default for DicomSettings {
    fn default() -> Self {
        let raw = RawDicomSettings::default();
        DicomSettings {
            pending: PendingSettings::from_raw(&raw),
            header: HeaderLimits::default(),
            rescan_min_interval: Duration::from_millis(raw.rescan_min_interval_ms),
            folders: Vec::new(),
            index_path: raw.index_path.into(),
            dicomweb_url: None,
            dicomweb_timeout: Duration::from_millis(raw.dicomweb_timeout_ms),
            budget: Duration::from_millis(raw.budget_ms),
            max_upload_bytes: raw.max_upload_bytes,
            workers: 1,
        }
    }
}
