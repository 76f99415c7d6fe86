//! `VELLUM_*` environment variables, named after the document's serde keys:
//! a top-level key `k` is `VELLUM_K`, key `k` of table `[s]` is
//! `VELLUM_S_K`. Only those names are read, so unrelated `VELLUM_*`
//! variables (test knobs) do not fail start-up.
//!
//! Every setting may instead be given as `VELLUM_<NAME>_FILE=/path` (the
//! Docker secrets / systemd credentials convention): the file's content,
//! without its trailing line break, is the value, read as if it had been
//! `VELLUM_<NAME>`. Setting both is an error. Settings whose own name ends
//! in `_file` (`signing_key_file`, `auth.token_file`) keep their meaning.

use std::collections::HashMap;

use std::path::Path;

use figment::providers::{Env, Serialized};
use figment::value::{Dict, Value};
use figment::{Profile, Provider};

use super::{ConfigError, RawSettings};

/// Settings whose values are secrets (key paths). Their variables are
/// taken as the exact text given: figment would otherwise read `0123…` as
/// a number (losing digits) or `[…]` as an array, and quote it back in a
/// type error.
const SECRET_KEYS: &[&str] = &["database_url", "dev_token", "privacy.pseudonym_key"];

/// The environment provider for the keys of `defaults` (the serialised
/// default document, so every key is present, `None`s included), but the
/// secrets (see [`secret_provider`]).
pub(super) fn provider(defaults: &Serialized<RawSettings>) -> Result<Env, ConfigError> {
    let mut data = defaults
        .data()
        .map_err(|e| ConfigError::Load(Box::new(e)))?;
    let doc = data.remove(&Profile::Default).unwrap_or_default();
    let names = env_names(&doc);
    Ok(Env::prefixed("VELLUM_").filter_map(move |k| {
        names
            .get(&k.as_str().to_ascii_lowercase())
            .filter(|path| !SECRET_KEYS.contains(&path.as_str()))
            .map(|path| path.clone().into())
    }))
}

/// The secret settings given as `VELLUM_<NAME>` variables, as text.
pub(super) fn secret_provider() -> Serialized<Dict> {
    let mut out = Dict::new();
    for path in SECRET_KEYS {
        let var = format!("VELLUM_{}", path.replace('.', "_").to_ascii_uppercase());
        // A value that is not UTF-8 is left out: validation then reports
        // the setting as missing, without its content.
        if let Some(value) = std::env::var_os(&var).and_then(|v| v.into_string().ok()) {
            if let Value::Dict(_, nested) = figment::util::nest(path, Value::from(value)) {
                merge(&mut out, nested);
            }
        }
    }
    Serialized::defaults(out)
}

/// `VELLUM_*` variables vellum reads that are not settings.
const NOT_SETTINGS: &[&str] = &["config", "dev_token"];

/// The `VELLUM_*` variables in the environment that vellum does not read
/// (a misspelt setting would otherwise be silently ignored), sorted.
pub fn unknown_variables() -> Vec<String> {
    let defaults = Serialized::defaults(RawSettings::default());
    let names = match defaults.data() {
        Ok(mut d) => env_names(&d.remove(&Profile::Default).unwrap_or_default()),
        Err(_) => return Vec::new(),
    };
    let mut unknown: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.strip_prefix("VELLUM_").is_some_and(|rest| {
                let rest = rest.to_ascii_lowercase();
                // `VELLUM_<NAME>_FILE` carries setting <NAME> from a file.
                let from_file = rest
                    .strip_suffix("_file")
                    .is_some_and(|s| names.contains_key(s));
                !names.contains_key(&rest) && !from_file && !NOT_SETTINGS.contains(&rest.as_str())
            })
        })
        .collect();
    unknown.sort();
    unknown
}

/// The values of the `VELLUM_<NAME>_FILE` variables set in the
/// environment, read from their files. Merged after [`provider`].
pub(super) fn file_provider(
    defaults: &Serialized<RawSettings>,
) -> Result<Serialized<Dict>, ConfigError> {
    let mut data = defaults
        .data()
        .map_err(|e| ConfigError::Load(Box::new(e)))?;
    let doc = data.remove(&Profile::Default).unwrap_or_default();
    let names = env_names(&doc);
    let mut out = Dict::new();
    for (var, file) in std::env::vars_os() {
        let Some(var) = var.to_str().map(str::to_ascii_lowercase) else {
            continue;
        };
        let Some(stem) = var
            .strip_prefix("vellum_")
            .and_then(|v| v.strip_suffix("_file"))
        else {
            continue;
        };
        // `VELLUM_SIGNING_KEY_FILE` is the setting `signing_key_file`.
        if names.contains_key(&var["vellum_".len()..]) {
            continue;
        }
        let Some(path) = names.get(stem) else {
            continue;
        };
        let invalid = |reason: String| ConfigError::Invalid {
            key: "VELLUM_*_FILE",
            reason,
        };
        let upper = stem.to_ascii_uppercase();
        if std::env::var_os(format!("VELLUM_{upper}")).is_some() {
            return Err(invalid(format!(
                "VELLUM_{upper} and VELLUM_{upper}_FILE are both set"
            )));
        }
        let value = read_secret_file(Path::new(&file))
            .map_err(|e| invalid(format!("VELLUM_{upper}_FILE: cannot read the file: {e}")))?;
        let value: Value = if SECRET_KEYS.contains(&path.as_str()) {
            Value::from(value)
        } else {
            value.parse().unwrap_or_else(|e| match e {})
        };
        if let Value::Dict(_, nested) = figment::util::nest(path, value) {
            merge(&mut out, nested);
        }
    }
    Ok(Serialized::defaults(out))
}

/// A secret file's content without its trailing line break. The error names
/// no content.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Merges the nested dictionary `add` into `into`.
fn merge(into: &mut Dict, add: Dict) {
    for (k, v) in add {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, more)) => merge(existing, more),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Lowercase variable name (after `VELLUM_`) → key path (`dicom.folders`).
fn env_names(doc: &Dict) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for (key, value) in doc {
        match value {
            Value::Dict(_, table) => {
                for field in table.keys() {
                    names.insert(format!("{key}_{field}"), format!("{key}.{field}"));
                }
            }
            _ => {
                names.insert(key.clone(), key.clone());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUrl;

    fn names() -> HashMap<String, String> {
        let defaults = Serialized::defaults(RawSettings::default());
        let mut data = defaults.data().unwrap();
        env_names(&data.remove(&Profile::Default).unwrap())
    }

    #[test]
    fn every_documented_variable_is_derived() {
        let names = names();
        // The names operators, docs and tests use today.
        let documented = [
            ("DATABASE_URL", "database_url"),
            ("DATABASE_ROLE", "database_role"),
            ("DATABASE_WRITER_ROLE", "database_writer_role"),
            ("MIGRATE_ON_START", "migrate_on_start"),
            ("HTTP_ADDR", "http_addr"),
            ("MAX_BODY_BYTES", "max_body_bytes"),
            ("PUBLIC_BASE_URL", "public_base_url"),
            ("HTTP_TLS_CERT", "http_tls_cert"),
            ("HTTP_TLS_KEY", "http_tls_key"),
            ("HTTP_TLS_CLIENT_CA", "http_tls_client_ca"),
            ("MLLP_ADDR", "mllp_addr"),
            ("MLLP_TLS_ADDR", "mllp_tls_addr"),
            ("MLLP_MAX_FRAME_BYTES", "mllp_max_frame_bytes"),
            ("MLLP_READ_TIMEOUT_MS", "mllp_read_timeout_ms"),
            ("MLLP_MAX_CONNECTIONS", "mllp_max_connections"),
            ("MLLP_TLS_CERT", "mllp_tls_cert"),
            ("MLLP_TLS_KEY", "mllp_tls_key"),
            ("MLLP_TLS_CLIENT_CA", "mllp_tls_client_ca"),
            ("BATCH_MAX_EVENTS", "batch_max_events"),
            ("BATCH_MAX_WAIT_US", "batch_max_wait_us"),
            ("WRITER_QUEUE", "writer_queue"),
            ("SIGNING_KEY_FILE", "signing_key_file"),
            ("CHECKPOINT_ORIGIN", "checkpoint_origin"),
            ("CHECKPOINT_EVERY_ENTRIES", "checkpoint_every_entries"),
            ("CHECKPOINT_EVERY_SECONDS", "checkpoint_every_seconds"),
            ("TSA_URLS", "tsa_urls"),
            ("TSA_CA_FILE", "tsa_ca_file"),
            ("DEV_TOKEN", "dev_token"),
            ("AUTH_TOKENS", "auth.tokens"),
            ("AUTH_CLIENTS", "auth.clients"),
            ("AUTH_TOKEN_FILE", "auth.token_file"),
            ("AUTH_METRICS_PUBLIC", "auth.metrics_public"),
            ("AUTH_RECORD_READS", "auth.record_reads"),
            ("AUTH_JWKS_FILE", "auth.jwks_file"),
            ("AUTH_JWKS_URL", "auth.jwks_url"),
            ("AUTH_JWT_ISSUER", "auth.jwt_issuer"),
            ("AUTH_JWT_AUDIENCE", "auth.jwt_audience"),
            ("AUTH_JWT_SCOPE_ROLES", "auth.jwt_scope_roles"),
            ("AUTH_JWT_LEEWAY_S", "auth.jwt_leeway_s"),
            ("AUTH_JWKS_REFRESH_S", "auth.jwks_refresh_s"),
            ("AUTH_JWKS_REFRESH_MIN_S", "auth.jwks_refresh_min_s"),
            ("LOG", "log"),
            ("LOG_FORMAT", "log_format"),
            ("PRIVACY_STORE_CONTENT", "privacy.store_content"),
            (
                "PRIVACY_PSEUDONYMISE_PATIENTS",
                "privacy.pseudonymise_patients",
            ),
            ("PRIVACY_PSEUDONYM_KEY", "privacy.pseudonym_key"),
            ("DICOM_FOLDERS", "dicom.folders"),
            ("DICOM_INDEX_PATH", "dicom.index_path"),
            ("DICOM_DICOMWEB_URL", "dicom.dicomweb_url"),
            ("DICOM_DICOMWEB_TIMEOUT_MS", "dicom.dicomweb_timeout_ms"),
            ("DICOM_BUDGET_MS", "dicom.budget_ms"),
            ("DICOM_MAX_UPLOAD_BYTES", "dicom.max_upload_bytes"),
            ("DICOM_WORKERS", "dicom.workers"),
            ("DICOM_PENDING_POLL_MS", "dicom.pending_poll_ms"),
            ("DICOM_PENDING_RETRY_MAX_MS", "dicom.pending_retry_max_ms"),
            (
                "DICOM_PENDING_GIVE_UP_AFTER_S",
                "dicom.pending_give_up_after_s",
            ),
            ("DICOM_PENDING_BATCH", "dicom.pending_batch"),
            ("DICOM_MAX_HEADER_BYTES", "dicom.max_header_bytes"),
            ("DICOM_MAX_ELEMENT_BYTES", "dicom.max_element_bytes"),
            (
                "DICOM_RESCAN_MIN_INTERVAL_MS",
                "dicom.rescan_min_interval_ms",
            ),
            ("LIMITS_XML_MAX_DEPTH", "limits.xml_max_depth"),
            ("LIMITS_XML_MAX_BYTES", "limits.xml_max_bytes"),
            ("LIMITS_JSON_MAX_DEPTH", "limits.json_max_depth"),
            (
                "LIMITS_JSON_MAX_KEYS_PER_OBJECT",
                "limits.json_max_keys_per_object",
            ),
            ("LIMITS_BUNDLE_MAX_ENTRIES", "limits.bundle_max_entries"),
            ("LIMITS_BUNDLE_CONCURRENCY", "limits.bundle_concurrency"),
            ("LIMITS_SEARCH_MAX_PARAMS", "limits.search_max_params"),
            ("LIMITS_SEARCH_MAX_VALUES", "limits.search_max_values"),
            (
                "LIMITS_HTTP_HEADER_TIMEOUT_MS",
                "limits.http_header_timeout_ms",
            ),
            ("LIMITS_HTTP_BODY_TIMEOUT_MS", "limits.http_body_timeout_ms"),
            ("LIMITS_HTTP_MAX_CONNECTIONS", "limits.http_max_connections"),
            (
                "LIMITS_HTTP_MAX_CONNECTIONS_PER_PEER",
                "limits.http_max_connections_per_peer",
            ),
            (
                "LIMITS_MLLP_MAX_CONNECTIONS_PER_PEER",
                "limits.mllp_max_connections_per_peer",
            ),
            (
                "LIMITS_MLLP_FIRST_BYTE_TIMEOUT_MS",
                "limits.mllp_first_byte_timeout_ms",
            ),
            ("REPORTS_FAST_ACCEPT_MS", "reports.fast_accept_ms"),
            ("REPORTS_DRIFT_CHECK", "reports.drift_check"),
            ("REPORTS_DRIFT_CHECK_SECONDS", "reports.drift_check_seconds"),
            (
                "REPORTS_DRIFT_BASELINE_CASES",
                "reports.drift_baseline_cases",
            ),
            ("REPORTS_DRIFT_WINDOW_DAYS", "reports.drift_window_days"),
            ("REPORTS_DRIFT_MIN_CASES", "reports.drift_min_cases"),
            ("REPORTS_DRIFT_Z", "reports.drift_z"),
            (
                "REPORTS_CACHE_REFRESH_SECONDS",
                "reports.cache_refresh_seconds",
            ),
            ("EVIDENCE_CHECKPOINT_DIR", "evidence.checkpoint_dir"),
            ("EVIDENCE_CHECKPOINT_COMMAND", "evidence.checkpoint_command"),
            (
                "EVIDENCE_CHECKPOINT_COMMAND_TIMEOUT_MS",
                "evidence.checkpoint_command_timeout_ms",
            ),
            ("WITNESS_KEY_FILE", "witness.key_file"),
            ("WITNESS_LOGS", "witness.logs"),
            ("WITNESS_URLS", "witness.urls"),
            ("WITNESS_VKEYS", "witness.vkeys"),
            ("WITNESS_TOKENS", "witness.tokens"),
            ("WITNESS_TIMEOUT_MS", "witness.timeout_ms"),
            ("EXPORT_SYSLOG_ADDR", "export.syslog_addr"),
            ("EXPORT_SYSLOG_TLS_ADDR", "export.syslog_tls_addr"),
            ("EXPORT_HTTP_URL", "export.http_url"),
            ("EXPORT_HTTP_HEADER_NAME", "export.http_header_name"),
            ("EXPORT_HTTP_HEADER_VALUE", "export.http_header_value"),
            ("EXPORT_TLS_CA", "export.tls_ca"),
            ("EXPORT_TLS_CLIENT_CERT", "export.tls_client_cert"),
            ("EXPORT_TLS_CLIENT_KEY", "export.tls_client_key"),
            ("EXPORT_PROFILES", "export.profiles"),
            ("EXPORT_TYPES", "export.types"),
            ("EXPORT_BATCH_MAX_EVENTS", "export.batch_max_events"),
            ("EXPORT_POLL_MS", "export.poll_ms"),
            ("EXPORT_RETRY_MAX_MS", "export.retry_max_ms"),
            ("EXPORT_TIMEOUT_MS", "export.timeout_ms"),
            ("BULK_EXPORT_DIR", "bulk_export.dir"),
            ("BULK_EXPORT_MAX_JOBS", "bulk_export.max_jobs"),
            ("DETECTION_ENABLED", "detection.enabled"),
            ("DETECTION_RULES", "detection.rules"),
            ("DETECTION_POLL_MS", "detection.poll_ms"),
            ("DETECTION_BATCH_MAX_EVENTS", "detection.batch_max_events"),
            ("DETECTION_MAX_LISTED_EVENTS", "detection.max_listed_events"),
            (
                "DETECTION_PHI_READS_PER_HOUR",
                "detection.phi_reads_per_hour",
            ),
            ("DETECTION_BUSINESS_HOURS", "detection.business_hours"),
            ("DETECTION_BUSINESS_DAYS", "detection.business_days"),
            ("DETECTION_TIMEZONE", "detection.timezone"),
            ("DETECTION_AFTER_HOURS_MAX", "detection.after_hours_max"),
            (
                "DETECTION_AFTER_HOURS_WINDOW_MINUTES",
                "detection.after_hours_window_minutes",
            ),
            ("DETECTION_INJECTION_MAX", "detection.injection_max"),
            (
                "DETECTION_INJECTION_WINDOW_MINUTES",
                "detection.injection_window_minutes",
            ),
            ("DETECTION_AUTH_FAILURES_MAX", "detection.auth_failures_max"),
            (
                "DETECTION_AUTH_FAILURES_WINDOW_MINUTES",
                "detection.auth_failures_window_minutes",
            ),
        ];
        for (var, path) in documented {
            assert_eq!(
                names.get(&var.to_ascii_lowercase()).map(String::as_str),
                Some(path),
                "VELLUM_{var}"
            );
        }
        let syslog = [
            "addr",
            "tls_addr",
            "udp_addr",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "max_frame_bytes",
            "read_timeout_ms",
            "max_connections",
            "max_connections_per_peer",
        ];
        for key in syslog {
            assert_eq!(
                names.get(&format!("syslog_{key}")),
                Some(&format!("syslog.{key}")),
                "VELLUM_SYSLOG_{key}"
            );
        }
        // No name left over, and none claimed by two keys.
        assert_eq!(names.len(), documented.len() + syslog.len());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn secrets_come_from_files_and_never_show() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("dev_token", "file-dev-token-0123456789\n")?;
            jail.create_file("key", "pseudonym-key-0123456789abcdef0123\r\n")?;
            jail.create_file("db", "postgres://vellum:hunter2-secret@db.example/vellum\n")?;
            jail.create_file("signing.key", "not a secret setting")?;
            jail.set_env("VELLUM_DEV_TOKEN_FILE", "dev_token");
            jail.set_env("VELLUM_PRIVACY_PSEUDONYM_KEY_FILE", "key");
            jail.set_env("VELLUM_PRIVACY_PSEUDONYMISE_PATIENTS", "true");
            jail.set_env("VELLUM_DATABASE_URL_FILE", "db");
            // A setting whose own name ends in `_FILE` keeps its meaning.
            jail.set_env("VELLUM_SIGNING_KEY_FILE", "signing.key");
            jail.set_env("VELLUM_WRITER_QUEUE_FILE", "queue");
            jail.create_file("queue", "23\n")?;
            let s = super::super::Settings::load(None).map_err(|e| e.to_string())?;
            let dev = s.auth.dev_token.as_ref().unwrap();
            assert_eq!(dev.expose(), "file-dev-token-0123456789");
            assert_eq!(s.writer.queue, 23);
            let key = s.privacy.pseudonym_key.as_ref().unwrap();
            assert_eq!(key.expose(), b"pseudonym-key-0123456789abcdef0123");
            assert!(matches!(s.database_url, DatabaseUrl::Postgres(_)));
            assert_eq!(
                s.evidence.signing_key_file.as_deref(),
                Some(std::path::Path::new("signing.key"))
            );
            let debug = format!("{s:?}");
            for secret in ["file-dev-token", "pseudonym-key", "hunter2"] {
                assert!(!debug.contains(secret), "{secret} in {debug}");
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn a_secret_file_error_names_no_content() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VELLUM_AUTH_TOKENS_FILE", "missing");
            let e = super::super::Settings::load(None).unwrap_err().to_string();
            assert!(e.contains("VELLUM_AUTH_TOKENS_FILE"), "{e}");
            jail.create_file("tokens", "sha256:00 x source")?;
            jail.set_env("VELLUM_AUTH_TOKENS_FILE", "tokens");
            jail.set_env("VELLUM_AUTH_TOKENS", "sha256:11 y source");
            let e = super::super::Settings::load(None).unwrap_err().to_string();
            assert!(e.contains("both set"), "{e}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn unrelated_vellum_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VELLUM_TEST_KNOB", "t");
            jail.set_env("VELLUM_NOT_A_SETTING", "x");
            jail.set_env("VELLUM_WRITER_QUEUE", "17");
            let s = super::super::Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.writer.queue, 17);
            Ok(())
        });
    }
}
