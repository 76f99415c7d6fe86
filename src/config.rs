//! One typed configuration: defaults, then an optional TOML file, then
//! `VELLUM_*` environment variables (which win). Validated once at start-up
//! into types that cannot hold invalid values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use vellum_ledger::{DatabaseUrl, WriterSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The raw, layered settings as written by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// `sqlite://PATH` or `postgres://user@host/db`.
    pub database_url: String,
    /// PostgreSQL role to `SET ROLE` to on every connection (e.g. `vellum_writer`).
    pub database_role: Option<String>,
    /// Apply migrations when `serve` starts (needs DDL rights).
    pub migrate_on_start: bool,
    pub http_addr: String,
    /// MLLP listener addresses, comma-separated (`127.0.0.1:2575,0.0.0.0:2576`);
    /// empty turns plain MLLP off. When `mllp_tls_cert` is set and
    /// `mllp_tls_addr` is empty, these listeners speak TLS (the behaviour
    /// before `mllp_tls_addr` existed).
    pub mllp_addr: String,
    /// MLLP-over-TLS listener addresses, comma-separated; they use the
    /// `mllp_tls_*` certificate settings. Empty: no dedicated TLS listeners.
    pub mllp_tls_addr: String,
    /// Largest MLLP frame (message) accepted, bytes.
    pub mllp_max_frame_bytes: usize,
    /// How long an MLLP connection may take to deliver its next whole
    /// message (idle or slow senders are disconnected), ms.
    pub mllp_read_timeout_ms: u64,
    /// Most MLLP connections served at once; more wait to be accepted.
    pub mllp_max_connections: usize,
    /// PEM certificate chain: when set (with the key), MLLP is TLS-only.
    pub mllp_tls_cert: Option<String>,
    /// PEM private key of `mllp_tls_cert`.
    pub mllp_tls_key: Option<String>,
    /// PEM CA bundle: when set, MLLP clients must present a certificate
    /// it signed (mutual TLS).
    pub mllp_tls_client_ca: Option<String>,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Most events committed in one transaction.
    pub batch_max_events: usize,
    /// How long the writer waits for more events before committing a batch, µs.
    /// 0 commits as soon as the previous commit is done (batches still form
    /// naturally while a commit is in flight).
    pub batch_max_wait_us: u64,
    /// Queue of appends waiting for the writer; full means 503.
    pub writer_queue: usize,
    /// Base URL used in `Location` headers and Bundle links; derived from the
    /// request when unset.
    pub public_base_url: Option<String>,
    /// tracing filter (RUST_LOG syntax).
    pub log: String,
    /// `[privacy]`: data minimisation (env `VELLUM_PRIVACY_*`).
    #[serde(default)]
    pub privacy: RawPrivacy,
    /// `[dicom]`: pixel digests and the sources studies are found in.
    #[serde(default)]
    pub dicom: RawDicomSettings,
    /// `[limits]`: bounds on request bodies (env `VELLUM_LIMITS_*`).
    #[serde(default)]
    pub limits: RawLimits,
}

/// `[limits]` as written: what one request body may be, checked before
/// anything expensive reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Deepest element nesting of an XML body.
    pub xml_max_depth: usize,
    /// Largest XML body (single resource or Bundle), bytes.
    pub xml_max_bytes: usize,
    /// Deepest nesting of arrays and objects in a JSON body (at most 100).
    pub json_max_depth: usize,
    /// Most members of one JSON object.
    pub json_max_keys_per_object: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        let json = vellum_json::Limits::default();
        RawLimits {
            xml_max_depth: 50,
            xml_max_bytes: 4 * 1024 * 1024,
            json_max_depth: json.max_depth,
            json_max_keys_per_object: json.max_keys_per_object,
        }
    }
}

/// Validated `[limits]` (see [`RawLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub xml_max_depth: usize,
    pub xml_max_bytes: usize,
    pub json: vellum_json::Limits,
}

impl Default for LimitSettings {
    fn default() -> Self {
        // The defaults are valid by construction.
        let raw = RawLimits::default();
        LimitSettings {
            xml_max_depth: raw.xml_max_depth,
            xml_max_bytes: raw.xml_max_bytes,
            json: vellum_json::Limits {
                max_depth: raw.json_max_depth,
                max_keys_per_object: raw.json_max_keys_per_object,
            },
        }
    }
}

impl LimitSettings {
    pub fn validate(raw: &RawLimits) -> Result<Self, ConfigError> {
        for (key, v) in [
            ("limits.xml_max_depth", raw.xml_max_depth),
            ("limits.xml_max_bytes", raw.xml_max_bytes),
            ("limits.json_max_depth", raw.json_max_depth),
            (
                "limits.json_max_keys_per_object",
                raw.json_max_keys_per_object,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        let max = vellum_json::MAX_DEPTH;
        if raw.json_max_depth > max {
            return Err(ConfigError::Invalid {
                key: "limits.json_max_depth",
                reason: format!("must be at most {max}"),
            });
        }
        Ok(LimitSettings {
            xml_max_depth: raw.xml_max_depth,
            xml_max_bytes: raw.xml_max_bytes,
            json: vellum_json::Limits {
                max_depth: raw.json_max_depth,
                max_keys_per_object: raw.json_max_keys_per_object,
            },
        })
    }
}

/// `[privacy]` as written by an operator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPrivacy {
    /// Store prompt/output bodies and free text (reasons, diffs). When false
    /// only their SHA-256 is stored.
    pub store_content: bool,
    /// Replace patient identifiers by HMAC-SHA-256 pseudonyms.
    pub pseudonymise_patients: bool,
    /// The HMAC key (at least 16 bytes; keep it secret and stable).
    pub pseudonym_key: Option<String>,
}

/// Validated `[privacy]` settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PrivacySettings {
    pub store_content: bool,
    /// The HMAC key when patient identifiers are pseudonymised.
    pub pseudonym_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for PrivacySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("PrivacySettings")
            .field("store_content", &self.store_content)
            .field("pseudonymise_patients", &self.pseudonym_key.is_some())
            .finish()
    }
}

/// `[dicom]` as written (env: `VELLUM_DICOM_<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDicomSettings {
    /// Folder trees of DICOM files searched for studies (env: comma-separated).
    pub folders: PathList,
    /// Where the folder index (and digest cache) is persisted.
    pub index_path: String,
    /// DICOMweb base URL (QIDO-RS/WADO-RS), e.g. `http://pacs:8042/dicom-web`.
    pub dicomweb_url: Option<String>,
    /// Timeout of one DICOMweb request, ms.
    pub dicomweb_timeout_ms: u64,
    /// How long an event may wait for its study's digest before it is
    /// stored with the digest pending, ms.
    pub budget_ms: u64,
    /// Largest `POST /dicom/digest` body, bytes.
    pub max_upload_bytes: usize,
    /// Files hashed at once; 0 = one per core.
    pub workers: usize,
    /// How often the digest worker looks for pending digests, ms; 0 turns
    /// the worker off (pending studies then wait for an instance with it on).
    pub pending_poll_ms: u64,
    /// Longest wait between two attempts at a study that stays unavailable
    /// (the wait doubles from `pending_poll_ms` up to this), ms.
    pub pending_retry_max_ms: u64,
    /// Age (since the event was stored) after which a still unavailable
    /// digest gets a "gave up" follow-up, s; 0 = keep trying forever.
    pub pending_give_up_after_s: u64,
    /// Pending digests read per poll.
    pub pending_batch: usize,
}

/// A list of paths: a TOML array, or one string with comma-separated items
/// (how an environment variable carries it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "OneOrMany")]
pub struct PathList(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for PathList {
    fn from(v: OneOrMany) -> Self {
        let items = match v {
            OneOrMany::One(s) => s.split(',').map(str::to_string).collect(),
            OneOrMany::Many(v) => v,
        };
        PathList(
            items
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
}

impl Default for RawDicomSettings {
    fn default() -> Self {
        RawDicomSettings {
            folders: PathList::default(),
            index_path: "vellum-dicom-index.json".into(),
            dicomweb_url: None,
            dicomweb_timeout_ms: 30_000,
            budget_ms: 2_000,
            max_upload_bytes: 1 << 30,
            workers: 0,
            pending_poll_ms: 10_000,
            pending_retry_max_ms: 600_000,
            pending_give_up_after_s: 0,
            pending_batch: 100,
        }
    }
}

/// Validated `[dicom]` settings.
#[derive(Debug, Clone)]
pub struct DicomSettings {
    pub folders: Vec<PathBuf>,
    pub index_path: PathBuf,
    /// Without a trailing `/`.
    pub dicomweb_url: Option<String>,
    pub dicomweb_timeout: Duration,
    pub budget: Duration,
    pub max_upload_bytes: usize,
    /// At least 1.
    pub workers: usize,
    /// The pending-digest worker (src/dicom/worker.rs); see RawDicomSettings.
    pub pending: PendingSettings,
}

/// Validated `pending_*` keys of `[dicom]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSettings {
    /// `None`: the worker does not run.
    pub poll: Option<Duration>,
    pub retry_max: Duration,
    /// `None`: never give up.
    pub give_up_after: Option<Duration>,
    /// At least 1.
    pub batch: i64,
}

impl PendingSettings {
    fn from_raw(raw: &RawDicomSettings) -> Self {
        let poll = (raw.pending_poll_ms > 0).then(|| Duration::from_millis(raw.pending_poll_ms));
        PendingSettings {
            poll,
            retry_max: Duration::from_millis(raw.pending_retry_max_ms.max(raw.pending_poll_ms)),
            give_up_after: (raw.pending_give_up_after_s > 0)
                .then(|| Duration::from_secs(raw.pending_give_up_after_s)),
            batch: i64::try_from(raw.pending_batch.max(1)).unwrap_or(i64::MAX),
        }
    }
}

impl DicomSettings {
    /// Is any study source configured? Without one, events are not enriched.
    pub fn has_sources(&self) -> bool {
        !self.folders.is_empty() || self.dicomweb_url.is_some()
    }

    pub fn validate(raw: RawDicomSettings) -> Result<Self, ConfigError> {
        if let Some(url) = &raw.dicomweb_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "dicom.dicomweb_url",
                    reason: "must be an absolute http(s) URL".into(),
                });
            }
        }
        for f in &raw.folders.0 {
            if !Path::new(f).is_dir() {
                return Err(ConfigError::Invalid {
                    key: "dicom.folders",
                    reason: format!("{f} is not a folder"),
                });
            }
        }
        if raw.max_upload_bytes == 0 || raw.dicomweb_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "dicom.max_upload_bytes",
                reason: "max_upload_bytes and dicomweb_timeout_ms must be greater than 0".into(),
            });
        }
        let pending = PendingSettings::from_raw(&raw);
        Ok(DicomSettings {
            pending,
            folders: raw.folders.0.iter().map(PathBuf::from).collect(),
            index_path: raw.index_path.into(),
            dicomweb_url: raw
                .dicomweb_url
                .map(|u| u.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
            dicomweb_timeout: Duration::from_millis(raw.dicomweb_timeout_ms),
            budget: Duration::from_millis(raw.budget_ms),
            max_upload_bytes: raw.max_upload_bytes,
            workers: if raw.workers == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                raw.workers
            },
        })
    }
}

impl Default for DicomSettings {
    fn default() -> Self {
        let raw = RawDicomSettings::default();
        DicomSettings {
            pending: PendingSettings::from_raw(&raw),
            folders: Vec::new(),
            index_path: raw.index_path.into(),
            dicomweb_url: None,
            dicomweb_timeout: Duration::from_millis(raw.dicomweb_timeout_ms),
            budget: Duration::from_millis(raw.budget_ms),
            max_upload_bytes: raw.max_upload_bytes,
            workers: 1,
        }
    }
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            database_url: "sqlite://vellum.db".into(),
            database_role: None,
            migrate_on_start: true,
            http_addr: "127.0.0.1:8080".into(),
            mllp_addr: "127.0.0.1:2575".into(),
            mllp_tls_addr: String::new(),
            mllp_max_frame_bytes: 1024 * 1024,
            mllp_read_timeout_ms: 300_000,
            mllp_max_connections: 256,
            mllp_tls_cert: None,
            mllp_tls_key: None,
            mllp_tls_client_ca: None,
            max_body_bytes: 1024 * 1024,
            batch_max_events: vellum_ledger::DEFAULT_BATCH_MAX_EVENTS,
            batch_max_wait_us: vellum_ledger::DEFAULT_BATCH_MAX_WAIT_US,
            writer_queue: vellum_ledger::DEFAULT_WRITER_QUEUE,
            public_base_url: None,
            log: "info".into(),
            privacy: RawPrivacy::default(),
            dicom: RawDicomSettings::default(),
            limits: RawLimits::default(),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub database_role: Option<String>,
    pub migrate_on_start: bool,
    pub http_addr: SocketAddr,
    /// Every MLLP listener, in configuration order (plain ones first).
    pub mllp_listeners: Vec<MllpListenerSpec>,
    pub mllp: MllpSettings,
    pub max_body_bytes: usize,
    pub writer: WriterSettings,
    pub public_base_url: Option<String>,
    pub log: String,
    pub privacy: PrivacySettings,
    pub dicom: DicomSettings,
    pub limits: LimitSettings,
}

/// MLLP listener limits and TLS.
#[derive(Debug, Clone)]
pub struct MllpSettings {
    pub max_frame_bytes: usize,
    pub read_timeout: Duration,
    pub max_connections: usize,
    pub tls: Option<MllpTls>,
    /// `[privacy]`, applied to the patient of every mapped message.
    pub privacy: PrivacySettings,
}

/// One MLLP listener: its address and whether it speaks TLS (with the
/// certificate in `MllpSettings::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MllpListenerSpec {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Parses a comma-separated address list; blanks between commas are
/// ignored, so `""` is the empty list.
fn parse_addr_list(key: &'static str, list: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|e| ConfigError::Invalid {
                key,
                reason: format!(
                    "{a:?}: {e} (expected host:port[,host:port...], or empty to disable)"
                ),
            })
        })
        .collect()
}

/// MLLP over TLS: server certificate and key, optional client CA (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl Default for MllpSettings {
    fn default() -> Self {
        let raw = RawSettings::default();
        MllpSettings {
            max_frame_bytes: raw.mllp_max_frame_bytes,
            read_timeout: Duration::from_millis(raw.mllp_read_timeout_ms),
            max_connections: raw.mllp_max_connections,
            tls: None,
            privacy: PrivacySettings::default(),
        }
    }
}

impl Settings {
    /// Loads defaults → `file` (if given) → `VELLUM_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only known keys are taken from the environment, so unrelated
        // VELLUM_* variables (VELLUM_DEV_TOKEN, test knobs) do not fail start-up.
        let known = [
            "database_url",
            "database_role",
            "migrate_on_start",
            "http_addr",
            "mllp_addr",
            "mllp_tls_addr",
            "mllp_max_frame_bytes",
            "mllp_read_timeout_ms",
            "mllp_max_connections",
            "mllp_tls_cert",
            "mllp_tls_key",
            "mllp_tls_client_ca",
            "max_body_bytes",
            "batch_max_events",
            "batch_max_wait_us",
            "writer_queue",
            "public_base_url",
            "log",
        ];
        fig = fig.merge(
            Env::prefixed("VELLUM_")
                .filter(move |k| known.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))),
        );
        let privacy_keys = ["store_content", "pseudonymise_patients", "pseudonym_key"];
        fig = fig.merge(
            Env::prefixed("VELLUM_PRIVACY_")
                .filter(move |k| {
                    privacy_keys
                        .iter()
                        .any(|n| k.as_str().eq_ignore_ascii_case(n))
                })
                .map(|k| format!("privacy.{}", k.as_str().to_ascii_lowercase()).into()),
        );
        // `[dicom]` keys come as VELLUM_DICOM_<KEY>; the same filtering.
        let dicom_known = [
            "folders",
            "index_path",
            "dicomweb_url",
            "dicomweb_timeout_ms",
            "budget_ms",
            "max_upload_bytes",
            "workers",
            "pending_poll_ms",
            "pending_retry_max_ms",
            "pending_give_up_after_s",
            "pending_batch",
        ];
        fig = fig.merge(
            Env::prefixed("VELLUM_DICOM_")
                .filter(move |k| {
                    dicom_known
                        .iter()
                        .any(|n| k.as_str().eq_ignore_ascii_case(n))
                })
                .map(|k| format!("dicom.{}", k.as_str().to_ascii_lowercase()).into())
                .split("."),
        );
        let limit_keys = [
            "xml_max_depth",
            "xml_max_bytes",
            "json_max_depth",
            "json_max_keys_per_object",
        ];
        fig = fig.merge(
            Env::prefixed("VELLUM_LIMITS_")
                .filter(move |k| {
                    limit_keys
                        .iter()
                        .any(|n| k.as_str().eq_ignore_ascii_case(n))
                })
                .map(|k| format!("limits.{}", k.as_str().to_ascii_lowercase()).into())
                .split("."),
        );
        let raw: RawSettings = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        Self::validate(raw)
    }

    pub fn validate(raw: RawSettings) -> Result<Self, ConfigError> {
        let database_url =
            DatabaseUrl::parse(&raw.database_url).map_err(|e| ConfigError::Invalid {
                key: "database_url",
                reason: e.to_string(),
            })?;
        let http_addr = raw.http_addr.parse().map_err(|e| ConfigError::Invalid {
            key: "http_addr",
            reason: format!("{e} (expected host:port, e.g. 127.0.0.1:8080)"),
        })?;
        let mllp_plain = parse_addr_list("mllp_addr", &raw.mllp_addr)?;
        let mllp_tls_addrs = parse_addr_list("mllp_tls_addr", &raw.mllp_tls_addr)?;
        if let Some(role) = &raw.database_role {
            let ok = !role.is_empty()
                && role
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !role.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "database_role",
                    reason: "must be a lowercase SQL identifier (letters, digits, _)".into(),
                });
            }
            if matches!(database_url, DatabaseUrl::Sqlite(_)) {
                return Err(ConfigError::Invalid {
                    key: "database_role",
                    reason: "only applies to PostgreSQL".into(),
                });
            }
        }
        let positive = |key: &'static str, v: usize| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    key,
                    reason: "must be greater than 0".into(),
                })
            } else {
                Ok(v)
            }
        };
        positive("max_body_bytes", raw.max_body_bytes)?;
        positive("batch_max_events", raw.batch_max_events)?;
        positive("writer_queue", raw.writer_queue)?;
        positive("mllp_max_frame_bytes", raw.mllp_max_frame_bytes)?;
        positive("mllp_max_connections", raw.mllp_max_connections)?;
        let tls = match (&raw.mllp_tls_cert, &raw.mllp_tls_key) {
            (None, None) => {
                if raw.mllp_tls_client_ca.is_some() {
                    return Err(ConfigError::Invalid {
                        key: "mllp_tls_client_ca",
                        reason: "needs mllp_tls_cert and mllp_tls_key".into(),
                    });
                }
                None
            }
            (Some(cert), Some(key)) => {
                for (k, p) in [
                    ("mllp_tls_cert", Some(cert)),
                    ("mllp_tls_key", Some(key)),
                    ("mllp_tls_client_ca", raw.mllp_tls_client_ca.as_ref()),
                ] {
                    if let Some(p) = p {
                        if !Path::new(p).is_file() {
                            return Err(ConfigError::Invalid {
                                key: k,
                                reason: format!("{p} is not a readable file"),
                            });
                        }
                    }
                }
                Some(MllpTls {
                    cert: cert.into(),
                    key: key.into(),
                    client_ca: raw.mllp_tls_client_ca.as_ref().map(PathBuf::from),
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "mllp_tls_cert",
                    reason: "mllp_tls_cert and mllp_tls_key go together".into(),
                })
            }
        };
        if !mllp_tls_addrs.is_empty() && tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "mllp_tls_addr",
                reason: "TLS listeners need mllp_tls_cert and mllp_tls_key".into(),
            });
        }
        // Without dedicated TLS addresses a configured certificate makes the
        // mllp_addr listeners TLS-only (as before mllp_tls_addr existed).
        let plain_is_tls = tls.is_some() && mllp_tls_addrs.is_empty();
        let mut mllp_listeners: Vec<MllpListenerSpec> = Vec::new();
        for (key, addrs, is_tls) in [
            ("mllp_addr", &mllp_plain, plain_is_tls),
            ("mllp_tls_addr", &mllp_tls_addrs, true),
        ] {
            for &addr in addrs {
                // Port 0 (an OS-chosen port) never collides.
                if addr.port() != 0 && mllp_listeners.iter().any(|l| l.addr == addr) {
                    return Err(ConfigError::Invalid {
                        key,
                        reason: format!("{addr} is listed more than once"),
                    });
                }
                mllp_listeners.push(MllpListenerSpec { addr, tls: is_tls });
            }
        }
        if raw.mllp_read_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "mllp_read_timeout_ms",
                reason: "must be greater than 0".into(),
            });
        }
        if raw.batch_max_wait_us > 1_000_000 {
            return Err(ConfigError::Invalid {
                key: "batch_max_wait_us",
                reason: "must be at most 1000000 (1 s): every request waits this long".into(),
            });
        }
        if let Some(base) = &raw.public_base_url {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "public_base_url",
                    reason: "must be an absolute http(s) URL".into(),
                });
            }
        }
        let privacy = validate_privacy(&raw.privacy)?;
        let dicom = DicomSettings::validate(raw.dicom)?;
        let limits = LimitSettings::validate(&raw.limits)?;
        Ok(Settings {
            limits,
            dicom,
            database_url,
            database_role: raw.database_role,
            migrate_on_start: raw.migrate_on_start,
            http_addr,
            mllp_listeners,
            mllp: MllpSettings {
                max_frame_bytes: raw.mllp_max_frame_bytes,
                read_timeout: Duration::from_millis(raw.mllp_read_timeout_ms),
                max_connections: raw.mllp_max_connections,
                tls,
                privacy: privacy.clone(),
            },
            max_body_bytes: raw.max_body_bytes,
            writer: WriterSettings {
                batch_max_events: raw.batch_max_events,
                batch_max_wait: Duration::from_micros(raw.batch_max_wait_us),
                queue: raw.writer_queue,
            },
            public_base_url: raw
                .public_base_url
                .map(|b| b.trim_end_matches('/').to_string()),
            log: raw.log,
            privacy,
        })
    }
}

fn validate_privacy(raw: &RawPrivacy) -> Result<PrivacySettings, ConfigError> {
    let pseudonym_key = match (raw.pseudonymise_patients, &raw.pseudonym_key) {
        (false, _) => None,
        (true, Some(k)) if k.len() >= 16 => Some(k.as_bytes().to_vec()),
        (true, _) => {
            return Err(ConfigError::Invalid {
                key: "privacy.pseudonym_key",
                reason: "pseudonymise_patients needs a pseudonym_key of at least 16 bytes".into(),
            })
        }
    };
    Ok(PrivacySettings {
        store_content: raw.store_content,
        pseudonym_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::validate(RawSettings::default()).unwrap();
        assert_eq!(s.database_url, DatabaseUrl::Sqlite("vellum.db".into()));
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            s.mllp_listeners,
            vec![MllpListenerSpec {
                addr: "127.0.0.1:2575".parse().unwrap(),
                tls: false
            }]
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut raw = RawSettings {
            http_addr: "nowhere".into(),
            ..RawSettings::default()
        };
        let e = Settings::validate(raw.clone()).unwrap_err().to_string();
        assert!(e.contains("http_addr"), "{e}");
        raw.http_addr = "127.0.0.1:0".into();
        raw.database_url = "mysql://x".into();
        let e = Settings::validate(raw.clone()).unwrap_err().to_string();
        assert!(e.contains("database_url"), "{e}");
        raw.database_url = "postgres://postgres@localhost/db".into();
        raw.database_role = Some("x; DROP TABLE entry".into());
        let e = Settings::validate(raw).unwrap_err().to_string();
        assert!(e.contains("database_role"), "{e}");
    }

    #[test]
    fn pseudonymisation_needs_a_key() {
        let mut raw = RawSettings::default();
        raw.privacy.pseudonymise_patients = true;
        let e = Settings::validate(raw.clone()).unwrap_err().to_string();
        assert!(e.contains("pseudonym_key"), "{e}");
        raw.privacy.pseudonym_key = Some("0123456789abcdef0123".into());
        let s = Settings::validate(raw).unwrap();
        assert!(s.privacy.pseudonym_key.is_some());
        assert!(!format!("{:?}", s.privacy).contains("0123456789"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn privacy_comes_from_vellum_privacy_env_keys() {
        // In a Jail: environment tests of this binary run one at a time and
        // leave nothing behind for the others.
        figment::Jail::expect_with(|jail| {
            jail.set_env("VELLUM_PRIVACY_STORE_CONTENT", "true");
            jail.set_env("VELLUM_PRIVACY_PSEUDONYMISE_PATIENTS", "true");
            jail.set_env("VELLUM_PRIVACY_PSEUDONYM_KEY", "0123456789abcdef0123");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(s.privacy.store_content);
            assert_eq!(
                s.privacy.pseudonym_key.as_deref(),
                Some(&b"0123456789abcdef0123"[..])
            );
            assert_eq!(s.mllp.privacy, s.privacy);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn limits_come_from_the_environment_and_are_validated() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VELLUM_LIMITS_XML_MAX_DEPTH", "20");
            jail.set_env("VELLUM_LIMITS_JSON_MAX_KEYS_PER_OBJECT", "300");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.limits.xml_max_depth, 20);
            assert_eq!(s.limits.xml_max_bytes, 4 * 1024 * 1024);
            assert_eq!(s.limits.json.max_keys_per_object, 300);
            assert_eq!(s.limits.json.max_depth, 100);
            Ok(())
        });
        let defaults = Settings::validate(RawSettings::default()).unwrap().limits;
        assert_eq!(defaults, LimitSettings::default());
        for (bad, key) in [
            (
                RawLimits {
                    json_max_depth: 101,
                    ..RawLimits::default()
                },
                "limits.json_max_depth",
            ),
            (
                RawLimits {
                    xml_max_depth: 0,
                    ..RawLimits::default()
                },
                "limits.xml_max_depth",
            ),
        ] {
            let raw = RawSettings {
                limits: bad,
                ..RawSettings::default()
            };
            match Settings::validate(raw) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn dicom_settings_come_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        figment::Jail::expect_with(|jail| {
            jail.set_env("VELLUM_DICOM_FOLDERS", format!("{d}, {d}"));
            jail.set_env(
                "VELLUM_DICOM_DICOMWEB_URL",
                "http://127.0.0.1:8042/dicom-web/",
            );
            jail.set_env("VELLUM_DICOM_BUDGET_MS", "250");
            jail.set_env("VELLUM_DICOM_PENDING_POLL_MS", "500");
            jail.set_env("VELLUM_DICOM_PENDING_GIVE_UP_AFTER_S", "3600");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.dicom.pending.poll, Some(Duration::from_millis(500)));
            assert_eq!(
                s.dicom.pending.give_up_after,
                Some(Duration::from_secs(3600))
            );
            assert_eq!(s.dicom.pending.retry_max, Duration::from_secs(600));
            assert_eq!(s.dicom.folders.len(), 2);
            assert_eq!(
                s.dicom.dicomweb_url.as_deref(),
                Some("http://127.0.0.1:8042/dicom-web")
            );
            assert_eq!(s.dicom.budget, Duration::from_millis(250));
            assert!(s.dicom.has_sources());
            Ok(())
        });
        let defaults = Settings::validate(RawSettings::default()).unwrap().dicom;
        assert!(!defaults.has_sources());
        // The worker polls by default and never gives up unless told to.
        assert_eq!(defaults.pending.poll, Some(Duration::from_secs(10)));
        assert_eq!(defaults.pending.give_up_after, None);
    }

    #[test]
    fn empty_mllp_addr_disables_mllp() {
        let raw = RawSettings {
            mllp_addr: "".into(),
            ..RawSettings::default()
        };
        assert!(Settings::validate(raw).unwrap().mllp_listeners.is_empty());
    }

    fn specs(s: &Settings) -> Vec<(String, bool)> {
        s.mllp_listeners
            .iter()
            .map(|l| (l.addr.to_string(), l.tls))
            .collect()
    }

    /// Two files that exist, standing in for a certificate and key.
    /// Files that exist whatever the working directory (figment's `Jail`
    /// tests change it for the whole process while they run).
    fn tls_files(raw: &mut RawSettings) {
        raw.mllp_tls_cert = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into());
        raw.mllp_tls_key = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock").into());
    }

    #[test]
    fn mllp_addr_takes_a_comma_separated_list() {
        let raw = RawSettings {
            mllp_addr: " 127.0.0.1:2575, 0.0.0.0:2576 ,".into(),
            ..RawSettings::default()
        };
        let s = Settings::validate(raw).unwrap();
        assert_eq!(
            specs(&s),
            [
                ("127.0.0.1:2575".to_string(), false),
                ("0.0.0.0:2576".to_string(), false)
            ]
        );
        let raw = RawSettings {
            mllp_addr: "127.0.0.1:2575,nowhere".into(),
            ..RawSettings::default()
        };
        let e = Settings::validate(raw).unwrap_err().to_string();
        assert!(e.contains("mllp_addr") && e.contains("nowhere"), "{e}");
    }

    #[test]
    fn tls_listeners_need_a_certificate_and_key() {
        let mut raw = RawSettings {
            mllp_tls_addr: "127.0.0.1:2576".into(),
            ..RawSettings::default()
        };
        let e = Settings::validate(raw.clone()).unwrap_err().to_string();
        assert!(e.contains("mllp_tls_addr"), "{e}");
        raw.mllp_tls_addr = "127.0.0.1:x".into();
        tls_files(&mut raw);
        let e = Settings::validate(raw.clone()).unwrap_err().to_string();
        assert!(e.contains("mllp_tls_addr"), "{e}");
        raw.mllp_tls_addr = "127.0.0.1:2576,127.0.0.1:2577".into();
        let s = Settings::validate(raw).unwrap();
        assert_eq!(
            specs(&s),
            [
                ("127.0.0.1:2575".to_string(), false),
                ("127.0.0.1:2576".to_string(), true),
                ("127.0.0.1:2577".to_string(), true)
            ]
        );
    }

    #[test]
    fn a_certificate_without_tls_addresses_makes_mllp_addr_tls() {
        let mut raw = RawSettings {
            mllp_addr: "127.0.0.1:2575,127.0.0.1:2576".into(),
            ..RawSettings::default()
        };
        tls_files(&mut raw);
        let s = Settings::validate(raw).unwrap();
        assert!(s.mllp_listeners.iter().all(|l| l.tls));
        assert_eq!(s.mllp_listeners.len(), 2);
    }

    #[test]
    fn duplicate_mllp_addresses_are_refused() {
        let mut raw = RawSettings {
            mllp_addr: "127.0.0.1:2575,127.0.0.1:2575".into(),
            ..RawSettings::default()
        };
        let e = Settings::validate(raw.clone()).unwrap_err().to_string();
        assert!(
            e.contains("mllp_addr") && e.contains("more than once"),
            "{e}"
        );
        raw.mllp_addr = "127.0.0.1:2575".into();
        raw.mllp_tls_addr = "127.0.0.1:2575".into();
        tls_files(&mut raw);
        let e = Settings::validate(raw.clone()).unwrap_err().to_string();
        assert!(e.contains("mllp_tls_addr"), "{e}");
        // OS-chosen ports never collide.
        raw.mllp_addr = "127.0.0.1:0,127.0.0.1:0".into();
        raw.mllp_tls_addr = "127.0.0.1:0".into();
        assert_eq!(Settings::validate(raw).unwrap().mllp_listeners.len(), 3);
    }
}
