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
