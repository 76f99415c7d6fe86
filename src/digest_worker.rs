//! The pending-digest worker of `vellum serve` (zero2prod's
//! issue_delivery_worker pattern): every `pending_poll_ms` it reads the
//! outstanding digests from the database (the ledger's follow-ups: `_pixel-pending`
//! index rows without a follow-up), retries each study against the sources,
//! and appends the follow-up `pixel-digest` event through `Ledger::append`
//! under the idempotency key `pixel-digest:<event id>|<study uid>`.
//!
//! Nothing is kept only in memory: a crash or a restart loses at most the
//! back-off timers, and two instances on one database store each follow-up
//! once (the second append returns the first's entry). A study that stays
//! unavailable is retried with a doubling wait (up to `pending_retry_max_ms`)
//! and, when `pending_give_up_after_s` is set, gets a "gave up" follow-up
//! once the first event is that old; otherwise it stays pending.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::PendingSettings;
use crate::fhir::search_index::PIXEL_DIGEST_FOLLOWUP;
use vellum_ledger::store::followups::Pending as PendingDigest;
use vellum_ledger::store::StoreError;
use vellum_ledger::{parse_stamp, stamp, Ledger};

use crate::dicom::followup::{self, Computed};
use crate::dicom::service::DicomService;
use crate::intake::{Intake, IntakeError, Stored, Submission};

/// Upper bound of one study lookup by the worker (the request path's
/// `budget_ms` does not apply here; sources have their own timeouts).
const LOOKUP_CEILING: Duration = Duration::from_secs(600);

pub struct DigestWorker {
    ledger: Ledger,
    intake: Intake,
    service: Arc<DicomService>,
    settings: PendingSettings,
    poll: Duration,
    /// Back-off per (seq, study uid): failed attempts and the next due time.
    backoff: HashMap<(i64, String), (u32, Instant)>,
    /// Every outstanding digest has seq >= this (see `pass`).
    low_water: i64,
}

/// What one attempt at one pending study did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Appended,
    StillPending,
    NotDue,
}

impl DigestWorker {
    /// `None` when the worker is off (`pending_poll_ms = 0`) or no source
    /// is configured (nothing could ever complete).
    /// `None` when there is nothing to do: no source, or polling off.
    pub fn new(intake: Intake, service: Arc<DicomService>) -> Option<Self> {
        let ledger = intake.ledger().clone();
        let settings = service.settings().pending;
        let poll = settings.poll?;
        if !service.has_sources() {
            return None;
        }
        Some(DigestWorker {
            ledger,
            intake,
            service,
            settings,
            poll,
            backoff: HashMap::new(),
            low_water: 0,
        })
    }

    /// Polls until `stop` turns true; the attempt in flight finishes first.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.pass(&stop).await {
                tracing::warn!(error = %e, "pixel digest worker: reading pending digests failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One walk over every outstanding digest. Returns how many follow-ups
    /// were appended.
    pub async fn pass(&mut self, stop: &watch::Receiver<bool>) -> Result<usize, StoreError> {
        let mut seen: HashSet<(i64, String)> = HashSet::new();
        let mut outstanding_min: Option<i64> = None;
        let mut max_seen: Option<i64> = None;
        let mut appended = 0;
        let mut from = self.low_water;
        loop {
            let page = self
                .ledger
                .pending_followups(&PIXEL_DIGEST_FOLLOWUP, from, self.settings.batch)
                .await?;
            let mut new_rows = 0;
            for p in &page {
                if *stop.borrow() {
                    return Ok(appended);
                }
                if !seen.insert((p.seq, p.value.clone())) {
                    continue;
                }
                new_rows += 1;
                max_seen = Some(max_seen.map_or(p.seq, |m| m.max(p.seq)));
                match self.attempt(p).await {
                    Attempt::Appended => appended += 1,
                    Attempt::StillPending | Attempt::NotDue => {
                        outstanding_min = Some(outstanding_min.map_or(p.seq, |m| m.min(p.seq)));
                    }
                }
            }
            let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= self.settings.batch;
            match page.last() {
                // A full page may continue at the same seq (several studies
                // of one event): `seen` skips what this pass already did.
                Some(last) if full && new_rows > 0 => from = last.seq,
                _ => break,
            }
        }
        // Entries commit in seq order, so a digest this pass did not see has
        // a higher seq than every one it saw.
        self.low_water = match (outstanding_min, max_seen) {
            (Some(m), _) => m,
            (None, Some(m)) => m + 1,
            (None, None) => self.low_water,
        };
        self.backoff.retain(|k, _| seen.contains(k));
        Ok(appended)
    }

    async fn attempt(&mut self, p: &PendingDigest) -> Attempt {
        let key = (p.seq, p.value.clone());
        if let Some((_, due)) = self.backoff.get(&key) {
            if Instant::now() < *due {
                return Attempt::NotDue;
            }
        }
        let computed = match self.compute(&p.value).await {
            Ok(c) => c,
            Err(why) if self.too_old(p) => Computed::GaveUp(why),
            Err(_) => {
                self.back_off(key);
                return Attempt::StillPending;
            }
        };
        match self.append(p, &computed).await {
            Ok(()) => {
                self.backoff.remove(&key);
                Attempt::Appended
            }
            Err(e) => {
                tracing::warn!(seq = p.seq, error = %e, "pixel digest follow-up not appended; retrying later");
                self.back_off(key);
                Attempt::StillPending
            }
        }
    }

    async fn compute(&self, study_uid: &str) -> Result<Computed, String> {
        match tokio::time::timeout(LOOKUP_CEILING, self.service.study(study_uid)).await {
            Ok(Ok(Some((found, _)))) if found.digest.instances > 0 => Ok(Computed::Digest {
                base64: found.digest.base64(),
                instances: found.digest.instances,
            }),
            Ok(Ok(Some(_))) => Err("the study has no instance with pixel data".into()),
            Ok(Ok(None)) => Err("study not found in the configured sources".into()),
            Ok(Err(e)) => Err(format!("study source failed: {e}")),
            Err(_) => Err(format!(
                "digest not computed within {} s",
                LOOKUP_CEILING.as_secs()
            )),
        }
    }

    fn too_old(&self, p: &PendingDigest) -> bool {
        let (Some(limit), Some(stored)) =
            (self.settings.give_up_after, parse_stamp(&p.last_updated))
        else {
            return false;
        };
        let age = OffsetDateTime::now_utc() - stored;
        age >= time::Duration::try_from(limit).unwrap_or(time::Duration::MAX)
    }

    fn back_off(&mut self, key: (i64, String)) {
        let entry = self.backoff.entry(key).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        let wait = self
            .poll
            .saturating_mul(1u32.checked_shl(entry.0.min(20)).unwrap_or(u32::MAX))
            .min(self.settings.retry_max);
        entry.1 = Instant::now() + wait;
    }

    async fn append(&self, p: &PendingDigest, computed: &Computed) -> Result<(), WorkerError> {
        let original = self
            .ledger
            .read(&p.event_id)
            .await?
            .ok_or(WorkerError::EventGone)?;
        let recorded = stamp(OffsetDateTime::now_utc());
        let (body, mismatch) =
            followup::build(&original.body, &p.event_id, &p.value, computed, &recorded)?;
        // The follow-up carries the digest the worker computed: no
        // enrichment; every check, as for a client's event.
        let submission = Submission::fhir(body)
            .with_key(PIXEL_DIGEST_FOLLOWUP.key(&p.event_id, &p.value))
            .without_enrichment();
        let committed = match self.intake.submit(submission).await {
            Ok(Stored::Committed(c)) => c,
            Ok(Stored::Existing(_)) => return Ok(()),
            Err(IntakeError::Rejected(r)) => {
                let at: Vec<String> = r
                    .issues()
                    .iter()
                    .filter_map(|i| i.expression.clone())
                    .collect();
                return Err(WorkerError::Invalid(at.join(", ")));
            }
            Err(IntakeError::Append(e)) => return Err(e.into()),
            Err(e) => return Err(WorkerError::Intake(e.to_string())),
        };
        if committed.created {
            if mismatch {
                crate::dicom::enrich::count_mismatch();
            }
            tracing::info!(
                seq = committed.receipt.seq,
                of_seq = p.seq,
                "pixel digest follow-up appended"
            );
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("append: {0}")]
    Append(#[from] vellum_ledger::AppendError),
    #[error("the pending event is no longer readable")]
    EventGone,
    #[error("{0}")]
    Build(#[from] followup::FollowupError),
    #[error("the follow-up event failed validation at {0}")]
    Invalid(String),
    #[error("intake: {0}")]
    Intake(String),
}
