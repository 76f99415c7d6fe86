//! The single writer's batching: `batch_max_events`, `batch_max_wait_us`,
//! `writer_queue`.
//!
//! [`WriterSettings`] is self-contained (it uses nothing else from `config`)
//! so it can move with the ledger.

use std::time::Duration;

use super::ConfigError;

pub use vellum_ledger::WriterSettings;

/// The writer keys as written (top level of the file, `VELLUM_<KEY>`).
#[derive(Debug, Clone)]
pub struct RawWriter {
    /// Most events committed in one transaction.
    pub batch_max_events: usize,
    /// How long the writer waits for more events before committing a batch, µs.
    /// 0 commits as soon as the previous commit is done (batches still form
    /// naturally while a commit is in flight).
    pub batch_max_wait_us: u64,
    /// Queue of appends waiting for the writer; full means 503.
    pub writer_queue: usize,
}

impl Default for RawWriter {
    fn default() -> Self {
        let d = WriterSettings::default();
        RawWriter {
            batch_max_events: d.batch_max_events,
            batch_max_wait_us: u64::try_from(d.batch_max_wait.as_micros()).unwrap_or(u64::MAX),
            writer_queue: d.queue,
        }
    }
}

/// Longest `batch_max_wait_us`: every request waits this long.
const MAX_WAIT_US: u64 = 1_000_000;

impl RawWriter {
    pub fn validate(self) -> Result<WriterSettings, ConfigError> {
        super::positive("batch_max_events", self.batch_max_events)?;
        super::positive("writer_queue", self.writer_queue)?;
        if self.batch_max_wait_us > MAX_WAIT_US {
            return Err(ConfigError::Invalid {
                key: "batch_max_wait_us",
                reason: "must be at most 1000000 (1 s): every request waits this long".into(),
            });
        }
        Ok(WriterSettings {
            batch_max_events: self.batch_max_events,
            batch_max_wait: Duration::from_micros(self.batch_max_wait_us),
            queue: self.writer_queue,
        })
    }
}
