//! `[limits]`: bounds on request bodies (env `VELLUM_LIMITS_<KEY>`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

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
    /// Most entries in one batch or transaction Bundle.
    pub bundle_max_entries: usize,
    /// Most entries of one Bundle validated or stored at once (bounds the
    /// memory and writer-queue share of a single request).
    pub bundle_concurrency: usize,
    /// Most search parameters (name=value pairs) in one search.
    pub search_max_params: usize,
    /// Most comma-separated values (OR) in one search parameter.
    pub search_max_values: usize,
    /// How long an HTTP client may take to send a request's headers, ms.
    pub http_header_timeout_ms: u64,
    /// How long an HTTP client may take to send a whole request body, ms.
    pub http_body_timeout_ms: u64,
    /// Most HTTP connections open at once (all clients together).
    pub http_max_connections: usize,
    /// Most HTTP connections one client address may hold open.
    pub http_max_connections_per_peer: usize,
    /// Most MLLP connections one peer address may hold open.
    pub mllp_max_connections_per_peer: usize,
    /// How long a new MLLP connection may stay silent before its first
    /// byte, ms.
    pub mllp_first_byte_timeout_ms: u64,
}

/// Default of `limits.mllp_max_connections_per_peer`.
pub const DEFAULT_MLLP_MAX_CONNECTIONS_PER_PEER: usize = 32;
/// Default of `limits.mllp_first_byte_timeout_ms`.
pub const DEFAULT_MLLP_FIRST_BYTE_TIMEOUT_MS: u64 = 10_000;

impl Default for RawLimits {
    fn default() -> Self {
        let json = vellum_json::Limits::default();
        RawLimits {
            xml_max_depth: 50,
            xml_max_bytes: 4 * 1024 * 1024,
            json_max_depth: json.max_depth,
            json_max_keys_per_object: json.max_keys_per_object,
            bundle_max_entries: 10_000,
            bundle_concurrency: 64,
            search_max_params: 64,
            search_max_values: 256,
            http_header_timeout_ms: 5_000,
            http_body_timeout_ms: 30_000,
            http_max_connections: 1024,
            http_max_connections_per_peer: 256,
            mllp_max_connections_per_peer: DEFAULT_MLLP_MAX_CONNECTIONS_PER_PEER,
            mllp_first_byte_timeout_ms: DEFAULT_MLLP_FIRST_BYTE_TIMEOUT_MS,
        }
    }
}

/// Validated `[limits]` (see [`RawLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub xml_max_depth: usize,
    pub xml_max_bytes: usize,
    pub json: vellum_json::Limits,
    pub bundle_max_entries: usize,
    pub bundle_concurrency: usize,
    pub search: SearchLimits,
    pub http_header_timeout: std::time::Duration,
    pub http_body_timeout: std::time::Duration,
    pub http_max_connections: usize,
    pub http_max_connections_per_peer: usize,
    pub mllp_max_connections_per_peer: usize,
    pub mllp_first_byte_timeout: std::time::Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        // The defaults are valid by construction.
        let raw = RawLimits::default();
        LimitSettings::from_raw(&raw)
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
            ("limits.bundle_max_entries", raw.bundle_max_entries),
            ("limits.bundle_concurrency", raw.bundle_concurrency),
            ("limits.search_max_params", raw.search_max_params),
            ("limits.search_max_values", raw.search_max_values),
            ("limits.http_max_connections", raw.http_max_connections),
            (
                "limits.http_max_connections_per_peer",
                raw.http_max_connections_per_peer,
            ),
            (
                "limits.mllp_max_connections_per_peer",
                raw.mllp_max_connections_per_peer,
            ),
            (
                "limits.mllp_first_byte_timeout_ms",
                usize::try_from(raw.mllp_first_byte_timeout_ms).unwrap_or(usize::MAX),
            ),
            (
                "limits.http_header_timeout_ms",
                usize::try_from(raw.http_header_timeout_ms).unwrap_or(usize::MAX),
            ),
            (
                "limits.http_body_timeout_ms",
                usize::try_from(raw.http_body_timeout_ms).unwrap_or(usize::MAX),
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
        Ok(LimitSettings::from_raw(raw))
    }

    fn from_raw(raw: &RawLimits) -> Self {
        LimitSettings {
            xml_max_depth: raw.xml_max_depth,
            xml_max_bytes: raw.xml_max_bytes,
            json: vellum_json::Limits {
                max_depth: raw.json_max_depth,
                max_keys_per_object: raw.json_max_keys_per_object,
            },
            bundle_max_entries: raw.bundle_max_entries,
            bundle_concurrency: raw.bundle_concurrency,
            search: SearchLimits {
                max_params: raw.search_max_params,
                max_values: raw.search_max_values,
            },
            http_header_timeout: std::time::Duration::from_millis(raw.http_header_timeout_ms),
            http_body_timeout: std::time::Duration::from_millis(raw.http_body_timeout_ms),
            http_max_connections: raw.http_max_connections,
            http_max_connections_per_peer: raw.http_max_connections_per_peer,
            mllp_max_connections_per_peer: raw.mllp_max_connections_per_peer,
            mllp_first_byte_timeout: std::time::Duration::from_millis(
                raw.mllp_first_byte_timeout_ms,
            ),
        }
    }
}

/// Bounds on one search, refused with 400 above them (a search with
/// thousands of terms would otherwise run one probe query per condition
/// and end in a database error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Most `name=value` pairs.
    pub max_params: usize,
    /// Most comma-separated (OR) values in one parameter.
    pub max_values: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            max_params: 64,
            max_values: 256,
        }
    }
}
