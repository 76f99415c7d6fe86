//! The database section: `database_url`, `database_role`, `migrate_on_start`.
//!
//! [`DatabaseUrl`] is self-contained (it uses nothing else from `config`) so
//! it can move with the store.

use super::secret::SecretUrl;
use super::ConfigError;

pub use vellum_ledger::{DatabaseUrl, DatabaseUrlError};

/// The database keys as written (top level of the file, `VELLUM_<KEY>`).
#[derive(Debug, Clone)]
pub struct RawDatabase {
    /// `sqlite://PATH` or `postgres://user@host/db`.
    pub database_url: SecretUrl,
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
        let url =
            DatabaseUrl::parse(raw.database_url.expose()).map_err(|e| ConfigError::Invalid {
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
