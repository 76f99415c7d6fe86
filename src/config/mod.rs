//! One typed configuration: defaults, then an optional TOML file, then
//! `VELLUM_*` environment variables (which win). Validated once at start-up
//! into types that cannot hold invalid values.
//!
//! Each section owns its raw keys, their defaults and their validation:
//! database.rs, http.rs, mllp.rs (+ TLS), writer.rs, privacy.rs, dicom.rs,
//! limits.rs. The file keeps its historical shape — the database, HTTP, MLLP
//! and writer keys at the top level, `[privacy]`, `[dicom]` and `[limits]`
//! as tables — and [`RawSettings`] is that document; the environment names
//! are derived from its serde field names (env.rs).

mod addr;
mod auth;
mod bulk_export;
mod database;
mod detection;
mod dicom;
mod env;
mod evidence;
mod export;
mod http;
mod limits;
mod log;
mod mllp;
mod privacy;
mod reports;
pub mod secret;
mod syslog;
mod writer;

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use addr::listen_addr;
pub use auth::{AuthSettings, GrantLines, RawAuth};
pub use bulk_export::{BulkExportSettings, RawBulkExport};
pub use database::{DatabaseSettings, DatabaseUrl, DatabaseUrlError, RawDatabase};
pub use detection::{BusinessHours, CountRule, DetectionSettings, RawDetection, RuleId};
pub use dicom::{DicomSettings, HeaderLimits, PathList, PendingSettings, RawDicomSettings};
pub use env::unknown_variables;
pub use evidence::{
    CommandLine, EvidenceSettings, PublishSettings, RawEvidence, RawPublish, RawWitness,
    WitnessSettings, WitnessTarget,
};
pub use export::{Endpoint, ExportSettings, ExportTls, RawExport};
pub use http::{HttpSettings, HttpTls, RawHttp};
pub use limits::{LimitSettings, RawLimits, SearchLimits};
pub use log::LogFormat;
pub use mllp::{MllpListenerSpec, MllpSection, MllpSettings, MllpTls, RawMllp};
pub use privacy::{PrivacySettings, RawPrivacy};
pub use reports::{RawReports, ReportSettings};
pub use secret::{Secret, SecretUrl};
pub use syslog::{RawSyslog, SyslogSettings};
pub use writer::{RawWriter, WriterSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// A count or size that must not be 0.
fn positive(key: &'static str, v: usize) -> Result<usize, ConfigError> {
    if v == 0 {
        Err(ConfigError::Invalid {
            key,
            reason: "must be greater than 0".into(),
        })
    } else {
        Ok(v)
    }
}

/// The configuration document as an operator writes it (TOML file or
/// `VELLUM_*` variables). The top-level keys belong to the sections named
/// beside them, which document, default and validate them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    // database.rs
    pub database_url: SecretUrl,
    pub database_role: Option<String>,
    pub database_writer_role: String,
    pub migrate_on_start: bool,
    // http.rs
    #[serde(deserialize_with = "addr::string_or_number")]
    pub http_addr: String,
    pub max_body_bytes: usize,
    pub public_base_url: Option<String>,
    pub http_tls_cert: Option<String>,
    pub http_tls_key: Option<String>,
    pub http_tls_client_ca: Option<String>,
    // mllp.rs
    #[serde(deserialize_with = "addr::string_or_number")]
    pub mllp_addr: String,
    #[serde(deserialize_with = "addr::string_or_number")]
    pub mllp_tls_addr: String,
    pub mllp_max_frame_bytes: usize,
    pub mllp_read_timeout_ms: u64,
    pub mllp_max_connections: usize,
    pub mllp_tls_cert: Option<String>,
    pub mllp_tls_key: Option<String>,
    pub mllp_tls_client_ca: Option<String>,
    // writer.rs
    pub batch_max_events: usize,
    pub batch_max_wait_us: u64,
    pub writer_queue: usize,
    // evidence.rs
    pub signing_key_file: Option<String>,
    pub checkpoint_origin: String,
    pub checkpoint_every_entries: u64,
    pub checkpoint_every_seconds: u64,
    // evidence.rs: time seals (RFC 3161)
    pub tsa_urls: PathList,
    pub tsa_ca_file: Option<String>,
    // auth.rs: a token with every role (local use and tests only).
    pub dev_token: Option<Secret<String>>,
    /// tracing filter (RUST_LOG syntax).
    pub log: String,
    /// `[auth]`: tokens and who may call what (env `VELLUM_AUTH_*`).
    #[serde(default)]
    pub auth: RawAuth,
    /// log.rs: `text` or `json` (one JSON object per line).
    pub log_format: String,
    /// `[privacy]`: data minimisation (env `VELLUM_PRIVACY_*`).
    #[serde(default)]
    pub privacy: RawPrivacy,
    /// `[dicom]`: pixel digests and the sources studies are found in.
    #[serde(default)]
    pub dicom: RawDicomSettings,
    /// `[limits]`: bounds on request bodies (env `VELLUM_LIMITS_*`).
    #[serde(default)]
    pub limits: RawLimits,
    /// `[syslog]`: the ATNA syslog listeners (env `VELLUM_SYSLOG_*`).
    #[serde(default)]
    pub syslog: RawSyslog,
    /// `[reports]`: QA reports (env `VELLUM_REPORTS_*`).
    #[serde(default)]
    pub reports: RawReports,
    /// `[evidence]`: publishing new checkpoints (env `VELLUM_EVIDENCE_*`).
    #[serde(default)]
    pub evidence: RawPublish,
    /// `[witness]`: witnessing and being witnessed (env `VELLUM_WITNESS_*`).
    #[serde(default)]
    pub witness: RawWitness,
    /// `[export]`: the SIEM feed (env `VELLUM_EXPORT_*`).
    #[serde(default)]
    pub export: RawExport,
    /// `[bulk_export]`: FHIR `$export` jobs (env `VELLUM_BULK_EXPORT_*`).
    #[serde(default)]
    pub bulk_export: RawBulkExport,
    /// `[detection]`: detection rules (env `VELLUM_DETECTION_*`).
    #[serde(default)]
    pub detection: RawDetection,
}

/// The document split into its sections.
struct RawSections {
    database: RawDatabase,
    http: RawHttp,
    mllp: RawMllp,
    writer: RawWriter,
    evidence: RawEvidence,
    dev_token: Option<Secret<String>>,
    auth: RawAuth,
    log: String,
    log_format: String,
    privacy: RawPrivacy,
    dicom: RawDicomSettings,
    limits: RawLimits,
    syslog: RawSyslog,
    reports: RawReports,
    publish: RawPublish,
    witness: RawWitness,
    export: RawExport,
    bulk_export: RawBulkExport,
    detection: RawDetection,
}

impl RawSettings {
    // Both conversions name every field, so a key added to a section and not
    // to the document (or the reverse) does not compile.
    fn from_sections(s: RawSections) -> Self {
        let RawSections {
            database,
            http,
            mllp,
            writer,
            evidence,
            dev_token,
            auth,
            log,
            log_format,
            privacy,
            dicom,
            limits,
            syslog,
            reports,
            publish,
            witness,
            export,
            bulk_export,
            detection,
        } = s;
        RawSettings {
            database_url: database.database_url,
            database_role: database.database_role,
            database_writer_role: database.database_writer_role,
            migrate_on_start: database.migrate_on_start,
            http_addr: http.http_addr,
            max_body_bytes: http.max_body_bytes,
            public_base_url: http.public_base_url,
            http_tls_cert: http.http_tls_cert,
            http_tls_key: http.http_tls_key,
            http_tls_client_ca: http.http_tls_client_ca,
            mllp_addr: mllp.mllp_addr,
            mllp_tls_addr: mllp.mllp_tls_addr,
            mllp_max_frame_bytes: mllp.mllp_max_frame_bytes,
            mllp_read_timeout_ms: mllp.mllp_read_timeout_ms,
            mllp_max_connections: mllp.mllp_max_connections,
            mllp_tls_cert: mllp.mllp_tls_cert,
            mllp_tls_key: mllp.mllp_tls_key,
            mllp_tls_client_ca: mllp.mllp_tls_client_ca,
            batch_max_events: writer.batch_max_events,
            batch_max_wait_us: writer.batch_max_wait_us,
            writer_queue: writer.writer_queue,
            signing_key_file: evidence.signing_key_file,
            checkpoint_origin: evidence.checkpoint_origin,
            checkpoint_every_entries: evidence.checkpoint_every_entries,
            checkpoint_every_seconds: evidence.checkpoint_every_seconds,
            tsa_urls: evidence.tsa_urls,
            tsa_ca_file: evidence.tsa_ca_file,
            dev_token,
            auth,
            log,
            log_format,
            privacy,
            dicom,
            limits,
            syslog,
            reports,
            evidence: publish,
            witness,
            export,
            bulk_export,
            detection,
        }
    }

    fn into_sections(self) -> RawSections {
        let RawSettings {
            database_url,
            database_role,
            database_writer_role,
            migrate_on_start,
            http_addr,
            max_body_bytes,
            public_base_url,
            http_tls_cert,
            http_tls_key,
            http_tls_client_ca,
            mllp_addr,
            mllp_tls_addr,
            mllp_max_frame_bytes,
            mllp_read_timeout_ms,
            mllp_max_connections,
            mllp_tls_cert,
            mllp_tls_key,
            mllp_tls_client_ca,
            batch_max_events,
            batch_max_wait_us,
            writer_queue,
            signing_key_file,
            checkpoint_origin,
            checkpoint_every_entries,
            checkpoint_every_seconds,
            tsa_urls,
            tsa_ca_file,
            dev_token,
            auth,
            log,
            log_format,
            privacy,
            dicom,
            limits,
            syslog,
            reports,
            evidence: publish,
            witness,
            export,
            bulk_export,
            detection,
        } = self;
        RawSections {
            database: RawDatabase {
                database_url,
                database_role,
                database_writer_role,
                migrate_on_start,
            },
            http: RawHttp {
                http_addr,
                max_body_bytes,
                public_base_url,
                http_tls_cert,
                http_tls_key,
                http_tls_client_ca,
            },
            mllp: RawMllp {
                mllp_addr,
                mllp_tls_addr,
                mllp_max_frame_bytes,
                mllp_read_timeout_ms,
                mllp_max_connections,
                mllp_tls_cert,
                mllp_tls_key,
                mllp_tls_client_ca,
            },
            writer: RawWriter {
                batch_max_events,
                batch_max_wait_us,
                writer_queue,
            },
            evidence: RawEvidence {
                signing_key_file,
                checkpoint_origin,
                checkpoint_every_entries,
                checkpoint_every_seconds,
                tsa_urls,
                tsa_ca_file,
            },
            dev_token,
            auth,
            log,
            log_format,
            privacy,
            dicom,
            limits,
            syslog,
            reports,
            publish,
            witness,
            export,
            bulk_export,
            detection,
        }
    }
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings::from_sections(RawSections {
            database: RawDatabase::default(),
            http: RawHttp::default(),
            mllp: RawMllp::default(),
            writer: RawWriter::default(),
            evidence: RawEvidence::default(),
            dev_token: None,
            auth: RawAuth::default(),
            log: "info".into(),
            log_format: "text".into(),
            privacy: RawPrivacy::default(),
            dicom: RawDicomSettings::default(),
            limits: RawLimits::default(),
            syslog: RawSyslog::default(),
            reports: RawReports::default(),
            publish: RawPublish::default(),
            witness: RawWitness::default(),
            export: RawExport::default(),
            bulk_export: RawBulkExport::default(),
            detection: RawDetection::default(),
        })
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub database_role: Option<String>,
    /// The PostgreSQL role `migrate` grants SELECT and INSERT (and nothing
    /// else) on vellum's tables.
    pub database_writer_role: String,
    pub migrate_on_start: bool,
    pub http_addr: std::net::SocketAddr,
    /// TLS for the HTTP server; `None`: plain HTTP.
    pub http_tls: Option<HttpTls>,
    /// Every MLLP listener, in configuration order (plain ones first).
    pub mllp_listeners: Vec<MllpListenerSpec>,
    pub mllp: MllpSettings,
    pub max_body_bytes: usize,
    pub writer: WriterSettings,
    pub public_base_url: Option<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub privacy: PrivacySettings,
    pub dicom: DicomSettings,
    pub limits: LimitSettings,
    pub syslog: SyslogSettings,
    pub reports: ReportSettings,
    pub evidence: EvidenceSettings,
    /// `[evidence]`: where new checkpoints are published.
    pub publish: PublishSettings,
    /// `[witness]`: witnessing other logs and being witnessed.
    pub witness: WitnessSettings,
    pub auth: AuthSettings,
    pub export: ExportSettings,
    pub bulk_export: BulkExportSettings,
    pub detection: DetectionSettings,
}

impl Settings {
    /// Loads defaults → `file` (if given) → `VELLUM_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, &[])
    }

    /// [`Settings::load`], then `overrides` (top-level key, value) on top of
    /// the environment: command-line flags, which win over everything.
    pub fn load_with(
        file: Option<&Path>,
        overrides: &[(&'static str, String)],
    ) -> Result<Self, ConfigError> {
        let defaults = Serialized::defaults(RawSettings::default());
        let env = env::provider(&defaults)?;
        let files = env::file_provider(&defaults)?;
        let mut fig = Figment::from(defaults);
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(env).merge(env::secret_provider()).merge(files);
        for (key, value) in overrides {
            fig = fig.merge(Serialized::default(key, value));
        }
        let raw: RawSettings = fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))?;
        Self::validate(raw)
    }

    pub fn validate(raw: RawSettings) -> Result<Self, ConfigError> {
        let RawSections {
            database,
            http,
            mllp,
            writer,
            evidence,
            dev_token,
            auth,
            log,
            log_format,
            privacy,
            dicom,
            limits,
            syslog,
            reports,
            publish,
            witness,
            export,
            bulk_export,
            detection,
        } = raw.into_sections();
        let database = DatabaseSettings::validate(database)?;
        let http = HttpSettings::validate(http)?;
        let privacy = PrivacySettings::validate(&privacy)?;
        let mllp = MllpSection::validate(mllp, &privacy)?;
        let writer = writer.validate()?;
        let dicom = DicomSettings::validate(dicom)?;
        let limits = LimitSettings::validate(&limits)?;
        let syslog = SyslogSettings::validate(syslog, &privacy)?;
        let reports = ReportSettings::validate(&reports)?;
        let evidence = EvidenceSettings::validate(evidence)?;
        let publish = PublishSettings::validate(publish)?;
        let witness = WitnessSettings::validate(witness)?;
        let auth = AuthSettings::validate(auth, dev_token, &database.url)?;
        let log_format = LogFormat::parse(&log_format)?;
        let export = ExportSettings::validate(export)?;
        let bulk_export = BulkExportSettings::validate(bulk_export)?;
        let detection = DetectionSettings::validate(&detection)?;
        Ok(Settings {
            database_url: database.url,
            database_role: database.role,
            database_writer_role: database.writer_role,
            migrate_on_start: database.migrate_on_start,
            http_addr: http.addr,
            http_tls: http.tls,
            max_body_bytes: http.max_body_bytes,
            public_base_url: http.public_base_url,
            mllp_listeners: mllp.listeners,
            mllp: MllpSettings {
                max_connections_per_peer: limits.mllp_max_connections_per_peer,
                first_byte_timeout: limits.mllp_first_byte_timeout,
                ..mllp.settings
            },
            writer,
            log,
            log_format,
            privacy,
            dicom,
            limits,
            syslog,
            reports,
            evidence,
            publish,
            witness,
            auth,
            export,
            bulk_export,
            detection,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        assert!(!format!("{s:?}").contains("0123456789"));
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
                s.privacy
                    .pseudonym_key
                    .as_ref()
                    .map(|k| k.expose().as_slice()),
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
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn file_keys_keep_their_shape_and_the_environment_wins() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vellum.toml",
                r#"
                database_url = "postgres://postgres@127.0.0.1/db"
                database_role = "vellum_writer"
                http_addr = "127.0.0.1:0"
                mllp_addr = ""
                batch_max_events = 7
                log = "warn"

                [privacy]
                store_content = true

                [dicom]
                budget_ms = 5

                [limits]
                xml_max_depth = 9
                "#,
            )?;
            jail.set_env("VELLUM_BATCH_MAX_EVENTS", "8");
            jail.set_env("VELLUM_LIMITS_XML_MAX_DEPTH", "10");
            let s = Settings::load(Some(Path::new("vellum.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                s.database_url,
                DatabaseUrl::Postgres("postgres://postgres@127.0.0.1/db".into())
            );
            assert_eq!(s.database_role.as_deref(), Some("vellum_writer"));
            assert!(s.mllp_listeners.is_empty());
            assert_eq!(s.writer.batch_max_events, 8);
            assert_eq!(s.log, "warn");
            assert!(s.privacy.store_content);
            assert_eq!(s.dicom.budget, Duration::from_millis(5));
            assert_eq!(s.limits.xml_max_depth, 10);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn unknown_file_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vellum.toml", "htp_addr = \"127.0.0.1:0\"\n")?;
            let e = Settings::load(Some(Path::new("vellum.toml"))).unwrap_err();
            assert!(matches!(e, ConfigError::Load(_)), "{e}");
            Ok(())
        });
    }

    #[test]
    fn raw_settings_debug_shows_no_secret() {
        let mut raw = RawSettings {
            database_url: "postgres://vellum:hunter2-db@db.example/vellum".into(),
            dev_token: Some("dev-token-secret-0123456789".into()),
            ..RawSettings::default()
        };
        raw.privacy.pseudonym_key = Some("pseudonym-secret-0123456789".into());
        let debug = format!("{raw:?}");
        for secret in ["hunter2-db", "dev-token-secret", "pseudonym-secret"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains("postgres://vellum:***@db.example/vellum"),
            "{debug}"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn secrets_are_taken_as_written_and_never_quoted_in_errors() {
        figment::Jail::expect_with(|jail| {
            // In a file, a number is taken as its digits; an array is
            // refused without being quoted.
            jail.create_file("a.toml", "dev_token = 12345678901234567\n")?;
            let s = Settings::load(Some(Path::new("a.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                s.auth.dev_token.as_ref().map(|t| t.expose().as_str()),
                Some("12345678901234567")
            );
            jail.create_file("b.toml", "dev_token = [\"hunter2-array-token\"]\n")?;
            let e = Settings::load(Some(Path::new("b.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("dev_token") && !e.contains("hunter2"), "{e}");
            // In the environment: all digits, a leading zero, longer than
            // any integer type; something that looks like an array.
            let digits = "0123456789012345678901234567890123456789";
            jail.set_env("VELLUM_DEV_TOKEN", digits);
            jail.set_env("VELLUM_PRIVACY_PSEUDONYMISE_PATIENTS", "true");
            jail.set_env("VELLUM_PRIVACY_PSEUDONYM_KEY", "[\"not\", \"an array\"]");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                s.auth.dev_token.as_ref().map(|t| t.expose().as_str()),
                Some(digits)
            );
            assert_eq!(
                s.privacy
                    .pseudonym_key
                    .as_ref()
                    .map(|k| k.expose().as_slice()),
                Some(&b"[\"not\", \"an array\"]"[..])
            );
            // A wrong URL names the setting, not the password.
            jail.set_env("VELLUM_DATABASE_URL", "mysql://u:hunter2-db@h/db");
            let e = Settings::load(None).unwrap_err().to_string();
            assert!(e.contains("database_url") && !e.contains("hunter2"), "{e}");
            // A short dev token is refused without being shown.
            jail.set_env("VELLUM_DATABASE_URL", "sqlite://x.db");
            jail.set_env("VELLUM_DEV_TOKEN", "012345");
            let e = Settings::load(None).unwrap_err().to_string();
            assert!(e.contains("dev_token") && !e.contains("012345"), "{e}");
            Ok(())
        });
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
