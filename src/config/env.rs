//! `VELLUM_*` environment variables, named after the document's serde keys:
//! a top-level key `k` is `VELLUM_K`, key `k` of table `[s]` is
//! `VELLUM_S_K`. Only those names are read, so unrelated `VELLUM_*`
//! variables (test knobs) do not fail start-up.

use std::collections::HashMap;

use figment::providers::{Env, Serialized};
use figment::value::{Dict, Value};
use figment::{Profile, Provider};

use super::{ConfigError, RawSettings};

/// The environment provider for the keys of `defaults` (the serialised
/// default document, so every key is present, `None`s included).
pub(super) fn provider(defaults: &Serialized<RawSettings>) -> Result<Env, ConfigError> {
    let mut data = defaults
        .data()
        .map_err(|e| ConfigError::Load(Box::new(e)))?;
    let doc = data.remove(&Profile::Default).unwrap_or_default();
    let names = env_names(&doc);
    Ok(Env::prefixed("VELLUM_").filter_map(move |k| {
        names
            .get(&k.as_str().to_ascii_lowercase())
            .map(|path| path.clone().into())
    }))
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
                !names.contains_key(&rest) && !NOT_SETTINGS.contains(&rest.as_str())
            })
        })
        .collect();
    unknown.sort();
    unknown
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
            ("MIGRATE_ON_START", "migrate_on_start"),
            ("HTTP_ADDR", "http_addr"),
            ("MAX_BODY_BYTES", "max_body_bytes"),
            ("PUBLIC_BASE_URL", "public_base_url"),
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
            ("DEV_TOKEN", "dev_token"),
            ("AUTH_TOKENS", "auth.tokens"),
            ("AUTH_TOKEN_FILE", "auth.token_file"),
            ("AUTH_METRICS_PUBLIC", "auth.metrics_public"),
            ("AUTH_RECORD_READS", "auth.record_reads"),
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
