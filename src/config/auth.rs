//! `[auth]`: who may call vellum (env `VELLUM_AUTH_<KEY>`), and the
//! top-level `dev_token` (`VELLUM_DEV_TOKEN`).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::database::DatabaseUrl;
use super::secret::Secret;
use super::ConfigError;
use crate::auth::client_cert::ClientCertMap;
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
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            tokens: GrantLines::default(),
            clients: GrantLines::default(),
            token_file: None,
            metrics_public: false,
            record_reads: true,
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
}

impl AuthSettings {
    pub fn validate(
        raw: RawAuth,
        dev_token: Option<String>,
        db: &DatabaseUrl,
    ) -> Result<Self, ConfigError> {
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
        let dev_token = match dev_token.map(|t| t.trim().to_string()) {
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
            tokens: TokenRegistry::new(grants),
            clients,
            dev_token,
            token_file,
            metrics_public: raw.metrics_public,
            record_reads: raw.record_reads,
        })
    }
}
