//! The evidence section: the key that signs checkpoints and when
//! checkpoints are made — `signing_key_file`, `checkpoint_origin`,
//! `checkpoint_every_entries`, `checkpoint_every_seconds` (top level of the
//! file, `VELLUM_<KEY>`).

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;

/// The evidence keys as written.
#[derive(Debug, Clone)]
pub struct RawEvidence {
    /// The C2SP signer key file (`vellum keygen`). Unset on SQLite: a key is
    /// created beside the database file on first start.
    pub signing_key_file: Option<String>,
    /// The log's name in checkpoints, for a key created on first start.
    pub checkpoint_origin: String,
    /// Make a checkpoint once this many entries were appended since the last.
    pub checkpoint_every_entries: u64,
    /// …or once this many seconds passed with new entries. 0 turns the timer off.
    pub checkpoint_every_seconds: u64,
}

impl Default for RawEvidence {
    fn default() -> Self {
        RawEvidence {
            signing_key_file: None,
            checkpoint_origin: "vellum.local/log".into(),
            checkpoint_every_entries: 10_000,
            checkpoint_every_seconds: 60,
        }
    }
}

/// Validated evidence settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceSettings {
    pub signing_key_file: Option<PathBuf>,
    pub origin: String,
    pub every_entries: u64,
    /// `None`: no timer.
    pub every: Option<Duration>,
}

impl EvidenceSettings {
    pub fn validate(raw: RawEvidence) -> Result<Self, ConfigError> {
        let o = &raw.checkpoint_origin;
        if o.is_empty() || o.contains('+') || o.chars().any(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                key: "checkpoint_origin",
                reason: "must be non-empty, without '+' or spaces (e.g. example.org/vellum)".into(),
            });
        }
        super::positive(
            "checkpoint_every_entries",
            usize::try_from(raw.checkpoint_every_entries).unwrap_or(usize::MAX),
        )?;
        Ok(EvidenceSettings {
            signing_key_file: raw
                .signing_key_file
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            origin: raw.checkpoint_origin,
            every_entries: raw.checkpoint_every_entries,
            every: (raw.checkpoint_every_seconds > 0)
                .then(|| Duration::from_secs(raw.checkpoint_every_seconds)),
        })
    }
}
