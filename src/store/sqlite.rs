//! SQLite backend: one file, WAL, `synchronous=FULL` (a commit is on disk
//! before it returns). One dedicated writer connection, a pool for readers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use super::search::{self, Bind, Dialect, Plan, Purpose, SearchHit, SearchQuery};
use super::sqlite_append::Appender;
use super::{head_from_row, Appended, ChainFn, ChainHead, Store, StoreError, StoredEntry};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    /// Migrations, the index back-fill and raw SQL for tests and tools.
    writer: SqlitePool,
    readers: SqlitePool,
    path: std::path::PathBuf,
    /// Appends run on their own connection and thread (sqlite_append.rs),
    /// opened on first use: the schema must be migrated first.
    appender: std::sync::Arc<tokio::sync::OnceCell<Appender>>,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
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
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.read_only(false))
            .await?;
        Ok(SqliteStore {
            writer,
            readers,
            path: path.to_path_buf(),
            appender: Default::default(),
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

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, <sqlx::Sqlite as sqlx::Database>::Arguments>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Sqlite, <sqlx::Sqlite as sqlx::Database>::Arguments> {
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t.as_str()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    q
}

fn row_to_entry(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEntry, sqlx::Error> {
    Ok(StoredEntry {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        body: row.try_get("body")?,
        body_sha256: row.try_get("body_sha256")?,
        chain_hash: row.try_get("chain_hash")?,
        leaf_hash: row.try_get("leaf_hash")?,
        last_updated: row.try_get("last_updated")?,
    })
}

impl SqliteStore {
    /// The search plan, from bounded probes of the index (search.rs).
    async fn plan(&self, query: &SearchQuery, purpose: Purpose) -> Result<Plan, StoreError> {
        search::choose_plan(query, purpose, |sql| async move {
            let row = bind_all(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.binds)
                .fetch_one(&self.readers)
                .await?;
            Ok(row.try_get("n")?)
        })
        .await
    }

    /// Indexes entries stored before the search index existed (an upgrade),
    /// in chunks, each in its own write transaction.
    async fn backfill_index(&self) -> Result<(), StoreError> {
        loop {
            let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
            let indexed: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM search_index")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            let rows = sqlx::query(
                "SELECT seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated FROM entry \
                 WHERE seq > ? ORDER BY seq LIMIT 500",
            )
            .bind(indexed)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(());
            }
            let entries = rows
                .iter()
                .map(|r| row_to_entry(r).map(super::backfill_entry))
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
        let row = sqlx::query("SELECT seq, chain_hash FROM entry ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.readers)
            .await?;
        match row {
            Some(r) => head_from_row(Some(r.try_get("seq")?), Some(r.try_get("chain_hash")?)),
            None => Ok(ChainHead::EMPTY),
        }
    }

    async fn get_by_id(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated FROM entry WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.as_ref().map(row_to_entry).transpose()?)
    }

    async fn entries_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated FROM entry \
             WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.iter().map(row_to_entry).collect::<Result<_, _>>()?)
    }

    async fn ready(&self) -> bool {
        sqlx::query("SELECT 1 FROM entry LIMIT 1")
            .fetch_optional(&self.readers)
            .await
            .is_ok()
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let plan = self.plan(query, Purpose::Page).await?;
        let sql = search::page_sql(query, &plan, Dialect::Sqlite);
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.binds)
            .fetch_all(&self.readers)
            .await?;
        let hits = rows
            .iter()
            .map(|r: &sqlx::sqlite::SqliteRow| {
                Ok(SearchHit {
                    entry: row_to_entry(r)?,
                    sort_key: r.try_get("sort_key")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(search::hits_in_order(hits, query))
    }

    async fn count(&self, query: &SearchQuery) -> Result<i64, StoreError> {
        let plan = self.plan(query, Purpose::Count).await?;
        let sql = search::count_sql(query, &plan, Dialect::Sqlite);
        let row = bind_all(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.binds)
            .fetch_one(&self.readers)
            .await?;
        Ok(row.try_get("n")?)
    }
}

impl SqliteStore {
    /// Entries whose idempotency key is in `[from, to)`, in seq order.
    pub(crate) async fn entries_by_key_range(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, StoredEntry)>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.key, e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, \
             e.last_updated FROM entry_key k JOIN entry e ON e.seq = k.seq \
             WHERE k.key >= ? AND k.key < ? ORDER BY e.seq",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key")?, row_to_entry(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

impl SqliteStore {
    /// The entry an idempotency key names.
    pub(crate) async fn entry_by_key(&self, key: &str) -> Result<Option<StoredEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, \
             e.last_updated FROM entry_key k JOIN entry e ON e.seq = k.seq WHERE k.key = ?",
        )
        .bind(key)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.as_ref().map(row_to_entry).transpose()?)
    }
}
