//! The evidence section: the key that signs checkpoints and when
//! checkpoints are made — `signing_key_file`, `checkpoint_origin`,
//! `checkpoint_every_entries`, `checkpoint_every_seconds`, and the RFC 3161
//! time-stamping authorities that seal each checkpoint, `tsa_urls`,
//! `tsa_ca_file` (top level of the file, `VELLUM_<KEY>`); `[evidence]`,
//! where new checkpoints are published (`VELLUM_EVIDENCE_*`); and
//! `[witness]`, the witnesses (`VELLUM_WITNESS_*`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vellum_ledger::cosignature::CosignerVerifier;
use vellum_ledger::note::NoteVerifier;

use super::{ConfigError, PathList, Secret};

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

/// `[evidence]`: where each new checkpoint is published outside the
/// database (env `VELLUM_EVIDENCE_*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPublish {
    /// A directory: each new checkpoint is written to `<size>` (whole, then
    /// renamed) and `latest`.
    pub checkpoint_dir: Option<String>,
    /// A program and its arguments, run without a shell with the signed
    /// checkpoint on stdin: a TOML array, or one string split at spaces.
    pub checkpoint_command: Option<CommandLine>,
    /// How long the command may run before it is killed, ms.
    pub checkpoint_command_timeout_ms: u64,
}

impl Default for RawPublish {
    fn default() -> Self {
        RawPublish {
            checkpoint_dir: None,
            checkpoint_command: None,
            checkpoint_command_timeout_ms: 10_000,
        }
    }
}

/// A program and its arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "ArgsOrLine")]
pub struct CommandLine(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum ArgsOrLine {
    Line(String),
    Args(Vec<String>),
}

impl From<ArgsOrLine> for CommandLine {
    fn from(v: ArgsOrLine) -> Self {
        CommandLine(match v {
            ArgsOrLine::Line(s) => s.split_whitespace().map(str::to_string).collect(),
            ArgsOrLine::Args(a) => a,
        })
    }
}

/// Validated `[evidence]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    pub checkpoint_dir: Option<PathBuf>,
    /// Program first; never empty when set.
    pub checkpoint_command: Option<Vec<String>>,
    pub command_timeout: Duration,
}

impl PublishSettings {
    pub fn validate(raw: RawPublish) -> Result<Self, ConfigError> {
        super::positive(
            "evidence.checkpoint_command_timeout_ms",
            usize::try_from(raw.checkpoint_command_timeout_ms).unwrap_or(usize::MAX),
        )?;
        Ok(PublishSettings {
            checkpoint_dir: raw
                .checkpoint_dir
                .filter(|d| !d.trim().is_empty())
                .map(PathBuf::from),
            checkpoint_command: raw
                .checkpoint_command
                .map(|c| c.0)
                .filter(|c| !c.is_empty()),
            command_timeout: Duration::from_millis(raw.checkpoint_command_timeout_ms),
        })
    }

    pub fn is_on(&self) -> bool {
        self.checkpoint_dir.is_some() || self.checkpoint_command.is_some()
    }
}

/// `[witness]`: vellum as a witness of other logs, and the witnesses this
/// log sends its checkpoints to (env `VELLUM_WITNESS_*`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawWitness {
    /// This vellum's witness key (`vellum keygen --witness`); unset: it
    /// witnesses no log.
    pub key_file: Option<String>,
    /// The vkeys of the logs it witnesses (the origin is the vkey's name).
    pub logs: PathList,
    /// The witnesses this log sends its checkpoints to: their submission
    /// URL prefixes (`…/add-checkpoint` is appended).
    pub urls: PathList,
    /// Their cosigner vkeys, in the order of `urls`.
    pub vkeys: PathList,
    /// Bearer tokens, in the order of `urls` (empty: none sent).
    pub tokens: PathList,
    /// Timeout of one request to a witness, ms (0: 10 s).
    pub timeout_ms: u64,
}

/// One witness this log sends checkpoints to.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// The `add-checkpoint` URL.
    pub url: String,
    pub vkey: CosignerVerifier,
    pub token: Option<Secret<String>>,
}

/// Validated `[witness]` settings.
#[derive(Debug, Clone)]
pub struct WitnessSettings {
    pub key_file: Option<PathBuf>,
    pub logs: Vec<NoteVerifier>,
    pub targets: Vec<WitnessTarget>,
    pub timeout: Duration,
}

impl WitnessSettings {
    pub fn validate(raw: RawWitness) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        let logs = raw
            .logs
            .0
            .iter()
            .map(|v| NoteVerifier::parse(v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("witness.logs", format!("a log vkey: {e}")))?;
        let mut origins: Vec<&str> = logs.iter().map(|l| l.name()).collect();
        origins.sort_unstable();
        if origins.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid(
                "witness.logs",
                "two vkeys name the same origin".into(),
            ));
        }
        let vkeys = raw
            .vkeys
            .0
            .iter()
            .map(|v| CosignerVerifier::parse(v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("witness.vkeys", format!("a witness vkey: {e}")))?;
        if vkeys.len() != raw.urls.0.len() {
            return Err(invalid(
                "witness.vkeys",
                format!(
                    "one vkey per witness URL is needed ({} URLs, {} vkeys)",
                    raw.urls.0.len(),
                    vkeys.len()
                ),
            ));
        }
        if !raw.tokens.0.is_empty() && raw.tokens.0.len() != raw.urls.0.len() {
            return Err(invalid(
                "witness.tokens",
                "give one token per witness URL, or none".into(),
            ));
        }
        let mut targets = Vec::new();
        for (i, (url, vkey)) in raw.urls.0.iter().zip(vkeys).enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "witness.urls",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            targets.push(WitnessTarget {
                url: format!("{}/add-checkpoint", url.trim_end_matches('/')),
                vkey,
                token: raw.tokens.0.get(i).cloned().map(Secret::new),
            });
        }
        Ok(WitnessSettings {
            key_file: raw.key_file.filter(|s| !s.is_empty()).map(PathBuf::from),
            logs,
            targets,
            timeout: Duration::from_millis(if raw.timeout_ms == 0 {
                10_000
            } else {
                raw.timeout_ms
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_settings_pair_urls_with_vkeys() {
        let w = vellum_ledger::cosignature::Cosigner::generate("w.example/w").unwrap();
        let log = vellum_ledger::note::NoteSigner::generate("a.example/log").unwrap();
        let mut raw = RawWitness {
            logs: PathList(vec![log.verifier().to_vkey()]),
            urls: PathList(vec!["http://127.0.0.1:1/witness".into()]),
            ..RawWitness::default()
        };
        let e = WitnessSettings::validate(raw.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("witness.vkeys"), "{e}");
        raw.vkeys = PathList(vec![w.verifier().to_vkey()]);
        raw.tokens = PathList(vec!["secret-token-1".into()]);
        let s = WitnessSettings::validate(raw.clone()).unwrap();
        assert_eq!(
            s.targets[0].url,
            "http://127.0.0.1:1/witness/add-checkpoint"
        );
        assert!(!format!("{s:?}").contains("secret-token-1"));
        // A log vkey is not a witness vkey.
        raw.vkeys = PathList(vec![log.verifier().to_vkey()]);
        assert!(WitnessSettings::validate(raw).is_err());
    }

    #[test]
    fn the_command_is_an_array_or_a_line() {
        let c: CommandLine = serde_json::from_str(r#""/bin/tee -a out""#).unwrap();
        assert_eq!(c.0, ["/bin/tee", "-a", "out"]);
        let c: CommandLine = serde_json::from_str(r#"["/bin/x", "a b"]"#).unwrap();
        assert_eq!(c.0, ["/bin/x", "a b"]);
    }

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
