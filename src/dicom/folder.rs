//! Folder-tree study source: every file under the configured folders is
//! indexed by Study/Series/SOP Instance UID (header only), the index is
//! persisted (`index.rs`) and refreshed when files change (size, mtime), and
//! instance digests are cached in it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::digest::{hash_files, read_uids, Outcome};
use super::index::{stamp, FileEntry, IndexFile, SharedIndex};
use super::study::{study_digest, StudyDigest};
use crate::config::HeaderLimits;

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

/// How the folder source reads and rescans its trees.
#[derive(Debug, Clone, Copy)]
pub struct FolderOptions {
    /// Files hashed at once.
    pub workers: usize,
    pub header: HeaderLimits,
    /// Least time between two full rescans (`dicom.rescan_min_interval_ms`):
    /// study UIDs found in no file cannot make the server walk the trees
    /// once per request.
    pub rescan_min_interval: Duration,
}

pub struct FolderSource {
    roots: Vec<PathBuf>,
    index: Arc<SharedIndex>,
    options: FolderOptions,
    /// When the last full rescan started.
    scanned: Mutex<Option<Instant>>,
    /// Held for the whole of a rescan (not the index lock): one rescan at a
    /// time, and requests that arrive during it reuse its result.
    scanning: Mutex<()>,
    scans: AtomicU64,
}

impl FolderSource {
    pub fn open(roots: Vec<PathBuf>, index: Arc<SharedIndex>, options: FolderOptions) -> Self {
        FolderSource {
            roots,
            index,
            options,
            scanned: Mutex::new(None),
            scanning: Mutex::new(()),
            scans: AtomicU64::new(0),
        }
    }

    fn scanned(&self) -> MutexGuard<'_, Option<Instant>> {
        self.scanned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Full rescans run so far.
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// Rescans every folder: new and changed files are re-read (header
    /// only), vanished ones dropped. Returns how many entries changed.
    /// The walk, the `stat`s and the header reads run without the index
    /// lock; only applying the changes holds it.
    pub fn refresh(&self) -> Result<usize, FolderError> {
        let _one_at_a_time = self.scanning.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh_locked()
    }

    fn refresh_locked(&self) -> Result<usize, FolderError> {
        *self.scanned() = Some(Instant::now());
        self.scans.fetch_add(1, Ordering::Relaxed);
        let files = scan_roots(&self.roots);
        let known: std::collections::HashMap<String, (u64, u64)> = self
            .index
            .lock()
            .files
            .iter()
            .map(|(k, e)| (k.clone(), (e.size, e.mtime_ns)))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut updates = Vec::new();
        for path in files {
            let key = path.display().to_string();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let stamp = stamp(&meta);
            seen.insert(key.clone());
            if known.get(&key) != Some(&stamp) {
                updates.push((key, read_entry(&path, stamp, &self.options.header)));
            }
        }
        let mut index = self.index.lock();
        let mut changed = 0;
        for (key, entry) in updates {
            // A request may have refreshed the entry meanwhile (and hashed
            // it): keep that one.
            let same = index
                .files
                .get(&key)
                .is_some_and(|e| (e.size, e.mtime_ns) == (entry.size, entry.mtime_ns));
            if !same {
                index.files.insert(key, entry);
                changed += 1;
            }
        }
        let before = index.files.len();
        index.files.retain(|k, _| seen.contains(k));
        changed += before - index.files.len();
        if changed > 0 {
            self.save(&index)?;
        }
        Ok(changed)
    }

    /// Rescans unless one ran less than `rescan_min_interval` ago (or, for
    /// a study already indexed, less than a minute ago). Waits for a rescan
    /// already under way instead of starting another.
    fn refresh_if_stale(&self, known: bool) -> Result<(), FolderError> {
        let stale = |last: Option<Instant>| match last {
            None => true,
            Some(t) => {
                let age = t.elapsed();
                age >= self.options.rescan_min_interval && (!known || age > RESCAN_AFTER)
            }
        };
        if !stale(*self.scanned()) {
            return Ok(());
        }
        let _one_at_a_time = self.scanning.lock().unwrap_or_else(|p| p.into_inner());
        if !stale(*self.scanned()) {
            return Ok(()); // another request just rescanned
        }
        self.refresh_locked().map(drop)
    }

    /// The study's digest from the files in the folders, hashing only what
    /// the cache does not hold; `None` when no file belongs to the study.
    /// Blocking: call from a blocking thread.
    pub fn study(&self, study_uid: &str) -> Result<Option<StudyFound>, FolderError> {
        if study_uid.is_empty() {
            return Ok(None);
        }
        let known = self
            .index
            .lock()
            .files
            .values()
            .any(|e| e.study == study_uid);
        self.refresh_if_stale(known)?;
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
            dirty |= refresh_entry(&mut st, key, Path::new(key), &self.options.header);
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
            let results = hash_files(&todo, self.options.workers, &self.options.header);
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
fn refresh_entry(index: &mut IndexFile, key: &str, path: &Path, limits: &HeaderLimits) -> bool {
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
    index
        .files
        .insert(key.to_string(), read_entry(path, (size, mtime_ns), limits));
    true
}

/// A fresh index entry for the file (its header UIDs, or why not).
fn read_entry(path: &Path, (size, mtime_ns): (u64, u64), limits: &HeaderLimits) -> FileEntry {
    match read_uids(path, limits) {
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
    }
}

/// Every regular file under the source folders. A symbolic link is followed
/// only when its target lies inside the same root (a link must not expose
/// files outside the configured folders), and a directory that cannot be
/// read is skipped — counted and logged without its path, which may name a
/// patient — rather than aborting the scan. Iterative: no depth limit on
/// the stack.
fn scan_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut unreadable = 0usize;
    let mut outside = 0usize;
    for root in roots {
        let Ok(canonical_root) = std::fs::canonicalize(root) else {
            unreadable += 1;
            continue;
        };
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(read) = std::fs::read_dir(&dir) else {
                unreadable += 1;
                continue;
            };
            let mut entries: Vec<_> = read.filter_map(Result::ok).collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let Ok(ft) = e.file_type() else {
                    unreadable += 1;
                    continue;
                };
                let path = e.path();
                if ft.is_dir() {
                    dirs.push(path);
                } else if ft.is_file() {
                    out.push(path);
                } else if ft.is_symlink() {
                    match std::fs::canonicalize(&path) {
                        Ok(target) if target.starts_with(&canonical_root) && target.is_file() => {
                            out.push(path)
                        }
                        Ok(_) => outside += 1,
                        Err(_) => unreadable += 1,
                    }
                }
            }
        }
    }
    if unreadable > 0 || outside > 0 {
        tracing::warn!(
            unreadable,
            links_outside_root = outside,
            "dicom folder scan skipped entries"
        );
    }
    out
}

pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    #[test]
    fn links_are_followed_only_inside_the_root() {
        let outside = tempfile::tempdir().expect("tempdir");
        let secret = outside.path().join("secret.dcm");
        std::fs::write(&secret, b"not for the source").expect("write");
        let root = tempfile::tempdir().expect("tempdir");
        let sub = root.path().join("a/b");
        std::fs::create_dir_all(&sub).expect("mkdir");
        let inside = sub.join("img.dcm");
        std::fs::write(&inside, b"x").expect("write");
        std::os::unix::fs::symlink(&secret, root.path().join("escape.dcm")).expect("link");
        std::os::unix::fs::symlink(&inside, root.path().join("alias.dcm")).expect("link");
        std::os::unix::fs::symlink(root.path().join("gone"), root.path().join("dangling.dcm"))
            .expect("link");
        let found = scan_roots(&[root.path().to_path_buf()]);
        let names: Vec<String> = found
            .iter()
            .map(|p| {
                p.strip_prefix(root.path())
                    .unwrap_or(p)
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, vec!["alias.dcm", "a/b/img.dcm"]);
        // A root that does not exist is skipped, not an error.
        assert!(scan_roots(&[root.path().join("missing")]).is_empty());
    }
}

#[cfg(test)]
mod rescan_tests {
    use super::*;

    const MR: &str = "1.2.826.0.1.3680043.8.498.7700.2";
    const CT: &str = "1.2.826.0.1.3680043.8.498.7700.1";

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/dicom")
            .join(rel)
    }

    fn source(root: &Path, index: &Path, interval: Duration) -> FolderSource {
        FolderSource::open(
            vec![root.to_path_buf()],
            Arc::new(SharedIndex::open(index.to_path_buf())),
            FolderOptions {
                workers: 1,
                header: HeaderLimits::default(),
                rescan_min_interval: interval,
            },
        )
    }

    #[test]
    fn unknown_study_uids_rescan_at_most_once_per_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::copy(fixture("mr/odd-length-3x3.dcm"), root.join("a.dcm")).expect("copy");
        let src = source(
            &root,
            &dir.path().join("index.json"),
            Duration::from_secs(3600),
        );
        assert!(src.study(MR).expect("study").is_some());
        assert_eq!(src.scans(), 1);
        // A flood of UIDs no file has, from several threads at once: no
        // further walk of the tree within the interval.
        std::thread::scope(|s| {
            for t in 0..4 {
                let src = &src;
                s.spawn(move || {
                    for i in 0..50 {
                        let uid = format!("1.2.3.{t}.{i}");
                        assert!(src.study(&uid).expect("lookup").is_none());
                    }
                });
            }
        });
        assert_eq!(src.scans(), 1);
        // The price: a study written meanwhile is found at the next rescan
        // (the pending-digest worker retries), not at once.
        std::fs::copy(fixture("ct/explicit-le.dcm"), root.join("b.dcm")).expect("copy");
        assert!(src.study(CT).expect("study").is_none());
        src.refresh().expect("refresh");
        assert!(src.study(CT).expect("study").is_some());
    }

    #[test]
    fn with_no_interval_each_unknown_uid_rescans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir");
        let src = source(&root, &dir.path().join("index.json"), Duration::ZERO);
        for i in 0..3 {
            assert!(src.study(&format!("1.2.3.{i}")).expect("lookup").is_none());
        }
        assert_eq!(src.scans(), 3);
        std::fs::copy(fixture("ct/explicit-le.dcm"), root.join("b.dcm")).expect("copy");
        assert!(src.study(CT).expect("study").is_some());
    }
}
