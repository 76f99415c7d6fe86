//! The database section: `database_url`, `database_role`, `migrate_on_start`.
//!
//! [`DatabaseUrl`] is self-contained (it uses nothing else from `config`) so
//! it can move with the store.

use std::fmt;
use std::path::PathBuf;

use super::ConfigError;

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Why a database URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `database_url`: {0}")]
pub struct DatabaseUrlError(pub &'static str);

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<Self, DatabaseUrlError> {
        if let Some(path) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(DatabaseUrlError(
                    "sqlite URL needs a file path, e.g. sqlite://vellum.db",
                ));
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(s.to_string()))
        } else {
            Err(DatabaseUrlError("must start with sqlite:// or postgres://"))
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            // A PostgreSQL URL may carry a password: never print it.
            DatabaseUrl::Postgres(u) => f
                .debug_tuple("Postgres")
                .field(&without_password(u))
                .finish(),
        }
    }
}

/// `scheme://user:password@host/…` with the password replaced.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:[redacted]{}", &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The database keys as written (top level of the file, `VELLUM_<KEY>`).
#[derive(Debug, Clone)]
pub struct RawDatabase {
    /// `sqlite://PATH` or `postgres://user@host/db`.
    pub database_url: String,
    /// PostgreSQL role to `SET ROLE` to on every connection (e.g. `vellum_writer`).
    pub database_role: Option<String>,
    /// Apply migrations when `serve` starts (needs DDL rights).
    pub migrate_on_start: bool,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            database_url: "sqlite://vellum.db".into(),
            database_role: None,
            migrate_on_start: true,
        }
    }
}

/// Validated database settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    pub role: Option<String>,
    pub migrate_on_start: bool,
}

impl DatabaseSettings {
    pub fn validate(raw: RawDatabase) -> Result<Self, ConfigError> {
        let url = DatabaseUrl::parse(&raw.database_url).map_err(|e| ConfigError::Invalid {
            key: "database_url",
            reason: e.0.to_string(),
        })?;
        if let Some(role) = &raw.database_role {
            // The role is interpolated into `SET ROLE`: only plain identifiers.
            let ok = !role.is_empty()
                && role
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !role.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "database_role",
                    reason: "must be a lowercase SQL identifier (letters, digits, _)".into(),
                });
            }
            if matches!(url, DatabaseUrl::Sqlite(_)) {
                return Err(ConfigError::Invalid {
                    key: "database_role",
                    reason: "only applies to PostgreSQL".into(),
                });
            }
        }
        Ok(DatabaseSettings {
            url,
            role: raw.database_role,
            migrate_on_start: raw.migrate_on_start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_a_postgres_password() {
        let u =
            DatabaseUrl::parse("postgres://vellum:hunter2@db:5432/audit?sslmode=require").unwrap();
        let d = format!("{u:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("vellum:[redacted]@db:5432/audit"), "{d}");
        let u = DatabaseUrl::parse("postgres://postgres@127.0.0.1/db").unwrap();
        assert!(format!("{u:?}").contains("postgres@127.0.0.1/db"));
    }

    #[test]
    fn url_errors_name_the_setting() {
        let e = DatabaseUrl::parse("mysql://x").unwrap_err().to_string();
        assert!(e.contains("database_url"), "{e}");
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }
}
