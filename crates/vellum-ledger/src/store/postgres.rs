//! PostgreSQL backend. Several vellum processes may share one database: each
//! batch takes a transaction-scoped advisory lock and reads the chain head
//! inside the transaction, so chains never fork.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, Row};
use std::str::FromStr;

use std::collections::HashMap;

use super::search::{Dialect, SearchHit, SearchQuery};
use super::{
    extend_tree, head_from_row, merge_plan, plan_batch, Appended, ChainFn, ChainHead, IndexFn,
    Store, StoreError, StoredEntry, TreeCache,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Advisory lock key that serialises appends ("vellum" in ASCII).
const CHAIN_LOCK_KEY: i64 = 0x7665_6c6c_756d;

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The single writer's own connection. Not pinged before each use (a
    /// round trip per batch): a broken connection fails one batch, whose
    /// senders are told to retry, and is then replaced by the pool.
    writer: PgPool,
    /// Derives a body's search-index rows for the upgrade back-fill.
    pub(super) indexer: Option<IndexFn>,
    /// Derives the idempotency key a body's entry must carry (verify).
    pub(super) keyer: Option<super::KeyFn>,
    /// Derives a body's summary row (back-fill and verify).
    pub(super) summarizer: Option<super::summary::SummaryFn>,
    /// The Merkle frontier after this process's last append.
    tree: std::sync::Arc<std::sync::Mutex<Option<TreeCache>>>,
}

impl PostgresStore {
    /// Connects; with `role`, every connection runs `SET ROLE role` first
    /// (e.g. `vellum_writer`, which may only SELECT and INSERT).
    pub async fn connect(url: &str, role: Option<&str>) -> Result<Self, StoreError> {
        // Searches are one prepared statement per query shape with the
        // values bound; a cached generic plan cannot see how selective a
        // value is (one patient vs. every event of a day), so plan per call.
        let writer_opts = PgConnectOptions::from_str(url)?;
        let opts = writer_opts
            .clone()
            .options([("plan_cache_mode", "force_custom_plan")]);
        probe(&writer_opts).await?;
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
        let writer = pool
            .clone()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            // Not force_custom_plan: it would also re-plan, per row, the
            // foreign-key checks and the chain trigger's query (≈ 30 per event).
            .connect_with(writer_opts)
            .await?;
        Ok(PostgresStore {
            pool: pool.connect_with(opts).await?,
            writer,
            indexer: None,
            keyer: None,
            summarizer: None,
            tree: Default::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Starts an append: the transaction and the chain lock in one simple query.
const BEGIN_AND_LOCK: &str = "BEGIN; SELECT pg_advisory_xact_lock(130177982821741)";

/// The chain head (the row whose `key` is NULL) and the entries that the
/// batch's idempotency keys already name, in one statement.
const HEAD_AND_KEYS: &str = "SELECT NULL::text AS key, h.seq, NULL::text AS id, NULL::text AS body, \
     NULL::bytea AS body_sha256, h.chain_hash, NULL::bytea AS leaf_hash, NULL::text AS last_updated \
     FROM (SELECT seq, chain_hash FROM entry ORDER BY seq DESC LIMIT 1) h \
     UNION ALL \
     SELECT k.key, e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, e.last_updated \
     FROM entry_key k JOIN entry e ON e.seq = k.seq WHERE k.key = ANY($1)";

/// Entries, their search index rows and their new idempotency keys in one
/// statement (data-modifying CTEs; the foreign keys are checked at its end).
const INSERT_ALL: &str = "WITH e AS (INSERT INTO entry (seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated) \
       SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[], $7::text[])), \
     i AS (INSERT INTO search_index (seq, param, sys, val, exact, low, high) \
       SELECT * FROM UNNEST($8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[])), \
     n AS (INSERT INTO merkle_node (level, idx, hash) \
       SELECT * FROM UNNEST($17::int[], $18::bigint[], $19::bytea[])) \
     INSERT INTO entry_key (key, seq) SELECT * FROM UNNEST($15::text[], $16::bigint[])";

/// The search index rows of a batch as one array per column, for
/// `UNNEST` (one statement however many rows).
struct IndexColumns<'a> {
    seq: Vec<i64>,
    param: Vec<&'a str>,
    sys: Vec<Option<&'a str>>,
    val: Vec<Option<&'a str>>,
    exact: Vec<Option<&'a str>>,
    low: Vec<Option<i64>>,
    high: Vec<Option<i64>>,
}

impl<'a> IndexColumns<'a> {
    fn of(entries: &'a [super::NewEntry]) -> Self {
        let n: usize = entries.iter().map(|e| e.index.len()).sum();
        let mut c = IndexColumns {
            seq: Vec::with_capacity(n),
            param: Vec::with_capacity(n),
            sys: Vec::with_capacity(n),
            val: Vec::with_capacity(n),
            exact: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
        };
        for e in entries {
            for r in &e.index {
                c.seq.push(e.seq);
                c.param.push(r.param.as_str());
                c.sys.push(r.sys.as_deref());
                c.val.push(r.val.as_deref());
                c.exact.push(r.exact.as_deref());
                c.low.push(r.low);
                c.high.push(r.high);
            }
        }
        c
    }
}

async fn insert_all(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    keys: &[Option<String>],
    fresh: &[bool],
    entries: &[super::NewEntry],
    nodes: &[(crate::merkle::NodeId, crate::hash::Hash)],
) -> Result<(), sqlx::Error> {
    let node_levels: Vec<i32> = nodes.iter().map(|(id, _)| id.level as i32).collect();
    let node_idx: Vec<i64> = nodes.iter().map(|(id, _)| id.index as i64).collect();
    let node_hashes: Vec<&[u8]> = nodes.iter().map(|(_, h)| &h[..]).collect();
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
    for e in entries {
        seqs.push(e.seq);
        ids.push(e.id.as_str());
        bodies.push(e.body.as_str());
        bsha.push(&e.body_sha256[..]);
        chains.push(&e.chain_hash[..]);
        leaves.push(&e.leaf_hash[..]);
        times.push(e.last_updated.as_str());
    }
    let index = IndexColumns::of(entries);
    let new_keys = keys.iter().zip(fresh).filter(|(_, f)| **f).map(|(k, _)| k);
    let (mut key_names, mut key_seqs) = (Vec::new(), Vec::new());
    for (key, entry) in new_keys.zip(entries) {
        if let Some(key) = key {
            key_names.push(key.as_str());
            key_seqs.push(entry.seq);
        }
    }
    sqlx::query(INSERT_ALL)
        .bind(&seqs)
        .bind(&ids)
        .bind(&bodies)
        .bind(&bsha)
        .bind(&chains)
        .bind(&leaves)
        .bind(&times)
        .bind(&index.seq)
        .bind(&index.param)
        .bind(&index.sys)
        .bind(&index.val)
        .bind(&index.exact)
        .bind(&index.low)
        .bind(&index.high)
        .bind(&key_names)
        .bind(&key_seqs)
        .bind(&node_levels)
        .bind(&node_idx)
        .bind(&node_hashes)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_index_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    entries: &[super::NewEntry],
) -> Result<(), sqlx::Error> {
    let index = IndexColumns::of(entries);
    if index.seq.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO search_index (seq, param, sys, val, exact, low, high) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])",
    )
    .bind(&index.seq)
    .bind(&index.param)
    .bind(&index.sys)
    .bind(&index.val)
    .bind(&index.exact)
    .bind(&index.low)
    .bind(&index.high)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

super::reads::impl_reads!(
    PostgresStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    pool,
    Dialect::Postgres
);

super::writes::impl_evidence_writes!(PostgresStore, pool);

impl PostgresStore {
    /// The frontier hashes of a tree of `size` leaves, read inside the
    /// append transaction (only when another process appended last).
    async fn load_frontier(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        size: u64,
    ) -> Result<Vec<crate::hash::Hash>, StoreError> {
        let mut out = Vec::new();
        for id in crate::merkle::frontier_ids(size) {
            let span = id.stored_span();
            let (first, end) = (span.first as i64, (span.first + span.count) as i64);
            let rows = if span.level == 0 {
                sqlx::query(super::reads::LEAF_SPAN_SQL)
                    .bind(first + 1)
                    .bind(end + 1)
                    .fetch_all(&mut **tx)
                    .await?
            } else {
                sqlx::query(super::reads::NODES_SQL)
                    .bind(span.level as i32)
                    .bind(first)
                    .bind(end)
                    .bind(span.count as i64)
                    .fetch_all(&mut **tx)
                    .await?
            };
            let rows: Vec<Vec<u8>> = rows
                .iter()
                .map(|r| r.try_get("hash"))
                .collect::<Result<_, sqlx::Error>>()?;
            out.push(super::node_from_span(id, &rows)?);
        }
        Ok(out)
    }

    /// Inserts Merkle nodes, keeping any already stored (tree back-fill).
    pub(crate) async fn insert_nodes(
        &self,
        nodes: &[(crate::merkle::NodeId, crate::hash::Hash)],
    ) -> Result<(), StoreError> {
        let levels: Vec<i32> = nodes.iter().map(|(id, _)| id.level as i32).collect();
        let idx: Vec<i64> = nodes.iter().map(|(id, _)| id.index as i64).collect();
        let hashes: Vec<&[u8]> = nodes.iter().map(|(_, h)| &h[..]).collect();
        sqlx::query(
            "INSERT INTO merkle_node (level, idx, hash) \
             SELECT * FROM UNNEST($1::int[], $2::bigint[], $3::bytea[]) \
             ON CONFLICT (level, idx) DO NOTHING",
        )
        .bind(&levels)
        .bind(&idx)
        .bind(&hashes)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Indexes entries stored before the search index existed (an upgrade),
    /// in chunks, each under the chain lock so concurrent starts agree.
    async fn backfill_index(&self) -> Result<(), StoreError> {
        let Some(indexer) = self.indexer else {
            return Ok(());
        };
        loop {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CHAIN_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
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

/// The writer role the schema migrations create and grant.
pub const DEFAULT_WRITER_ROLE: &str = "vellum_writer";

/// vellum's tables: the writer role may SELECT and INSERT, nothing else.
const TABLES: &str = "entry, entry_key, search_index, merkle_node, checkpoint, \
     summary_event, summary_finding, summary_backfill";

/// Whether `s` can be written into SQL as a role name without quoting
/// rules: lowercase letters, digits and `_`, not starting with a digit, at
/// most 63 bytes (PostgreSQL's identifier length).
pub fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

impl PostgresStore {
    /// After the migrations: creates `role` (NOLOGIN) when missing and
    /// grants it SELECT and INSERT on vellum's tables, revoking UPDATE,
    /// DELETE and TRUNCATE. The migrations themselves name the default
    /// role; when `role` is another one, the default role's rights in this
    /// database are revoked, so only the configured role can write here.
    pub async fn grant_writer_role(&self, role: &str) -> Result<(), StoreError> {
        if !is_plain_identifier(role) {
            return Err(StoreError::InvalidRole(role.to_string()));
        }
        let mut sql = format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                 CREATE ROLE \"{role}\" NOLOGIN; \
               END IF; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;\n\
             GRANT USAGE ON SCHEMA public TO \"{role}\";\n\
             GRANT SELECT, INSERT ON {TABLES} TO \"{role}\";\n\
             REVOKE UPDATE, DELETE, TRUNCATE ON {TABLES} FROM \"{role}\";\n"
        );
        if role != DEFAULT_WRITER_ROLE {
            sql.push_str(&format!(
                "DO $$ BEGIN \
                   IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DEFAULT_WRITER_ROLE}') THEN \
                     REVOKE ALL ON {TABLES} FROM \"{DEFAULT_WRITER_ROLE}\"; \
                     REVOKE USAGE ON SCHEMA public FROM \"{DEFAULT_WRITER_ROLE}\"; \
                   END IF; \
                 END $$;\n"
            ));
        }
        let mut tx = self.pool.begin().await?;
        (&mut *tx).execute(AssertSqlSafe(sql)).await?;
        tx.commit().await?;
        Ok(())
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
        // Four round trips: BEGIN + lock (one simple query), head + stored keys
        // (one statement), every insert (one statement), COMMIT. The head is
        // read by a statement that starts after the lock is held, so its
        // snapshot sees every batch committed before (no fork).
        let mut tx = self.writer.begin_with(BEGIN_AND_LOCK).await?;
        let wanted: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
        let rows = sqlx::query(HEAD_AND_KEYS)
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await?;
        let mut head = ChainHead::EMPTY;
        let mut stored = HashMap::new();
        for row in &rows {
            match row.try_get::<Option<String>, _>("key")? {
                None => {
                    head =
                        head_from_row(Some(row.try_get("seq")?), Some(row.try_get("chain_hash")?))?
                }
                Some(key) => {
                    stored.insert(key, row_to_entry(row)?);
                }
            }
        }
        let cached = self.tree.lock().ok().and_then(|t| {
            t.as_ref()
                .filter(|t| t.head == head)
                .map(|t| t.frontier.clone())
        });
        let frontier = match cached {
            Some(f) => f,
            None => self.load_frontier(&mut tx, head.seq as u64).await?,
        };
        let (fresh, plan) = plan_batch(&keys, stored);
        let entries = chain(head, &fresh);
        let (nodes, next_tree) = extend_tree(head, &frontier, &entries);
        if !entries.is_empty() {
            insert_all(&mut tx, &keys, &fresh, &entries, &nodes).await?;
            super::summary::insert_pg(&mut tx, &entries).await?;
        }
        tx.commit().await?;
        if let Ok(mut t) = self.tree.lock() {
            *t = Some(next_tree);
        }
        Ok(merge_plan(plan, entries))
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

/// One plain connection first: a pool hides why it cannot connect behind
/// "pool timed out", while this says "connection refused", "password
/// authentication failed", … with the server's host and port.
async fn probe(opts: &PgConnectOptions) -> Result<(), StoreError> {
    use sqlx::Connection;
    let target = format!("{}:{}", opts.get_host(), opts.get_port());
    let fail = |reason: String| StoreError::Connect {
        target: target.clone(),
        reason,
    };
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::PgConnection::connect_with(opts),
    )
    .await
    {
        Err(_) => Err(fail("no answer within 5 s".into())),
        Ok(Err(sqlx::Error::Io(e))) => Err(fail(e.to_string())),
        Ok(Err(sqlx::Error::Database(d))) => Err(fail(d.message().to_string())),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_append_takes_the_chain_lock() {
        assert_eq!(
            BEGIN_AND_LOCK,
            format!("BEGIN; SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY})")
        );
    }
}
