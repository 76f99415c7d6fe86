//! The reports' dataset, kept in memory and brought up to the ledger's head
//! before every report: only the summary rows appended since the last
//! refresh are read, so a report over a million events costs one pass over
//! memory instead of a million rows crossing from the database.
//!
//! Still no second source of truth: the dataset is derived from the stored
//! summary rows alone (themselves checked against the bodies by `vellum
//! verify`), holds no patient identifiers (the lists that show patients
//! read them from the store) and is rebuilt from the store at every start.

use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use vellum_ledger::store::summary::SummaryQuery;
use vellum_ledger::store::StoreError;
use vellum_ledger::Ledger;

use super::events::Dataset;

/// Entries whose summary rows are read per query while catching up: bounds
/// the rows held at once during the first load of a large store.
const CHUNK: i64 = 50_000;

/// Every AI event's summary, without patients, up to a recent head.
pub struct ReportCache {
    ledger: Ledger,
    /// How far `data` reaches (every entry with seq ≤ this is in it); the
    /// lock also makes refreshes take turns.
    upto: tokio::sync::Mutex<i64>,
    data: RwLock<Dataset>,
}

impl ReportCache {
    pub fn new(ledger: Ledger) -> Self {
        ReportCache {
            ledger,
            upto: tokio::sync::Mutex::new(0),
            data: RwLock::new(Dataset::default()),
        }
    }

    /// Adds the summary rows of every entry committed since the last
    /// refresh, up to the head as of this call.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let mut upto = self.upto.lock().await;
        let head = self.ledger.head().await?.seq;
        while *upto < head {
            let to = head.min(upto.saturating_add(CHUNK));
            let rows = self
                .ledger
                .summaries(&SummaryQuery {
                    seq_after: Some(*upto),
                    seq_upto: Some(to),
                    ..SummaryQuery::default()
                })
                .await?;
            // Applying is quick; the read above ran without the lock, so
            // reports computing meanwhile were not held up by the store.
            self.data
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(rows);
            *upto = to;
        }
        Ok(())
    }

    /// The dataset up to the head as of this call. Compute with it and drop
    /// it before the next `.await` (it blocks refreshes while held).
    pub async fn current(&self) -> Result<RwLockReadGuard<'_, Dataset>, StoreError> {
        self.refresh().await?;
        Ok(self.as_is())
    }

    /// The dataset as it is, without reading the store (a second look at
    /// what an earlier [`Self::current`] returned, plus any later refresh).
    pub fn as_is(&self) -> RwLockReadGuard<'_, Dataset> {
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries the dataset reaches (for tests and metrics).
    pub async fn upto(&self) -> i64 {
        *self.upto.lock().await
    }
}

/// Loads the dataset at start, then keeps it near the head every `every`,
/// so a report only reads what came in since the last tick. Failures are
/// logged (no content) and retried at the next tick.
pub async fn keep_warm(cache: std::sync::Arc<ReportCache>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = cache.refresh().await {
            tracing::warn!(error = %e, "report cache refresh failed");
        }
    }
}
