//! The MLLP section: listener addresses, limits and TLS (`mllp_*` keys).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::privacy::PrivacySettings;
use super::ConfigError;

/// The MLLP keys as written (top level of the file, `VELLUM_<KEY>`).
#[derive(Debug, Clone)]
pub struct RawMllp {
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
    /// PEM private key of `mllp_tls_cert` (a path; the key stays in the file).
    pub mllp_tls_key: Option<String>,
    /// PEM CA bundle: when set, MLLP clients must present a certificate
    /// it signed (mutual TLS).
    pub mllp_tls_client_ca: Option<String>,
}

impl Default for RawMllp {
    fn default() -> Self {
        RawMllp {
            mllp_addr: "127.0.0.1:2575".into(),
            mllp_tls_addr: String::new(),
            mllp_max_frame_bytes: 1024 * 1024,
            mllp_read_timeout_ms: 300_000,
            mllp_max_connections: 256,
            mllp_tls_cert: None,
            mllp_tls_key: None,
            mllp_tls_client_ca: None,
        }
    }
}

/// MLLP listener limits and TLS.
#[derive(Debug, Clone)]
pub struct MllpSettings {
    pub max_frame_bytes: usize,
    pub read_timeout: Duration,
    pub max_connections: usize,
    /// Most connections one peer address may hold open (`[limits]`).
    pub max_connections_per_peer: usize,
    /// How long a new connection may stay silent before its first byte
    /// (`[limits]`): idle connections must not lock real senders out.
    pub first_byte_timeout: Duration,
    pub tls: Option<MllpTls>,
    /// `[privacy]`, applied to the patient of every mapped message.
    pub privacy: PrivacySettings,
}

impl Default for MllpSettings {
    fn default() -> Self {
        let raw = RawMllp::default();
        MllpSettings {
            max_frame_bytes: raw.mllp_max_frame_bytes,
            read_timeout: Duration::from_millis(raw.mllp_read_timeout_ms),
            max_connections: raw.mllp_max_connections,
            max_connections_per_peer: super::limits::DEFAULT_MLLP_MAX_CONNECTIONS_PER_PEER,
            first_byte_timeout: Duration::from_millis(
                super::limits::DEFAULT_MLLP_FIRST_BYTE_TIMEOUT_MS,
            ),
            tls: None,
            privacy: PrivacySettings::default(),
        }
    }
}

/// One MLLP listener: its address and whether it speaks TLS (with the
/// certificate in `MllpSettings::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MllpListenerSpec {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// MLLP over TLS: server certificate and key, optional client CA (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The validated MLLP section: every listener and what they share.
#[derive(Debug, Clone)]
pub struct MllpSection {
    /// In configuration order (plain ones first).
    pub listeners: Vec<MllpListenerSpec>,
    pub settings: MllpSettings,
}

impl MllpSection {
    /// `privacy` is the validated `[privacy]` section, which every listener
    /// applies to the messages it maps.
    pub fn validate(raw: RawMllp, privacy: &PrivacySettings) -> Result<Self, ConfigError> {
        let plain = parse_addr_list("mllp_addr", &raw.mllp_addr)?;
        let tls_addrs = parse_addr_list("mllp_tls_addr", &raw.mllp_tls_addr)?;
        super::positive("mllp_max_frame_bytes", raw.mllp_max_frame_bytes)?;
        super::positive("mllp_max_connections", raw.mllp_max_connections)?;
        let tls = validate_tls(&raw)?;
        if !tls_addrs.is_empty() && tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "mllp_tls_addr",
                reason: "TLS listeners need mllp_tls_cert and mllp_tls_key".into(),
            });
        }
        // Without dedicated TLS addresses a configured certificate makes the
        // mllp_addr listeners TLS-only (as before mllp_tls_addr existed).
        let plain_is_tls = tls.is_some() && tls_addrs.is_empty();
        let mut listeners: Vec<MllpListenerSpec> = Vec::new();
        for (key, addrs, is_tls) in [
            ("mllp_addr", &plain, plain_is_tls),
            ("mllp_tls_addr", &tls_addrs, true),
        ] {
            for &addr in addrs {
                // Port 0 (an OS-chosen port) never collides.
                if addr.port() != 0 && listeners.iter().any(|l| l.addr == addr) {
                    return Err(ConfigError::Invalid {
                        key,
                        reason: format!("{addr} is listed more than once"),
                    });
                }
                listeners.push(MllpListenerSpec { addr, tls: is_tls });
            }
        }
        if raw.mllp_read_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "mllp_read_timeout_ms",
                reason: "must be greater than 0".into(),
            });
        }
        Ok(MllpSection {
            listeners,
            settings: MllpSettings {
                max_frame_bytes: raw.mllp_max_frame_bytes,
                read_timeout: Duration::from_millis(raw.mllp_read_timeout_ms),
                max_connections: raw.mllp_max_connections,
                max_connections_per_peer: super::limits::DEFAULT_MLLP_MAX_CONNECTIONS_PER_PEER,
                first_byte_timeout: Duration::from_millis(
                    super::limits::DEFAULT_MLLP_FIRST_BYTE_TIMEOUT_MS,
                ),
                tls,
                privacy: privacy.clone(),
            },
        })
    }
}

/// Certificate, key and client CA go together and must be files.
fn validate_tls(raw: &RawMllp) -> Result<Option<MllpTls>, ConfigError> {
    match (&raw.mllp_tls_cert, &raw.mllp_tls_key) {
        (None, None) => {
            if raw.mllp_tls_client_ca.is_some() {
                return Err(ConfigError::Invalid {
                    key: "mllp_tls_client_ca",
                    reason: "needs mllp_tls_cert and mllp_tls_key".into(),
                });
            }
            Ok(None)
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
            Ok(Some(MllpTls {
                cert: cert.into(),
                key: key.into(),
                client_ca: raw.mllp_tls_client_ca.as_ref().map(PathBuf::from),
            }))
        }
        (Some(_), None) | (None, Some(_)) => Err(ConfigError::Invalid {
            key: "mllp_tls_cert",
            reason: "mllp_tls_cert and mllp_tls_key go together".into(),
        }),
    }
}

/// Parses a comma-separated address list; blanks between commas are
/// ignored, so `""` is the empty list.
fn parse_addr_list(key: &'static str, list: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| super::addr::listen_addr(key, a))
        .collect()
}
