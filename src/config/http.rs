//! The HTTP section: `http_addr`, `max_body_bytes`, `public_base_url`.

use std::net::SocketAddr;

use super::ConfigError;

/// The HTTP keys as written (top level of the file, `VELLUM_<KEY>`).
#[derive(Debug, Clone)]
pub struct RawHttp {
    pub http_addr: String,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Base URL used in `Location` headers and Bundle links; derived from the
    /// request when unset.
    pub public_base_url: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            http_addr: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            public_base_url: None,
        }
    }
}

/// Validated HTTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    pub max_body_bytes: usize,
    /// Without a trailing `/`.
    pub public_base_url: Option<String>,
}

impl HttpSettings {
    pub fn validate(raw: RawHttp) -> Result<Self, ConfigError> {
        let addr = super::addr::listen_addr("http_addr", &raw.http_addr)?;
        super::positive("max_body_bytes", raw.max_body_bytes)?;
        if let Some(base) = &raw.public_base_url {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "public_base_url",
                    reason: "must be an absolute http(s) URL".into(),
                });
            }
        }
        Ok(HttpSettings {
            addr,
            max_body_bytes: raw.max_body_bytes,
            public_base_url: raw
                .public_base_url
                .map(|b| b.trim_end_matches('/').to_string()),
        })
    }
}
