//! PostgreSQL backend. Several vellum processes may share one database: each
//! batch takes a transaction-scoped advisory lock and reads the chain head
//! inside the transaction, so chains never fork.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, Row};
use std::str::FromStr;

use std::collections::HashMap;

use super::search::{self, Bind, Dialect, Plan, Purpose, SearchHit, SearchQuery};
use super::{
    head_from_row, merge_plan, plan_batch, Appended, ChainFn, ChainHead, Store, StoreError,
    StoredEntry,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Advisory lock key that serialises appends ("vellum" in ASCII).
const CHAIN_LOCK_KEY: i64 = 0x7665_6c6c_756d;

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects; with `role`, every connection runs `SET ROLE role` first
    /// (e.g. `vellum_writer`, which may only SELECT and INSERT).
    pub async fn connect(url: &str, role: Option<&str>) -> Result<Self, StoreError> {
        // Searches are one prepared statement per query shape with the
        // values bound; a cached generic plan cannot see how selective a
        // value is (one patient vs. every event of a day), so plan per call.
        let opts =
            PgConnectOptions::from_str(url)?.options([("plan_cache_mode", "force_custom_plan")]);
        // Fail fast when the server is unreachable (sqlx waits 30 s by default).
        let mut pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5));
        if let Some(role) = role {
            // The role name is validated by config (identifier characters only).
            let set_role = format!("SET ROLE \"{role}\"");
            pool = pool.after_connect(move |conn, _meta| {
                let sql = set_role.clone();
                Box::pin(async move {
                    conn.execute(AssertSqlSafe(sql)).await?;
                    Ok(())
                })
            });
        }
        Ok(PostgresStore {
            pool: pool.connect_with(opts).await?,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

const COLUMNS: &str = "seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated";

async fn insert_index_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    entries: &[super::NewEntry],
) -> Result<(), sqlx::Error> {
    let n: usize = entries.iter().map(|e| e.index.len()).sum();
    if n == 0 {
        return Ok(());
    }
    let mut seq = Vec::with_capacity(n);
    let mut param = Vec::with_capacity(n);
    let mut sys = Vec::with_capacity(n);
    let mut val = Vec::with_capacity(n);
    let mut exact = Vec::with_capacity(n);
    let mut low = Vec::with_capacity(n);
    let mut high = Vec::with_capacity(n);
    for e in entries {
        for r in &e.index {
            seq.push(e.seq);
            param.push(r.param.as_str());
            sys.push(r.sys.as_deref());
            val.push(r.val.as_deref());
            exact.push(r.exact.as_deref());
            low.push(r.low);
            high.push(r.high);
        }
    }
    sqlx::query(
        "INSERT INTO search_index (seq, param, sys, val, exact, low, high) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])",
    )
    .bind(&seq)
    .bind(&param)
    .bind(&sys)
    .bind(&val)
    .bind(&exact)
    .bind(&low)
    .bind(&high)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments> {
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t.as_str()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    q
}

fn row_to_entry(row: &sqlx::postgres::PgRow) -> Result<StoredEntry, sqlx::Error> {
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

impl PostgresStore {
    /// The search plan, from bounded probes of the index (search.rs).
    async fn plan(&self, query: &SearchQuery, purpose: Purpose) -> Result<Plan, StoreError> {
        search::choose_plan(query, purpose, |sql| async move {
            let numbered = sql.numbered();
            let row = bind_all(sqlx::query(AssertSqlSafe(numbered.as_str())), &sql.binds)
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get("n")?)
        })
        .await
    }

    /// Indexes entries stored before the search index existed (an upgrade),
    /// in chunks, each under the chain lock so concurrent starts agree.
    async fn backfill_index(&self) -> Result<(), StoreError> {
        loop {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CHAIN_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
            let indexed: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM search_index")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            let rows = sqlx::query(
                "SELECT seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated FROM entry \
                 WHERE seq > $1 ORDER BY seq LIMIT 500",
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

impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        self.backfill_index().await
    }

    async fn append_batch(
        &self,
        keys: Vec<Option<String>>,
        chain: ChainFn,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT seq, chain_hash FROM entry ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let head = match row {
            Some(r) => head_from_row(Some(r.try_get("seq")?), Some(r.try_get("chain_hash")?))?,
            None => ChainHead::EMPTY,
        };
        let mut stored = HashMap::new();
        let wanted: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
        if !wanted.is_empty() {
            let rows = sqlx::query(
                "SELECT k.key, e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, e.last_updated \
                 FROM entry_key k JOIN entry e ON e.seq = k.seq WHERE k.key = ANY($1)",
            )
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                stored.insert(row.try_get::<String, _>("key")?, row_to_entry(row)?);
            }
        }
        let (fresh, plan) = plan_batch(&keys, stored);
        let entries = chain(head, &fresh);
        let n = entries.len();
        let (mut seqs, mut ids, mut bodies) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut bsha, mut chains, mut leaves, mut times) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in &entries {
            seqs.push(e.seq);
            ids.push(e.id.as_str());
            bodies.push(e.body.as_str());
            bsha.push(&e.body_sha256[..]);
            chains.push(&e.chain_hash[..]);
            leaves.push(&e.leaf_hash[..]);
            times.push(e.last_updated.as_str());
        }
        sqlx::query(
            "INSERT INTO entry (seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[], $7::text[])",
        )
        .bind(&seqs)
        .bind(&ids)
        .bind(&bodies)
        .bind(&bsha)
        .bind(&chains)
        .bind(&leaves)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        insert_index_rows(&mut tx, &entries).await?;
        let new_keys = keys.iter().zip(&fresh).filter(|(_, f)| **f).map(|(k, _)| k);
        let (mut key_names, mut key_seqs) = (Vec::new(), Vec::new());
        for (key, entry) in new_keys.zip(&entries) {
            if let Some(key) = key {
                key_names.push(key.as_str());
                key_seqs.push(entry.seq);
            }
        }
        if !key_names.is_empty() {
            sqlx::query(
                "INSERT INTO entry_key (key, seq) SELECT * FROM UNNEST($1::text[], $2::bigint[])",
            )
            .bind(&key_names)
            .bind(&key_seqs)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(merge_plan(plan, entries))
    }

    async fn head(&self) -> Result<ChainHead, StoreError> {
        let row = sqlx::query("SELECT seq, chain_hash FROM entry ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => head_from_row(Some(r.try_get("seq")?), Some(r.try_get("chain_hash")?)),
            None => Ok(ChainHead::EMPTY),
        }
    }

    async fn get_by_id(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM entry WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(row_to_entry).transpose()?)
    }

    async fn entries_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM entry WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_to_entry).collect::<Result<_, _>>()?)
    }

    async fn ready(&self) -> bool {
        sqlx::query("SELECT 1 FROM entry LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .is_ok()
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let plan = self.plan(query, Purpose::Page).await?;
        let sql = search::page_sql(query, &plan, Dialect::Postgres);
        let numbered = sql.numbered();
        let rows = bind_all(sqlx::query(AssertSqlSafe(numbered.as_str())), &sql.binds)
            .fetch_all(&self.pool)
            .await?;
        let hits = rows
            .iter()
            .map(|r: &sqlx::postgres::PgRow| {
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
        let sql = search::count_sql(query, &plan, Dialect::Postgres);
        let numbered = sql.numbered();
        let row = bind_all(sqlx::query(AssertSqlSafe(numbered.as_str())), &sql.binds)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

impl PostgresStore {
    /// Entries whose idempotency key is in `[from, to)`, in seq order.
    pub(crate) async fn entries_by_key_range(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, StoredEntry)>, StoreError> {
        // COLLATE "C": byte order, the order `prefix_end` assumes.
        let rows = sqlx::query(
            "SELECT k.key, e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, \
             e.last_updated FROM entry_key k JOIN entry e ON e.seq = k.seq \
             WHERE k.key COLLATE \"C\" >= $1 AND k.key COLLATE \"C\" < $2 ORDER BY e.seq",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key")?, row_to_entry(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

impl PostgresStore {
    /// The entry an idempotency key names.
    pub(crate) async fn entry_by_key(&self, key: &str) -> Result<Option<StoredEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, \
             e.last_updated FROM entry_key k JOIN entry e ON e.seq = k.seq WHERE k.key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(row_to_entry).transpose()?)
    }
}
