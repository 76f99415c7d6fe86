//! Pending pixel digests (issue 4), read-only: the internal `_pixel-pending`
//! index rows (written with their entries, src/fhir/search_index.rs) for
//! which no follow-up event is stored yet under its idempotency key
//! `pixel-digest:<event id>|<study uid>`. The store is insert-only, so
//! "done" is the existence of the follow-up, never a flag on the row.

use sqlx::Row;

use super::{AnyStore, StoreError};

/// Idempotency-key prefix of the follow-up digest events.
pub const FOLLOWUP_KEY_PREFIX: &str = "pixel-digest:";

/// The key of the follow-up for one study of one event.
pub fn followup_key(event_id: &str, study_uid: &str) -> String {
    format!("{FOLLOWUP_KEY_PREFIX}{event_id}|{study_uid}")
}

/// One study of one stored event whose digest is still outstanding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDigest {
    pub seq: i64,
    pub event_id: String,
    /// The event's `meta.lastUpdated` (commit time).
    pub last_updated: String,
    pub study_uid: String,
}

// The key expression is written the same on both backends (`||`).
const LIST_SQLITE: &str = "SELECT e.seq, e.id, e.last_updated, s.val FROM search_index s \
     JOIN entry e ON e.seq = s.seq \
     WHERE s.param = '_pixel-pending' AND s.seq >= ? AND s.val IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM entry_key k WHERE k.key = 'pixel-digest:' || e.id || '|' || s.val) \
     ORDER BY s.seq, s.val LIMIT ?";
const LIST_PG: &str = "SELECT e.seq, e.id, e.last_updated, s.val FROM search_index s \
     JOIN entry e ON e.seq = s.seq \
     WHERE s.param = '_pixel-pending' AND s.seq >= $1 AND s.val IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM entry_key k WHERE k.key = 'pixel-digest:' || e.id || '|' || s.val) \
     ORDER BY s.seq, s.val LIMIT $2";
const COUNT_SQL: &str = "SELECT COUNT(*) AS n FROM search_index s JOIN entry e ON e.seq = s.seq \
     WHERE s.param = '_pixel-pending' AND s.val IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM entry_key k WHERE k.key = 'pixel-digest:' || e.id || '|' || s.val)";
// 'pixel-digest;' is the first string after every 'pixel-digest:…' key.
const FOLLOWUPS_SQL: &str =
    "SELECT COUNT(*) AS n FROM entry_key WHERE key >= 'pixel-digest:' AND key < 'pixel-digest;'";

macro_rules! to_pending {
    ($r:expr) => {
        (|| -> Result<PendingDigest, sqlx::Error> {
            Ok(PendingDigest {
                seq: $r.try_get("seq")?,
                event_id: $r.try_get("id")?,
                last_updated: $r.try_get("last_updated")?,
                study_uid: $r.try_get("val")?,
            })
        })()
    };
}

impl AnyStore {
    /// Up to `limit` outstanding digests with seq >= `from_seq`, oldest first.
    pub async fn pending_digests(
        &self,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<PendingDigest>, StoreError> {
        Ok(match self {
            AnyStore::Sqlite(s) => sqlx::query(LIST_SQLITE)
                .bind(from_seq)
                .bind(limit)
                .fetch_all(s.readers())
                .await?
                .iter()
                .map(|r| to_pending!(r))
                .collect::<Result<_, _>>()?,
            AnyStore::Postgres(s) => sqlx::query(LIST_PG)
                .bind(from_seq)
                .bind(limit)
                .fetch_all(s.pool())
                .await?
                .iter()
                .map(|r| to_pending!(r))
                .collect::<Result<_, _>>()?,
        })
    }

    /// How many digests are outstanding (for `/metrics`).
    pub async fn pending_digest_count(&self) -> Result<i64, StoreError> {
        self.count_rows(COUNT_SQL).await
    }

    /// How many follow-up digest events are stored (for `/metrics`).
    pub async fn followup_count(&self) -> Result<i64, StoreError> {
        self.count_rows(FOLLOWUPS_SQL).await
    }

    async fn count_rows(&self, sql: &'static str) -> Result<i64, StoreError> {
        Ok(match self {
            AnyStore::Sqlite(s) => sqlx::query(sql)
                .fetch_one(s.readers())
                .await?
                .try_get("n")?,
            AnyStore::Postgres(s) => sqlx::query(sql).fetch_one(s.pool()).await?.try_get("n")?,
        })
    }
}
