//! Fresh, throwaway databases for tests and benches, and [`backend_tests!`]
//! (dev-only; here so the ledger's own store tests, the server's
//! integration tests (through vellum-testkit) and the benches share one
//! copy). PostgreSQL: `DATABASE_URL` when set, else the local server on
//! 127.0.0.1:5432 as user postgres; tests fail (never skip) when it is
//! unreachable.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The PostgreSQL server tests use: `DATABASE_URL` when set, else the local
/// server on 127.0.0.1:5432 as user postgres. Tests fail (never skip) when
/// it is unreachable; scripts/test starts a throwaway cluster if needed.
pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database name replaced by `db` (query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    // Replace the path component (database name), keep any query string.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..path_start])
}

/// Why a fresh database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    #[error("a temporary directory for SQLite: {0}")]
    TempDir(#[from] std::io::Error),
    #[error("PostgreSQL at {url} is required for these tests: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("CREATE DATABASE {name}: {source}")]
    Create { name: String, source: sqlx::Error },
}

/// A fresh, empty database that is removed when dropped (a PostgreSQL
/// database is dropped; a SQLite file goes with its temporary directory).
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database for one test; panics when it cannot be made.
    pub async fn new(backend: Backend) -> TestDb {
        TestDb::create(backend, None, "t")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh database named after `label`: SQLite as `<label>.db` in
    /// `sqlite_dir` (else in a temporary directory of its own), PostgreSQL as
    /// `vellum_<label>_<uuid>` on [`pg_admin_url`].
    pub async fn create(
        backend: Backend,
        sqlite_dir: Option<&Path>,
        label: &str,
    ) -> Result<TestDb, TestDbError> {
        match backend {
            Backend::Sqlite => {
                let (dir, own) = match sqlite_dir {
                    Some(d) => (d.to_path_buf(), None),
                    None => {
                        let t = tempfile::tempdir()?;
                        (t.path().to_path_buf(), Some(t))
                    }
                };
                let file = if own.is_some() {
                    "vellum.db".to_string()
                } else {
                    format!("{label}.db")
                };
                Ok(TestDb {
                    url: format!("sqlite://{}", dir.join(file).display()),
                    backend,
                    pg_name: None,
                    _dir: own,
                })
            }
            Backend::Postgres => {
                let name = format!("vellum_{label}_{}", uuid::Uuid::new_v4().simple());
                let admin = pg_admin_url();
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .map_err(|source| TestDbError::Connect {
                        url: admin.clone(),
                        source,
                    })?;
                sqlx::Executor::execute(
                    &mut conn,
                    sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
                )
                .await
                .map_err(|source| TestDbError::Create {
                    name: name.clone(),
                    source,
                })?;
                Ok(TestDb {
                    url: with_database(&admin, &name),
                    backend,
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }

    /// The SQLite file path (SQLite only).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite://").map(PathBuf::from)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = pg_admin_url();
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .ok()?;
                sqlx::Executor::execute(
                    &mut conn,
                    sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                )
                .await
                .ok()
            })
        })
        .join();
    }
}

/// Expands each `async fn name(backend) { body }` into a module `name` with
/// two tests, `sqlite` and `postgres`, with `backend` bound to
/// [`Backend::Sqlite`] and [`Backend::Postgres`]: a failure on one backend
/// never hides the other. Attributes before `async fn` go on both.
///
/// ```ignore
/// backend_tests! {
///     async fn created_event_reads_back(backend) {
///         let db = TestDb::new(backend).await;
///         // …
///     }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($(#[$attr:meta])* async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                $(#[$attr])*
                #[tokio::test]
                async fn sqlite() {
                    let $backend = $crate::testing::Backend::Sqlite;
                    $body
                }

                $(#[$attr])*
                #[tokio::test]
                async fn postgres() {
                    let $backend = $crate::testing::Backend::Postgres;
                    $body
                }
            }
        )*
    };
}
