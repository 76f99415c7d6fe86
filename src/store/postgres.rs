//! PostgreSQL backend. Several vellum processes may share one database: each
//! batch takes a transaction-scoped advisory lock and reads the chain head
//! inside the transaction, so chains never fork.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, Row};
use std::str::FromStr;

use std::collections::HashMap;

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
        let opts = PgConnectOptions::from_str(url)?;
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

impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
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
