//! The evidence section: the key that signs checkpoints and when
//! checkpoints are made — `signing_key_file`, `checkpoint_origin`,
//! `checkpoint_every_entries`, `checkpoint_every_seconds` — and the RFC 3161
//! time-stamping authorities that seal each checkpoint — `tsa_urls`,
//! `tsa_ca_file` (all at the top level of the file, `VELLUM_<KEY>`).

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

    // Time seals (RFC 3161).
    /// TSAs every new checkpoint is sent to (http:// or https:// URLs);
    /// empty: no time seals.
    pub tsa_urls: super::PathList,
    /// PEM certificates the TSAs' tokens must chain to (required with
    /// `tsa_urls`).
    pub tsa_ca_file: Option<String>,
}

impl Default for RawEvidence {
    fn default() -> Self {
        RawEvidence {
            signing_key_file: None,
            checkpoint_origin: "vellum.local/log".into(),
            checkpoint_every_entries: 10_000,
            checkpoint_every_seconds: 60,
            tsa_urls: super::PathList::default(),
            tsa_ca_file: None,
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
    /// Time-stamping authorities sealing each checkpoint (may be empty).
    pub tsa_urls: Vec<String>,
    /// Their trust anchors (PEM); set whenever `tsa_urls` is not empty.
    pub tsa_ca_file: Option<PathBuf>,
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
        for u in &raw.tsa_urls.0 {
            let rest = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(ConfigError::Invalid {
                    key: "tsa_urls",
                    reason: "each must be an http:// or https:// URL".into(),
                });
            }
        }
        let tsa_ca_file = raw.tsa_ca_file.filter(|s| !s.is_empty()).map(PathBuf::from);
        if !raw.tsa_urls.0.is_empty() && tsa_ca_file.is_none() {
            return Err(ConfigError::Invalid {
                key: "tsa_ca_file",
                reason: "is required with tsa_urls: tokens are verified before they are stored"
                    .into(),
            });
        }
        Ok(EvidenceSettings {
            signing_key_file: raw
                .signing_key_file
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            origin: raw.checkpoint_origin,
            every_entries: raw.checkpoint_every_entries,
            every: (raw.checkpoint_every_seconds > 0)
                .then(|| Duration::from_secs(raw.checkpoint_every_seconds)),
            tsa_urls: raw.tsa_urls.0,
            tsa_ca_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_tsa(urls: &[&str], ca: Option<&str>) -> Result<EvidenceSettings, ConfigError> {
        EvidenceSettings::validate(RawEvidence {
            tsa_urls: super::super::PathList(urls.iter().map(|u| u.to_string()).collect()),
            tsa_ca_file: ca.map(str::to_string),
            ..RawEvidence::default()
        })
    }

    #[test]
    fn time_seals_are_off_by_default_and_need_http_urls_and_a_ca() {
        let d = EvidenceSettings::validate(RawEvidence::default()).unwrap();
        assert!(d.tsa_urls.is_empty() && d.tsa_ca_file.is_none());
        let ok = with_tsa(
            &["https://tsa.example/ts", "http://10.0.0.1:318"],
            Some("ca.pem"),
        )
        .unwrap();
        assert_eq!(ok.tsa_urls.len(), 2);
        assert_eq!(ok.tsa_ca_file, Some(PathBuf::from("ca.pem")));
        for bad in ["ftp://tsa.example", "tsa.example", "https://", "https:///x"] {
            assert!(with_tsa(&[bad], Some("ca.pem")).is_err(), "{bad}");
        }
        let e = with_tsa(&["https://tsa.example"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tsa_ca_file"), "{e}");
    }
}
