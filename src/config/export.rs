//! `[export]`: the SIEM feed (env `VELLUM_EXPORT_<KEY>`). Every destination
//! is off by default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secret::Secret;
use super::ConfigError;

/// `[export]` as written by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExport {
    /// RFC 5424 syslog over TCP (RFC 6587 octet counting), `host:port`;
    /// empty: off.
    #[serde(deserialize_with = "super::addr::string_or_number")]
    pub syslog_addr: String,
    /// RFC 5425 syslog over TLS, `host:port` (usually port 6514); empty: off.
    #[serde(deserialize_with = "super::addr::string_or_number")]
    pub syslog_tls_addr: String,
    /// JSON Lines batches POSTed to this URL (https://…); empty: off.
    pub http_url: String,
    /// The header that carries the collector's token (e.g. `Authorization`).
    pub http_header_name: String,
    /// Its value (e.g. `Splunk <token>`); a secret, best given as
    /// `VELLUM_EXPORT_HTTP_HEADER_VALUE_FILE`.
    #[serde(deserialize_with = "optional_string_or_number")]
    pub http_header_value: Option<String>,
    /// PEM CA bundle the receivers' certificates must chain to (syslog TLS
    /// and HTTPS); unset: the system's trust store.
    pub tls_ca: Option<String>,
    /// PEM client certificate and key presented to the receivers (mutual TLS).
    pub tls_client_cert: Option<String>,
    pub tls_client_key: Option<String>,
    /// Only events with one of these profiles (short names, e.g.
    /// `radiology-ai-inference`), comma-separated; empty: every profile.
    #[serde(deserialize_with = "super::addr::string_or_number")]
    pub profiles: String,
    /// Only events of one of these types (`code` or `system|code` of
    /// `AuditEvent.type`), comma-separated; empty: every type (a single
    /// code such as `110113` arrives from the environment as a number).
    #[serde(deserialize_with = "super::addr::string_or_number")]
    pub types: String,
    /// Most events per syslog connection or HTTP request.
    pub batch_max_events: usize,
    /// How often an idle exporter looks for new committed events, ms.
    pub poll_ms: u64,
    /// Longest wait between retries after a failed delivery, ms (the wait
    /// doubles from 100 ms up to this).
    pub retry_max_ms: u64,
    /// How long one delivery (connect, send, acknowledgement) may take, ms.
    pub timeout_ms: u64,
}

/// An optional string setting that may arrive as a number (an all-digit
/// token).
fn optional_string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "super::addr::string_or_number")] String);
    Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(s)| s))
}

impl Default for RawExport {
    fn default() -> Self {
        RawExport {
            syslog_addr: String::new(),
            syslog_tls_addr: String::new(),
            http_url: String::new(),
            http_header_name: "Authorization".into(),
            http_header_value: None,
            tls_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
            profiles: String::new(),
            types: String::new(),
            batch_max_events: 500,
            poll_ms: 500,
            retry_max_ms: 30_000,
            timeout_ms: 30_000,
        }
    }
}

/// A validated `host:port` of a receiver (a name is resolved at connect
/// time, so a collector behind DNS can move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Certificates of the outbound TLS connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportTls {
    pub ca: Option<PathBuf>,
    /// Certificate and key, for mutual TLS.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Validated `[export]`.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub syslog_addr: Option<Endpoint>,
    pub syslog_tls_addr: Option<Endpoint>,
    pub http_url: Option<String>,
    pub http_header: Option<(String, Secret<String>)>,
    pub tls: ExportTls,
    pub profiles: Vec<String>,
    pub types: Vec<String>,
    pub batch_max_events: usize,
    pub poll: Duration,
    pub retry_max: Duration,
    pub timeout: Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings::validate(RawExport::default())
            .unwrap_or_else(|_| unreachable!("the default [export] section is valid"))
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn endpoint(key: &'static str, v: &str) -> Result<Option<Endpoint>, ConfigError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, format!("`{v}` is not host:port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(key, format!("`{v}` has no valid port")))?;
    if host.is_empty() {
        return Err(invalid(key, format!("`{v}` has no host")));
    }
    Ok(Some(Endpoint {
        host: host.to_string(),
        port,
    }))
}

fn file(key: &'static str, p: &Option<String>) -> Result<Option<PathBuf>, ConfigError> {
    match p.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) if Path::new(p).is_file() => Ok(Some(PathBuf::from(p))),
        Some(p) => Err(invalid(key, format!("{p} is not a readable file"))),
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn millis(key: &'static str, v: u64) -> Result<Duration, ConfigError> {
    if v == 0 {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(Duration::from_millis(v))
}

impl ExportSettings {
    pub fn validate(raw: RawExport) -> Result<Self, ConfigError> {
        let http_url = Some(raw.http_url.trim())
            .filter(|u| !u.is_empty())
            .map(String::from);
        if let Some(u) = &http_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(invalid("export.http_url", "must start with https://"));
            }
        }
        let header_name = raw.http_header_name.trim();
        let http_header = match raw.http_header_value.filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(value) => {
                let name_ok = !header_name.is_empty()
                    && header_name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                if !name_ok {
                    return Err(invalid(
                        "export.http_header_name",
                        "must be a header name (letters, digits, - and _)",
                    ));
                }
                if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                    return Err(invalid(
                        "export.http_header_value",
                        "must be printable ASCII",
                    ));
                }
                Some((header_name.to_string(), Secret::new(value)))
            }
        };
        let client = match (
            file("export.tls_client_cert", &raw.tls_client_cert)?,
            file("export.tls_client_key", &raw.tls_client_key)?,
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "export.tls_client_cert",
                    "export.tls_client_cert and export.tls_client_key go together",
                ))
            }
        };
        super::positive("export.batch_max_events", raw.batch_max_events)?;
        Ok(ExportSettings {
            syslog_addr: endpoint("export.syslog_addr", &raw.syslog_addr)?,
            syslog_tls_addr: endpoint("export.syslog_tls_addr", &raw.syslog_tls_addr)?,
            http_url,
            http_header,
            tls: ExportTls {
                ca: file("export.tls_ca", &raw.tls_ca)?,
                client,
            },
            profiles: list(&raw.profiles),
            types: list(&raw.types),
            batch_max_events: raw.batch_max_events,
            poll: millis("export.poll_ms", raw.poll_ms)?,
            retry_max: millis("export.retry_max_ms", raw.retry_max_ms)?,
            timeout: millis("export.timeout_ms", raw.timeout_ms)?,
        })
    }

    /// True when at least one destination is on.
    pub fn any(&self) -> bool {
        self.syslog_addr.is_some() || self.syslog_tls_addr.is_some() || self.http_url.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_addresses_are_validated() {
        let s = ExportSettings::default();
        assert!(!s.any());
        assert_eq!(s.batch_max_events, 500);
        let raw = RawExport {
            syslog_tls_addr: "siem.example.org:6514".into(),
            profiles: " audit-log-access, radiology-ai-inference ".into(),
            ..RawExport::default()
        };
        let s = ExportSettings::validate(raw).unwrap();
        assert_eq!(
            s.syslog_tls_addr,
            Some(Endpoint {
                host: "siem.example.org".into(),
                port: 6514
            })
        );
        assert_eq!(s.profiles, ["audit-log-access", "radiology-ai-inference"]);
        for (raw, key) in [
            (
                RawExport {
                    syslog_addr: "nohost".into(),
                    ..RawExport::default()
                },
                "export.syslog_addr",
            ),
            (
                RawExport {
                    http_url: "ftp://x".into(),
                    ..RawExport::default()
                },
                "export.http_url",
            ),
            (
                RawExport {
                    http_header_name: "Bad Name".into(),
                    http_header_value: Some("Splunk t".into()),
                    ..RawExport::default()
                },
                "export.http_header_name",
            ),
            (
                RawExport {
                    tls_client_cert: Some("/nonexistent/cert.pem".into()),
                    ..RawExport::default()
                },
                "export.tls_client_cert",
            ),
        ] {
            match ExportSettings::validate(raw) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn destinations_come_from_vellum_export_variables_and_the_token_from_a_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hec-token", "Splunk 0000-1111\n")?;
            jail.set_env("VELLUM_EXPORT_SYSLOG_ADDR", "127.0.0.1:1514");
            jail.set_env(
                "VELLUM_EXPORT_HTTP_URL",
                "https://hec.example:8088/services",
            );
            jail.set_env("VELLUM_EXPORT_HTTP_HEADER_VALUE_FILE", "hec-token");
            jail.set_env("VELLUM_EXPORT_TYPES", "110113");
            let s = super::super::Settings::load(None).map_err(|e| e.to_string())?;
            let e = &s.export;
            assert_eq!(e.syslog_addr.as_ref().map(|a| a.port), Some(1514));
            assert_eq!(e.types, ["110113"]);
            let (name, value) = e.http_header.as_ref().expect("header");
            assert_eq!(name, "Authorization");
            assert_eq!(value.expose(), "Splunk 0000-1111");
            assert!(!format!("{e:?}").contains("0000-1111"));
            Ok(())
        });
    }
}
