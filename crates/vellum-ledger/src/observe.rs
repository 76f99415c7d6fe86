//! What the single writer reports about its work, for whoever keeps
//! metrics (the ledger knows nothing of how they are exposed).

use std::time::Duration;

/// Told about every batch the writer commits or fails to commit. Called on
/// the writer task: implementations must be quick and must not block.
pub trait WriterObserver: Send + Sync + 'static {
    /// `events` drafts committed in one transaction that took `took`.
    fn batch_committed(&self, _events: usize, _took: Duration) {}
    /// A batch of `events` drafts could not be committed.
    fn batch_failed(&self, _events: usize) {}
}

/// Observes nothing.
pub struct NoObserver;

impl WriterObserver for NoObserver {}
