//! SQLite backend: one file, WAL, `synchronous=FULL` (a commit is on disk
//! before it returns). One dedicated writer connection, a pool for readers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use super::search::{Dialect, SearchHit, SearchQuery};
use super::sqlite_append::Appender;
use super::{Appended, ChainFn, ChainHead, IndexFn, Store, StoreError, StoredEntry};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    /// Migrations, the index back-fill and raw SQL for tests and tools.
    writer: SqlitePool,
    readers: SqlitePool,
    pub(super) path: std::path::PathBuf,
    /// Appends run on their own connection and thread (sqlite_append.rs),
    /// opened on first use: the schema must be migrated first.
    appender: std::sync::Arc<tokio::sync::OnceCell<Appender>>,
    /// Derives a body's search-index rows for the upgrade back-fill.
    pub(super) indexer: Option<IndexFn>,
    /// Derives the idempotency key a body's entry must carry (verify).
    pub(super) keyer: Option<super::KeyFn>,
    /// Derives a body's summary row (back-fill and verify).
    pub(super) summarizer: Option<super::summary::SummaryFn>,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |e: sqlx::Error| StoreError::Open {
            path: path.to_path_buf(),
            reason: match &e {
                sqlx::Error::Database(d) => d.message().to_string(),
                other => other.to_string(),
            },
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("recursive_triggers", "ON");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts.clone())
            .await
            .map_err(open_error)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.read_only(false))
            .await
            .map_err(open_error)?;
        Ok(SqliteStore {
            writer,
            readers,
            path: path.to_path_buf(),
            appender: Default::default(),
            indexer: None,
            keyer: None,
            summarizer: None,
        })
    }

    /// The pool that writes (exposed for tests and tools that need raw SQL).
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// The read-only pool (queries that must not queue behind the writer).
    pub(crate) fn readers(&self) -> &SqlitePool {
        &self.readers
    }
}

/// Splits `items` into chunks of at most `max` (a power of two), each a
/// power of two long, so multi-row statements come in only a few sizes.
fn chunks_up_to<T>(items: &[T], max: usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let n = if rest.len() >= max {
            max
        } else {
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, tail) = rest.split_at(n);
        out.push(chunk);
        rest = tail;
    }
    out
}

/// Index rows per multi-row INSERT (7 parameters each).
const MAX_INDEX_ROWS_PER_INSERT: usize = 128;

async fn insert_index_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    entries: &[super::NewEntry],
) -> Result<(), sqlx::Error> {
    let rows: Vec<(i64, &super::IndexRow)> = entries
        .iter()
        .flat_map(|e| e.index.iter().map(move |r| (e.seq, r)))
        .collect();
    for chunk in chunks_up_to(&rows, MAX_INDEX_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO search_index (seq, param, sys, val, exact, low, high) VALUES {}",
            vec!["(?,?,?,?,?,?,?)"; chunk.len()].join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (seq, r) in chunk {
            q = q
                .bind(*seq)
                .bind(r.param.as_str())
                .bind(r.sys.as_deref())
                .bind(r.val.as_deref())
                .bind(r.exact.as_deref())
                .bind(r.low)
                .bind(r.high);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

super::reads::impl_reads!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    readers,
    Dialect::Sqlite
);

super::writes::impl_evidence_writes!(SqliteStore, writer);

impl SqliteStore {
    /// Inserts Merkle nodes, keeping any already stored (tree back-fill).
    pub(crate) async fn insert_nodes(
        &self,
        nodes: &[(crate::merkle::NodeId, crate::hash::Hash)],
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for (id, h) in nodes {
            sqlx::query("INSERT OR IGNORE INTO merkle_node (level, idx, hash) VALUES ($1, $2, $3)")
                .bind(id.level as i64)
                .bind(id.index as i64)
                .bind(&h[..])
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Indexes entries stored before the search index existed (an upgrade),
    /// in chunks, each in its own write transaction.
    async fn backfill_index(&self) -> Result<(), StoreError> {
        let Some(indexer) = self.indexer else {
            return Ok(());
        };
        loop {
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            let indexed: i64 = sqlx::query(super::reads::MAX_INDEXED_SQL)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            let rows = sqlx::query(super::reads::AFTER_SQL)
                .bind(indexed)
                .bind(super::BACKFILL_CHUNK)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(());
            }
            let entries = rows
                .iter()
                .map(|r| row_to_entry(r).map(|e| super::backfill_entry(e, indexer)))
                .collect::<Result<Vec<_>, _>>()?;
            insert_index_rows(&mut tx, &entries).await?;
            tx.commit().await?;
            tracing::info!(
                up_to_seq = entries.last().map_or(0, |e| e.seq),
                "search index back-filled"
            );
        }
    }
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx's SQLite migrator takes no lock: two processes starting on a
        // fresh file would both apply migration 1. Serialise on a lock file.
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".migrate-lock");
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .map_err(StoreError::Io)?;
        let result = MIGRATOR.run(&self.writer).await;
        let result = match result {
            Ok(()) => self.backfill_index().await,
            Err(e) => Err(e.into()),
        };
        drop(lock);
        result
    }

    async fn append_batch(
        &self,
        keys: Vec<Option<String>>,
        chain: ChainFn,
    ) -> Result<Vec<Appended>, StoreError> {
        let appender = self
            .appender
            .get_or_try_init(|| Appender::start(&self.path))
            .await?;
        appender.append(keys, chain).await
    }

    async fn head(&self) -> Result<ChainHead, StoreError> {
        self.read_head().await
    }

    async fn get_by_id(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.read_by_id(id).await
    }

    async fn entries_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.read_after(after_seq, limit).await
    }

    async fn ready(&self) -> bool {
        self.read_ready().await
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        self.read_search(query).await
    }

    async fn count(&self, query: &SearchQuery) -> Result<i64, StoreError> {
        self.read_count(query).await
    }
}
