//! `[syslog]`: the ATNA syslog listeners (env `VELLUM_SYSLOG_<KEY>`). All
//! off by default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mllp::MllpTls;
use super::privacy::PrivacySettings;
use super::ConfigError;

/// `[syslog]` as written by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSyslog {
    /// RFC 5424 over TCP (RFC 6587 octet counting or LF framing); empty: off.
    #[serde(deserialize_with = "super::addr::string_or_number")]
    pub addr: String,
    /// RFC 5425 (TLS, octet counting), usually port 6514; empty: off.
    #[serde(deserialize_with = "super::addr::string_or_number")]
    pub tls_addr: String,
    /// RFC 5426 (UDP, one message per datagram); empty: off.
    #[serde(deserialize_with = "super::addr::string_or_number")]
    pub udp_addr: String,
    /// PEM certificate chain and key of the TLS listener.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// PEM CA bundle: when set, TLS senders must present a certificate it
    /// signed (mutual TLS, as ATNA secure nodes do).
    pub tls_client_ca: Option<String>,
    /// Largest syslog message accepted, bytes (larger: the connection is
    /// closed; on UDP the datagram becomes a parse-failure event).
    pub max_frame_bytes: usize,
    /// How long a TCP/TLS connection may take to deliver its next whole
    /// message, ms.
    pub read_timeout_ms: u64,
    /// Most TCP/TLS connections (together) served at once; also the most
    /// UDP messages being stored at once.
    pub max_connections: usize,
    /// Most TCP/TLS connections from one IP address; more are closed at once.
    pub max_connections_per_peer: usize,
}

impl Default for RawSyslog {
    fn default() -> Self {
        RawSyslog {
            addr: String::new(),
            tls_addr: String::new(),
            udp_addr: String::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            max_frame_bytes: 1024 * 1024,
            read_timeout_ms: 300_000,
            max_connections: 256,
            max_connections_per_peer: 64,
        }
    }
}

/// Validated `[syslog]`.
#[derive(Debug, Clone)]
pub struct SyslogSettings {
    pub addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    pub udp_addr: Option<SocketAddr>,
    pub tls: Option<MllpTls>,
    pub max_frame_bytes: usize,
    pub read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// `[privacy]`: raw messages are kept only with `store_content`.
    pub privacy: PrivacySettings,
}

impl Default for SyslogSettings {
    fn default() -> Self {
        // The defaults validate (no addresses, no files).
        SyslogSettings::validate(RawSyslog::default(), &PrivacySettings::default())
            .unwrap_or_else(|_| unreachable!("the default [syslog] section is valid"))
    }
}

fn addr(key: &'static str, v: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    super::addr::listen_addr(key, v).map(Some)
}

impl SyslogSettings {
    pub fn validate(raw: RawSyslog, privacy: &PrivacySettings) -> Result<Self, ConfigError> {
        let tls = match (&raw.tls_cert, &raw.tls_key) {
            (None, None) => {
                if raw.tls_client_ca.is_some() {
                    return Err(ConfigError::Invalid {
                        key: "syslog.tls_client_ca",
                        reason: "needs syslog.tls_cert and syslog.tls_key".into(),
                    });
                }
                None
            }
            (Some(cert), Some(key)) => {
                for (k, p) in [
                    ("syslog.tls_cert", Some(cert)),
                    ("syslog.tls_key", Some(key)),
                    ("syslog.tls_client_ca", raw.tls_client_ca.as_ref()),
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
                    client_ca: raw.tls_client_ca.as_ref().map(PathBuf::from),
                })
            }
            _ => {
                return Err(ConfigError::Invalid {
                    key: "syslog.tls_cert",
                    reason: "syslog.tls_cert and syslog.tls_key go together".into(),
                })
            }
        };
        let tls_addr = addr("syslog.tls_addr", &raw.tls_addr)?;
        if tls_addr.is_some() && tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "syslog.tls_addr",
                reason: "the TLS listener needs syslog.tls_cert and syslog.tls_key".into(),
            });
        }
        super::positive("syslog.max_frame_bytes", raw.max_frame_bytes)?;
        super::positive("syslog.max_connections", raw.max_connections)?;
        super::positive(
            "syslog.max_connections_per_peer",
            raw.max_connections_per_peer,
        )?;
        if raw.read_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "syslog.read_timeout_ms",
                reason: "must be greater than 0".into(),
            });
        }
        Ok(SyslogSettings {
            addr: addr("syslog.addr", &raw.addr)?,
            tls_addr,
            udp_addr: addr("syslog.udp_addr", &raw.udp_addr)?,
            tls,
            max_frame_bytes: raw.max_frame_bytes,
            read_timeout: Duration::from_millis(raw.read_timeout_ms),
            max_connections: raw.max_connections,
            max_connections_per_peer: raw.max_connections_per_peer,
            privacy: privacy.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_tls_needs_a_certificate() {
        let s = SyslogSettings::default();
        assert!(s.addr.is_none() && s.tls_addr.is_none() && s.udp_addr.is_none());
        let raw = RawSyslog {
            tls_addr: "127.0.0.1:6514".into(),
            ..RawSyslog::default()
        };
        let e = SyslogSettings::validate(raw, &PrivacySettings::default()).unwrap_err();
        assert!(e.to_string().contains("syslog.tls_addr"), "{e}");
        let raw = RawSyslog {
            udp_addr: "nowhere".into(),
            ..RawSyslog::default()
        };
        let e = SyslogSettings::validate(raw, &PrivacySettings::default()).unwrap_err();
        assert!(e.to_string().contains("syslog.udp_addr"), "{e}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn listeners_come_from_vellum_syslog_variables() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VELLUM_SYSLOG_ADDR", "127.0.0.1:1514");
            jail.set_env("VELLUM_SYSLOG_UDP_ADDR", "127.0.0.1:1515");
            jail.set_env("VELLUM_SYSLOG_MAX_CONNECTIONS_PER_PEER", "3");
            jail.set_env("VELLUM_PRIVACY_STORE_CONTENT", "true");
            let s = super::super::Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.syslog.addr, Some("127.0.0.1:1514".parse().unwrap()));
            assert_eq!(s.syslog.udp_addr, Some("127.0.0.1:1515".parse().unwrap()));
            assert_eq!(s.syslog.tls_addr, None);
            assert_eq!(s.syslog.max_connections_per_peer, 3);
            assert!(s.syslog.privacy.store_content);
            Ok(())
        });
    }
}
