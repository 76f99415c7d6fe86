//! The HTTP section: `http_addr`, `max_body_bytes`, `public_base_url`, and
//! TLS (`http_tls_cert`, `http_tls_key`, `http_tls_client_ca`).

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// PEM certificate chain: with `http_tls_key`, HTTP is served over TLS
    /// only. Re-read on SIGHUP.
    pub http_tls_cert: Option<String>,
    /// PEM private key of `http_tls_cert`.
    pub http_tls_key: Option<String>,
    /// PEM CA bundle: clients must present a certificate it issued.
    pub http_tls_client_ca: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            http_addr: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            public_base_url: None,
            http_tls_cert: None,
            http_tls_key: None,
            http_tls_client_ca: None,
        }
    }
}

/// The HTTP server's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Validated HTTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    pub max_body_bytes: usize,
    /// Without a trailing `/`.
    pub public_base_url: Option<String>,
    /// `None`: plain HTTP.
    pub tls: Option<HttpTls>,
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
        let tls = validate_tls(&raw)?;
        Ok(HttpSettings {
            tls,
            addr,
            max_body_bytes: raw.max_body_bytes,
            public_base_url: raw
                .public_base_url
                .map(|b| b.trim_end_matches('/').to_string()),
        })
    }
}

fn validate_tls(raw: &RawHttp) -> Result<Option<HttpTls>, ConfigError> {
    let set = |v: &Option<String>| v.as_ref().filter(|s| !s.trim().is_empty()).cloned();
    let client_ca = set(&raw.http_tls_client_ca);
    match (set(&raw.http_tls_cert), set(&raw.http_tls_key)) {
        (None, None) if client_ca.is_some() => Err(ConfigError::Invalid {
            key: "http_tls_client_ca",
            reason: "needs http_tls_cert and http_tls_key".into(),
        }),
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(HttpTls {
            cert: cert.into(),
            key: key.into(),
            client_ca: client_ca.map(PathBuf::from),
        })),
        _ => Err(ConfigError::Invalid {
            key: "http_tls_cert",
            reason: "http_tls_cert and http_tls_key go together".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_go_together() {
        let raw = |cert: Option<&str>, key: Option<&str>, ca: Option<&str>| RawHttp {
            http_tls_cert: cert.map(Into::into),
            http_tls_key: key.map(Into::into),
            http_tls_client_ca: ca.map(Into::into),
            ..RawHttp::default()
        };
        assert_eq!(
            HttpSettings::validate(raw(None, None, None)).unwrap().tls,
            None
        );
        let tls = HttpSettings::validate(raw(Some("c.pem"), Some("k.pem"), Some("ca.pem")))
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        for bad in [
            raw(Some("c.pem"), None, None),
            raw(None, Some("k.pem"), None),
            raw(None, None, Some("ca.pem")),
        ] {
            assert!(HttpSettings::validate(bad).is_err());
        }
    }
}
