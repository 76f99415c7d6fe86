//! The persisted index of folder sources and the digest cache, one JSON
//! file (`dicom.index_path`): a pure cache, rebuilt from the sources when
//! it is missing or unreadable, so it may change freely (nothing in it is an
//! audit fact; the digests recorded in events are).
//!
//! * `files`: every file under the configured folders, keyed by path, with
//!   its size and modification time, its Study/Series/SOP Instance UIDs and,
//!   once hashed, its instance digest. An entry whose size or mtime no
//!   longer match the file is re-read: that is the cache key for folders
//!   (SOP Instance UID + source path + size + mtime).
//! * `remote`: instance digests fetched from DICOMweb servers, keyed by
//!   `<base URL>|<SOP Instance UID>`, with the response's size and ETag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: u64,
    pub study: String,
    pub series: String,
    pub sop: String,
    /// Hex instance digest, once hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why the file is not hashed (no pixel data, unreadable, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEntry {
    pub study: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub digest: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub files: BTreeMap<String, FileEntry>,
    #[serde(default)]
    pub remote: BTreeMap<String, RemoteEntry>,
}

impl IndexFile {
    /// Loads `path`; a missing, unreadable or older-version file is an
    /// empty index (it is only a cache).
    pub fn load(path: &Path) -> IndexFile {
        let parsed = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<IndexFile>(&b).ok());
        match parsed {
            Some(i) if i.version == VERSION => i,
            Some(_) | None => IndexFile {
                version: VERSION,
                ..IndexFile::default()
            },
        }
    }

    /// Writes atomically (temporary file + rename), so a crash never leaves
    /// a half-written index.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let tmp = tmp_path(path);
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    pub fn remote_key(base: &str, sop: &str) -> String {
        format!("{base}|{sop}")
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Size and mtime (ns) of a file, the folder cache key.
pub fn stamp(meta: &std::fs::Metadata) -> (u64, u64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    (meta.len(), mtime)
}

/// The index file shared by the sources of one server, with its path.
pub struct SharedIndex {
    path: PathBuf,
    state: std::sync::Mutex<IndexFile>,
}

impl SharedIndex {
    pub fn open(path: PathBuf) -> Self {
        let index = IndexFile::load(&path);
        SharedIndex {
            path,
            state: std::sync::Mutex::new(index),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, IndexFile> {
        // A panic while holding the lock leaves a usable cache.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn save(&self, index: &IndexFile) -> std::io::Result<()> {
        index.save(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
