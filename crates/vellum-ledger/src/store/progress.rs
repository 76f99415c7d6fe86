//! How far each outbound feed (a SIEM destination) has acknowledged the
//! stream. Insert-only: every acknowledged batch adds a row; the position
//! is the highest one. A row that already exists (a batch sent again after
//! a crash) is kept as it is.

use super::{AnyStore, StoreError};

const POSITION_SQL: &str =
    "SELECT COALESCE(MAX(acked_seq), 0) AS n FROM export_progress WHERE destination = $1";
const SQLITE_INSERT_SQL: &str = "INSERT OR IGNORE INTO export_progress \
     (destination, acked_seq, recorded_at) VALUES ($1, $2, $3)";
const PG_INSERT_SQL: &str = "INSERT INTO export_progress (destination, acked_seq, recorded_at) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

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
            AnyStore::Sqlite(s) => {
                sqlx::query(SQLITE_INSERT_SQL)
                    .bind(destination)
                    .bind(seq)
                    .bind(recorded_at)
                    .execute(s.pool())
                    .await?;
            }
            AnyStore::Postgres(s) => {
                sqlx::query(PG_INSERT_SQL)
                    .bind(destination)
                    .bind(seq)
                    .bind(recorded_at)
                    .execute(s.pool())
                    .await?;
            }
        }
        Ok(())
    }
}
