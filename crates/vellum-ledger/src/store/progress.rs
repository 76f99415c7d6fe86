//! How far each outbound feed (a SIEM destination) has acknowledged the
//! stream. Insert-only: every acknowledged batch adds a row; the position
//! is the highest one. A row that already exists (a batch sent again after
//! a crash) is kept as it is.

use super::{AnyStore, StoreError};

const POSITION_SQL: &str =
    "SELECT COALESCE(MAX(acked_seq), 0) AS n FROM export_progress WHERE destination = $1";

impl AnyStore {
    /// The highest seq `destination` acknowledged (0: none yet).
    pub async fn export_position(&self, destination: &str) -> Result<i64, StoreError> {
        Ok(match self {
            AnyStore::Sqlite(s) => {
                sqlx::query_scalar::<_, i64>(POSITION_SQL)
                    .bind(destination)
                    .fetch_one(s.readers())
                    .await?
            }
            AnyStore::Postgres(s) => {
                sqlx::query_scalar::<_, i64>(POSITION_SQL)
                    .bind(destination)
                    .fetch_one(s.pool())
                    .await?
            }
        })
    }

    /// Records that `destination` acknowledged every entry up to `seq`.
    pub async fn insert_export_position(
        &self,
        destination: &str,
        seq: i64,
        recorded_at: &str,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.write_export_position(destination, seq, recorded_at).await,
            AnyStore::Postgres(s) => s.write_export_position(destination, seq, recorded_at).await,
        }
    }
}
