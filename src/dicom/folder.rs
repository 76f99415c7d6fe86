//! Folder-tree study source: every file under the configured folders is
//! indexed by Study/Series/SOP Instance UID (header only), the index is
//! persisted (`index.rs`) and refreshed when files change (size, mtime), and
//! instance digests are cached in it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::digest::{hash_files, read_uids, Outcome};
use super::index::{stamp, FileEntry, IndexFile, SharedIndex};
use super::report::collect_files;
use super::study::{study_digest, StudyDigest};

/// How long a full rescan is trusted for studies already in the index.
const RESCAN_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("cannot scan {0}")]
    Scan(String),
    #[error("cannot write the index {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a source found for a study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyFound {
    pub digest: StudyDigest,
    /// Instances of the study that were not hashed (no pixel data, …).
    pub skipped: usize,
    /// Instance digests served from the cache.
    pub cached: usize,
}

pub struct FolderSource {
    roots: Vec<PathBuf>,
    index: Arc<SharedIndex>,
    workers: usize,
    scanned: Mutex<Option<Instant>>,
}

impl FolderSource {
    pub fn open(roots: Vec<PathBuf>, index: Arc<SharedIndex>, workers: usize) -> Self {
        FolderSource {
            roots,
            index,
            workers,
            scanned: Mutex::new(None),
        }
    }

    fn scanned(&self) -> MutexGuard<'_, Option<Instant>> {
        self.scanned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rescans every folder: new and changed files are re-read (header
    /// only), vanished ones dropped. Returns how many entries changed.
    pub fn refresh(&self) -> Result<usize, FolderError> {
        let files = collect_files(&self.roots).map_err(|e| FolderError::Scan(e.to_string()))?;
        let mut index = self.index.lock();
        let mut changed = 0;
        let mut seen = std::collections::BTreeSet::new();
        for path in files {
            let key = path.display().to_string();
            seen.insert(key.clone());
            if refresh_entry(&mut index, &key, &path) {
                changed += 1;
            }
        }
        let before = index.files.len();
        index.files.retain(|k, _| seen.contains(k));
        changed += before - index.files.len();
        *self.scanned() = Some(Instant::now());
        if changed > 0 {
            self.save(&index)?;
        }
        Ok(changed)
    }

    /// The study's digest from the files in the folders, hashing only what
    /// the cache does not hold; `None` when no file belongs to the study.
    /// Blocking: call from a blocking thread.
    pub fn study(&self, study_uid: &str) -> Result<Option<StudyFound>, FolderError> {
        if study_uid.is_empty() {
            return Ok(None);
        }
        let stale = {
            let known = self
                .index
                .lock()
                .files
                .values()
                .any(|e| e.study == study_uid);
            !known || self.scanned().is_none_or(|t| t.elapsed() > RESCAN_AFTER)
        };
        if stale {
            self.refresh()?;
        }
        // Re-check the study's own files (a changed file loses its digest).
        let mut st = self.index.lock();
        let members: Vec<String> = st
            .files
            .iter()
            .filter(|(_, e)| e.study == study_uid)
            .map(|(k, _)| k.clone())
            .collect();
        if members.is_empty() {
            return Ok(None);
        }
        let mut dirty = false;
        for key in &members {
            dirty |= refresh_entry(&mut st, key, Path::new(key));
        }
        let todo: Vec<PathBuf> = members
            .iter()
            .filter(|k| {
                st.files
                    .get(*k)
                    .is_some_and(|e| e.digest.is_none() && e.skip.is_none())
            })
            .map(PathBuf::from)
            .collect();
        let cached = members.len() - todo.len();
        if !todo.is_empty() {
            // Hash without holding the lock over the index.
            drop(st);
            let results = hash_files(&todo, self.workers);
            st = self.index.lock();
            for (path, r) in todo.iter().zip(results) {
                let Some(e) = st.files.get_mut(&path.display().to_string()) else {
                    continue;
                };
                match r {
                    Ok(Outcome::Hashed(d)) => e.digest = Some(d.hex()),
                    Ok(Outcome::Skipped(why)) => e.skip = Some(why.to_string()),
                    Err(err) => e.skip = Some(err.to_string()),
                }
            }
            dirty = true;
        }
        let mut hashed = Vec::new();
        let mut skipped = 0;
        for key in &members {
            let Some(e) = st.files.get(key) else {
                continue;
            };
            match e.digest.as_deref().and_then(parse_hex) {
                Some(d) if e.study == study_uid => hashed.push((e.sop.clone(), d)),
                _ => skipped += 1,
            }
        }
        if dirty {
            self.save(&st)?;
        }
        if hashed.is_empty() && skipped == 0 {
            return Ok(None);
        }
        let digest = study_digest(study_uid, hashed.iter().map(|(s, d)| (s.as_str(), *d)));
        Ok(Some(StudyFound {
            digest,
            skipped,
            cached: cached.min(members.len()),
        }))
    }

    fn save(&self, index: &IndexFile) -> Result<(), FolderError> {
        self.index.save(index).map_err(|source| FolderError::Save {
            path: self.index.path().to_path_buf(),
            source,
        })
    }
}

/// Brings one entry up to date with the file; true when it changed.
fn refresh_entry(index: &mut IndexFile, key: &str, path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return index.files.remove(key).is_some();
    };
    let (size, mtime_ns) = stamp(&meta);
    if index
        .files
        .get(key)
        .is_some_and(|e| e.size == size && e.mtime_ns == mtime_ns)
    {
        return false;
    }
    let entry = match read_uids(path) {
        Ok(u) => FileEntry {
            size,
            mtime_ns,
            study: u.study,
            series: u.series,
            sop: u.sop,
            digest: None,
            skip: None,
        },
        Err(why) => FileEntry {
            size,
            mtime_ns,
            study: String::new(),
            series: String::new(),
            sop: String::new(),
            digest: None,
            skip: Some(why.to_string()),
        },
    };
    index.files.insert(key.to_string(), entry);
    true
}

pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}
