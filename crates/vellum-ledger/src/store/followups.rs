//! Outstanding follow-ups, read-only. A layer above the ledger marks an
//! entry as needing a follow-up event by storing an index row (`param`,
//! `val`) with it; the follow-up is stored later under the idempotency key
//! `<key_prefix><entry id>|<val>`. The store is insert-only, so "done" is
//! the existence of that key, never a flag on the row. (vellum's use: DICOM
//! pixel digests computed after the event that referenced the study.)

use sqlx::Row;

use super::keys::prefix_end;
use super::{AnyStore, StoreError};

/// Which index rows mark outstanding work and which keys complete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowupKind {
    /// The index parameter of the marking rows (e.g. `_pixel-pending`).
    pub param: &'static str,
    /// The idempotency-key prefix of the completing events.
    pub key_prefix: &'static str,
}

impl FollowupKind {
    /// The key of the follow-up for value `val` of entry `entry_id`.
    pub fn key(&self, entry_id: &str, val: &str) -> String {
        format!("{}{entry_id}|{val}", self.key_prefix)
    }
}

/// One marked value of one stored entry whose follow-up is not stored yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: i64,
    pub event_id: String,
    /// The entry's `meta.lastUpdated` (commit time).
    pub last_updated: String,
    /// The marked value (e.g. a Study Instance UID).
    pub value: String,
}

// Numbered placeholders in order of first use: both backends accept them,
// so each statement is written once.
const LIST_SQL: &str = "SELECT e.seq, e.id, e.last_updated, s.val FROM search_index s \
     JOIN entry e ON e.seq = s.seq \
     WHERE s.param = $1 AND s.seq >= $2 AND s.val IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM entry_key k WHERE k.key = $3 || e.id || '|' || s.val) \
     ORDER BY s.seq, s.val LIMIT $4";
const COUNT_SQL: &str = "SELECT COUNT(*) AS n FROM search_index s JOIN entry e ON e.seq = s.seq \
     WHERE s.param = $1 AND s.val IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM entry_key k WHERE k.key = $2 || e.id || '|' || s.val)";
const DONE_SQL: &str = "SELECT COUNT(*) AS n FROM entry_key WHERE key >= $1 AND key < $2";

fn to_pending<R: Row>(r: &R) -> Result<Pending, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Pending {
        seq: r.try_get("seq")?,
        event_id: r.try_get("id")?,
        last_updated: r.try_get("last_updated")?,
        value: r.try_get("val")?,
    })
}

/// Runs one query on whichever backend, binding the same values.
macro_rules! on_backend {
    ($store:expr, $sql:expr, [$($b:expr),*], $fetch:ident, $map:expr) => {
        match $store {
            AnyStore::Sqlite(s) => {
                let q = sqlx::query($sql)$(.bind($b))*;
                $map(q.$fetch(s.readers()).await?)
            }
            AnyStore::Postgres(s) => {
                let q = sqlx::query($sql)$(.bind($b))*;
                $map(q.$fetch(s.pool()).await?)
            }
        }
    };
}

impl AnyStore {
    /// Up to `limit` outstanding follow-ups of `kind` with seq >= `from_seq`,
    /// oldest first.
    pub async fn pending_followups(
        &self,
        kind: &FollowupKind,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<Pending>, StoreError> {
        on_backend!(
            self,
            LIST_SQL,
            [kind.param, from_seq, kind.key_prefix, limit],
            fetch_all,
            |rows: Vec<_>| rows
                .iter()
                .map(to_pending)
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)
        )
    }

    /// How many follow-ups of `kind` are outstanding (for `/metrics`).
    pub async fn pending_count(&self, kind: &FollowupKind) -> Result<i64, StoreError> {
        on_backend!(
            self,
            COUNT_SQL,
            [kind.param, kind.key_prefix],
            fetch_one,
            |r| sqlx::Row::try_get::<i64, _>(&r, "n").map_err(StoreError::from)
        )
    }

    /// How many follow-ups of `kind` are stored (for `/metrics`).
    pub async fn followup_count(&self, kind: &FollowupKind) -> Result<i64, StoreError> {
        let end = prefix_end(kind.key_prefix);
        on_backend!(
            self,
            DONE_SQL,
            [kind.key_prefix, end.as_str()],
            fetch_one,
            |r| sqlx::Row::try_get::<i64, _>(&r, "n").map_err(StoreError::from)
        )
    }
}
