//! What the ledger needs to be started: where the store is and how the
//! writer batches. Parsed and validated here so the types cannot hold an
//! invalid value; the server's configuration layers them from file and
//! environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Most events committed in one transaction, by default.
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 512;
/// How long the writer waits for more events before committing, by default (µs).
pub const DEFAULT_BATCH_MAX_WAIT_US: u64 = 0;
/// Appends that may wait for the writer before callers are told to retry.
pub const DEFAULT_WRITER_QUEUE: usize = 8192;

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

/// How the single writer forms batches (group commit).
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub batch_max_events: usize,
    pub batch_max_wait: Duration,
    pub queue: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            batch_max_events: DEFAULT_BATCH_MAX_EVENTS,
            batch_max_wait: Duration::from_micros(DEFAULT_BATCH_MAX_WAIT_US),
            queue: DEFAULT_WRITER_QUEUE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://a.db?mode=rwc"),
            Ok(DatabaseUrl::Sqlite("a.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/d"),
            Ok(DatabaseUrl::Postgres("postgres://u@h/d".into()))
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        let pg = DatabaseUrl::parse("postgres://u:secret@h/d").expect("url");
        assert!(!format!("{pg:?}").contains("secret"));
    }
}
