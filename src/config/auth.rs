//! `[auth]`: who may call vellum (env `VELLUM_AUTH_<KEY>`), and the
//! top-level `dev_token` (`VELLUM_DEV_TOKEN`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::database::DatabaseUrl;
use super::secret::Secret;
use super::ConfigError;
use crate::auth::client_cert::ClientCertMap;
use crate::auth::jwt::{Expectations, JwksSource, JwtSettings, ScopeRoles, DEFAULT_SCOPE_ROLES};
use crate::auth::{Grant, TokenRegistry};

/// `[auth]` as written by an operator.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Grant lines `sha256:<hex> <subject> <role,role…>` (a TOML array, or
    /// one string with `;`-separated lines in `VELLUM_AUTH_TOKENS`).
    pub tokens: GrantLines,
    /// TLS client certificates and their roles, lines
    /// `<subject DN | dns:NAME | uri:URI> <role,role…>` (see
    /// `crate::auth::client_cert`); used on HTTPS with `http_tls_client_ca`.
    pub clients: GrantLines,
    /// A file of grant lines. Unset on SQLite: `<database file>.tokens`,
    /// where the first start writes its admin token.
    pub token_file: Option<String>,
    /// Serve `/metrics` without credentials (for a Prometheus on a trusted
    /// network).
    pub metrics_public: bool,
    /// Record every read, search, report, verification, proof and export
    /// as an `audit-log-access` event (IHE BALP). Turning it off makes
    /// vellum's own readers invisible: for benchmarks and test suites that
    /// count entries, never for a deployment (a warning is logged).
    pub record_reads: bool,
    /// JWK Set file of the identity provider whose JWTs are accepted.
    pub jwks_file: Option<String>,
    /// JWK Set URL (https; http only to a loopback address).
    pub jwks_url: Option<String>,
    /// Required `iss` of accepted JWTs.
    pub jwt_issuer: Option<String>,
    /// Required `aud` (one of them when `aud` is an array).
    pub jwt_audience: Option<String>,
    /// Scope → roles lines `<scope>=<role,role…>`.
    pub jwt_scope_roles: GrantLines,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, seconds.
    pub jwt_leeway_s: u64,
    /// Re-read the JWK Set this often, seconds.
    pub jwks_refresh_s: u64,
    /// At most one re-read per this many seconds when tokens name an
    /// unknown key.
    pub jwks_refresh_min_s: u64,
}

/// Largest `auth.jwt_leeway_s`: clocks further apart are a fault to fix.
const MAX_LEEWAY_S: u64 = 300;

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            tokens: GrantLines::default(),
            clients: GrantLines::default(),
            token_file: None,
            metrics_public: false,
            record_reads: true,
            jwks_file: None,
            jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_scope_roles: GrantLines(
                DEFAULT_SCOPE_ROLES.iter().map(|s| s.to_string()).collect(),
            ),
            jwt_leeway_s: 60,
            jwks_refresh_s: 3600,
            jwks_refresh_min_s: 30,
        }
    }
}

impl fmt::Debug for RawAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAuth")
            .field("tokens", &self.tokens.0.len())
            .field("clients", &self.clients.0)
            .field("token_file", &self.token_file)
            .field("metrics_public", &self.metrics_public)
            .field("record_reads", &self.record_reads)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_scope_roles", &self.jwt_scope_roles.0)
            .field("jwt_leeway_s", &self.jwt_leeway_s)
            .field("jwks_refresh_s", &self.jwks_refresh_s)
            .field("jwks_refresh_min_s", &self.jwks_refresh_min_s)
            .finish()
    }
}

/// Grant lines: a TOML array, or one string with `;`-separated lines.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "OneOrMany")]
pub struct GrantLines(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for GrantLines {
    fn from(v: OneOrMany) -> Self {
        let items = match v {
            OneOrMany::One(s) => s.split(';').map(str::to_string).collect(),
            OneOrMany::Many(v) => v,
        };
        GrantLines(
            items
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
}

/// Validated `[auth]`.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The configured tokens (the token file is read at start-up).
    pub tokens: TokenRegistry,
    /// `auth.clients`: client certificates mapped to principals.
    pub clients: ClientCertMap,
    /// `VELLUM_DEV_TOKEN`: a token with every role, for local use and tests.
    pub dev_token: Option<Secret<String>>,
    pub token_file: Option<PathBuf>,
    pub metrics_public: bool,
    pub record_reads: bool,
    /// OAuth2 / SMART JWTs; `None`: not accepted.
    pub jwt: Option<JwtSettings>,
}

impl AuthSettings {
    pub fn validate(
        raw: RawAuth,
        dev_token: Option<Secret<String>>,
        db: &DatabaseUrl,
    ) -> Result<Self, ConfigError> {
        let jwt = jwt_settings(&raw)?;
        let mut grants = Vec::new();
        for (i, line) in raw.tokens.0.iter().enumerate() {
            let grant = Grant::parse(line).map_err(|e| ConfigError::Invalid {
                key: "auth.tokens",
                reason: format!("line {}: {e}", i + 1),
            })?;
            grants.push(grant);
        }
        let clients = ClientCertMap::parse(raw.clients.0.iter().map(String::as_str)).map_err(
            |(line, e)| ConfigError::Invalid {
                key: "auth.clients",
                reason: format!("line {line}: {e}"),
            },
        )?;
        let dev_token = match dev_token.map(|t| t.expose().trim().to_string()) {
            None => None,
            Some(t) if t.is_empty() => None,
            Some(t) if t.len() < 16 => {
                return Err(ConfigError::Invalid {
                    key: "dev_token",
                    reason: "must be at least 16 characters".into(),
                })
            }
            Some(t) => Some(Secret::new(t)),
        };
        let token_file = match (raw.token_file, db) {
            (Some(f), _) if !f.trim().is_empty() => Some(PathBuf::from(f)),
            (_, DatabaseUrl::Sqlite(path)) => {
                let mut p = path.clone().into_os_string();
                p.push(".tokens");
                Some(PathBuf::from(p))
            }
            _ => None,
        };
        Ok(AuthSettings {
            jwt,
            tokens: TokenRegistry::new(grants),
            clients,
            dev_token,
            token_file,
            metrics_public: raw.metrics_public,
            record_reads: raw.record_reads,
        })
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// `Some(value)` for a set, non-blank setting.
fn set(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The JWT settings, when a JWK Set is configured.
fn jwt_settings(raw: &RawAuth) -> Result<Option<JwtSettings>, ConfigError> {
    let (issuer, audience) = (set(&raw.jwt_issuer), set(&raw.jwt_audience));
    let source = match (set(&raw.jwks_file), set(&raw.jwks_url)) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "auth.jwks_url",
                "set auth.jwks_file or auth.jwks_url, not both",
            ))
        }
        (Some(f), None) => JwksSource::File(PathBuf::from(f)),
        (None, Some(u)) => JwksSource::Url(jwks_url(&u)?),
        (None, None) => {
            if issuer.is_some() || audience.is_some() {
                return Err(invalid(
                    "auth.jwks_file",
                    "JWTs need a key set: set auth.jwks_file or auth.jwks_url",
                ));
            }
            return Ok(None);
        }
    };
    let issuer = issuer.ok_or_else(|| invalid("auth.jwt_issuer", "required with a JWK Set"))?;
    let audience =
        audience.ok_or_else(|| invalid("auth.jwt_audience", "required with a JWK Set"))?;
    let scope_roles = ScopeRoles::parse(raw.jwt_scope_roles.0.iter().map(String::as_str))
        .map_err(|(line, e)| invalid("auth.jwt_scope_roles", format!("line {line}: {e}")))?;
    if raw.jwt_leeway_s > MAX_LEEWAY_S {
        return Err(invalid(
            "auth.jwt_leeway_s",
            format!("at most {MAX_LEEWAY_S} seconds"),
        ));
    }
    if raw.jwks_refresh_min_s == 0 || raw.jwks_refresh_s < raw.jwks_refresh_min_s {
        return Err(invalid(
            "auth.jwks_refresh_min_s",
            "must be at least 1 and at most auth.jwks_refresh_s",
        ));
    }
    Ok(Some(JwtSettings {
        source,
        expect: Expectations {
            issuer,
            audience,
            leeway_s: raw.jwt_leeway_s as i64,
        },
        scope_roles,
        refresh_every: Duration::from_secs(raw.jwks_refresh_s),
        refresh_min: Duration::from_secs(raw.jwks_refresh_min_s),
    }))
}

/// An https URL, or http to a loopback address (an identity provider on
/// the same host, and tests).
fn jwks_url(url: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid("auth.jwks_url", format!("not a URL: {e}")))?;
    let loopback = parsed.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(url.to_string()),
        "http" if loopback => Ok(url.to_string()),
        _ => Err(invalid(
            "auth.jwks_url",
            "must be https (http only to a loopback address)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawAuth {
        RawAuth {
            jwks_url: Some("https://idp.example/jwks".into()),
            jwt_issuer: Some("https://idp.example".into()),
            jwt_audience: Some("https://vellum.example/fhir".into()),
            ..RawAuth::default()
        }
    }

    fn key_of(r: RawAuth) -> &'static str {
        match jwt_settings(&r) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn jwt_settings_are_validated() {
        let s = jwt_settings(&raw()).unwrap().unwrap();
        assert_eq!(s.source, JwksSource::Url("https://idp.example/jwks".into()));
        assert_eq!(s.scope_roles, ScopeRoles::default());
        assert_eq!(jwt_settings(&RawAuth::default()).unwrap(), None);
        let local = RawAuth {
            jwks_url: Some("http://127.0.0.1:9/jwks".into()),
            ..raw()
        };
        assert!(jwt_settings(&local).unwrap().is_some());
        for (bad, key) in [
            (
                RawAuth {
                    jwks_url: Some("http://idp.example/jwks".into()),
                    ..raw()
                },
                "auth.jwks_url",
            ),
            (
                RawAuth {
                    jwks_file: Some("/k.json".into()),
                    ..raw()
                },
                "auth.jwks_url",
            ),
            (
                RawAuth {
                    jwt_issuer: None,
                    ..raw()
                },
                "auth.jwt_issuer",
            ),
            (
                RawAuth {
                    jwt_audience: Some(" ".into()),
                    ..raw()
                },
                "auth.jwt_audience",
            ),
            (
                RawAuth {
                    jwks_url: None,
                    ..raw()
                },
                "auth.jwks_file",
            ),
            (
                RawAuth {
                    jwt_leeway_s: 301,
                    ..raw()
                },
                "auth.jwt_leeway_s",
            ),
            (
                RawAuth {
                    jwks_refresh_min_s: 0,
                    ..raw()
                },
                "auth.jwks_refresh_min_s",
            ),
            (
                RawAuth {
                    jwt_scope_roles: GrantLines(vec!["a=root".into()]),
                    ..raw()
                },
                "auth.jwt_scope_roles",
            ),
        ] {
            assert_eq!(key_of(bad), key);
        }
    }
}
