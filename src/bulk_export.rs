//! FHIR Bulk Data `$export` jobs (async pattern): each job streams the
//! stored AuditEvent bodies, in seq order and byte for byte, into one NDJSON
//! file under the configured directory, reading the ledger a page at a time.
//! The files are copies for the client, not the log: deleting a job (or its
//! expiry) removes them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use vellum_ledger::Ledger;

use crate::config::{BulkExportSettings, DatabaseUrl};

/// The one output file of a job.
pub const OUTPUT_FILE: &str = "AuditEvent.ndjson";
/// Entries read from the ledger per page.
const PAGE: i64 = 1000;
/// A finished job (and its file) is removed this long after it finished.
pub const KEEP_FINISHED: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum BulkExportError {
    #[error("{0} export jobs exist already (bulk_export.max_jobs); delete one or retry later")]
    TooMany(usize),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] vellum_ledger::store::StoreError),
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    Done,
    Failed(String),
}

/// One kick-off.
pub struct Job {
    pub id: String,
    /// The kick-off request URL, for the manifest.
    pub request: String,
    /// Only entries whose `meta.lastUpdated` is later than this.
    since: Option<OffsetDateTime>,
    /// The last entry in the export's snapshot (the head at kick-off).
    pub upto: i64,
    /// `meta.lastUpdated` of entry `upto`: nothing later is in the export.
    pub transaction_time: String,
    /// Entries read so far (seq of the last one read).
    read_upto: AtomicI64,
    /// Lines written so far.
    written: AtomicU64,
    cancelled: AtomicBool,
    state: Mutex<(JobState, Option<Instant>)>,
    dir: PathBuf,
}

impl Job {
    pub fn state(&self) -> JobState {
        self.state
            .lock()
            .map(|s| s.0.clone())
            .unwrap_or_else(|p| p.into_inner().0.clone())
    }

    fn finish(&self, state: JobState) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s = (state, Some(Instant::now()));
    }

    fn finished_at(&self) -> Option<Instant> {
        self.state.lock().map_or(None, |s| s.1)
    }

    /// Lines (resources) written so far.
    pub fn count(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// `X-Progress` text: how far through the snapshot the job is.
    pub fn progress(&self) -> String {
        let done = self.read_upto.load(Ordering::Relaxed);
        let pct = if self.upto == 0 {
            100
        } else {
            done.saturating_mul(100) / self.upto
        };
        format!("{pct}% ({done} of {} entries read)", self.upto)
    }

    /// The output file, once the job is done.
    pub fn output(&self) -> Option<PathBuf> {
        (self.state() == JobState::Done).then(|| self.dir.join(OUTPUT_FILE))
    }
}

/// The jobs of this process.
pub struct BulkExports {
    ledger: Ledger,
    dir: PathBuf,
    max_jobs: usize,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// The jobs directory: configured, or beside the SQLite file, or in the
/// system's temporary directory.
pub fn jobs_dir(settings: &BulkExportSettings, url: &DatabaseUrl) -> PathBuf {
    if let Some(d) = &settings.dir {
        return d.clone();
    }
    match url {
        DatabaseUrl::Sqlite(path) => {
            let mut p = path.clone().into_os_string();
            p.push(".bulk-export");
            PathBuf::from(p)
        }
        DatabaseUrl::Postgres(_) => std::env::temp_dir().join("vellum-bulk-export"),
    }
}

impl BulkExports {
    /// The jobs of a starting process; job directories a previous process
    /// left behind (named by job id) are removed.
    pub fn new(ledger: Ledger, dir: PathBuf, max_jobs: usize) -> Self {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let is_job = e
                    .file_name()
                    .to_str()
                    .is_some_and(|n| uuid::Uuid::parse_str(n).is_ok());
                if is_job && e.path().is_dir() {
                    remove_job_dir(&e.path());
                }
            }
        }
        BulkExports {
            ledger,
            dir,
            max_jobs,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a job exporting every entry up to the current head (those
    /// updated after `since`, when given).
    pub async fn kick_off(
        &self,
        request: String,
        since: Option<OffsetDateTime>,
    ) -> Result<Arc<Job>, BulkExportError> {
        self.expire();
        if self.jobs().len() >= self.max_jobs {
            return Err(BulkExportError::TooMany(self.max_jobs));
        }
        let head = self.ledger.head().await?;
        let transaction_time = match self.ledger.entries_after(head.seq - 1, 1).await?.pop() {
            Some(e) if e.seq == head.seq => e.last_updated,
            _ => vellum_ledger::stamp(OffsetDateTime::now_utc()),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.dir.join(&id);
        std::fs::create_dir_all(&dir).map_err(|source| BulkExportError::Io {
            path: dir.clone(),
            source,
        })?;
        let job = Arc::new(Job {
            id: id.clone(),
            request,
            since,
            upto: head.seq,
            transaction_time,
            read_upto: AtomicI64::new(0),
            written: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            state: Mutex::new((JobState::Running, None)),
            dir,
        });
        {
            let mut jobs = self.jobs();
            if jobs.len() >= self.max_jobs {
                let _ = std::fs::remove_dir_all(&job.dir);
                return Err(BulkExportError::TooMany(self.max_jobs));
            }
            jobs.insert(id, job.clone());
        }
        let (ledger, running) = (self.ledger.clone(), job.clone());
        tokio::spawn(async move {
            let state = match write_job(&ledger, &running).await {
                Ok(()) => JobState::Done,
                // Deleted while running: its directory is gone on purpose.
                Err(_) if running.cancelled.load(Ordering::Relaxed) => return,
                Err(e) => {
                    tracing::error!(job = %running.id, error = %e, "bulk export failed");
                    JobState::Failed("the export could not be written".into())
                }
            };
            running.finish(state);
        });
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.expire();
        self.jobs().get(id).cloned()
    }

    /// Cancels job `id` (stopping it if it runs) and removes its files;
    /// false when there is no such job.
    pub fn delete(&self, id: &str) -> bool {
        let Some(job) = self.jobs().remove(id) else {
            return false;
        };
        job.cancelled.store(true, Ordering::Relaxed);
        remove_job_dir(&job.dir);
        true
    }

    /// Removes finished jobs older than [`KEEP_FINISHED`].
    fn expire(&self) {
        let old: Vec<Arc<Job>> = {
            let mut jobs = self.jobs();
            let ids: Vec<String> = jobs
                .values()
                .filter(|j| {
                    j.finished_at()
                        .is_some_and(|t| t.elapsed() >= KEEP_FINISHED)
                })
                .map(|j| j.id.clone())
                .collect();
            ids.iter().filter_map(|id| jobs.remove(id)).collect()
        };
        for j in old {
            remove_job_dir(&j.dir);
        }
    }
}

fn remove_job_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "bulk export files not removed");
        }
    }
}

/// Streams the job's entries into its NDJSON file, one stored body per line.
async fn write_job(ledger: &Ledger, job: &Job) -> Result<(), BulkExportError> {
    let path = job.dir.join(OUTPUT_FILE);
    let io = |source| BulkExportError::Io {
        path: path.clone(),
        source,
    };
    let file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut out = tokio::io::BufWriter::new(file);
    let mut after = 0i64;
    while after < job.upto {
        if job.cancelled.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rows = ledger
            .entries_after(after, (job.upto - after).min(PAGE))
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for e in &rows {
            let newer = match (&job.since, vellum_ledger::parse_stamp(&e.last_updated)) {
                (Some(since), Some(t)) => t > *since,
                _ => true,
            };
            if !newer {
                continue;
            }
            out.write_all(e.body.as_bytes()).await.map_err(io)?;
            out.write_all(b"\n").await.map_err(io)?;
            job.written.fetch_add(1, Ordering::Relaxed);
        }
        job.read_upto.store(after, Ordering::Relaxed);
    }
    out.flush().await.map_err(io)?;
    out.into_inner().sync_all().await.map_err(io)?;
    Ok(())
}
