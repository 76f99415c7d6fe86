//! The inserts besides entries — witnessed checkpoints, witness
//! cosignatures, time seals, checkpoints, feed positions — written once for
//! both backends:
//! the SQL and binds are shared, only the pool differs, which is what
//! [`impl_evidence_writes!`] fills in (as store/reads.rs does for reads).

macro_rules! impl_evidence_writes {
    ($store:ty, $pool:ident) => {
        impl $store {
            /// Records a checkpoint cosigned as a witness, only while the newest
            /// stored size for its origin is `old`; false when it is not.
            pub(crate) async fn write_witnessed(
                &self,
                w: &super::Witnessed<'_>,
                created_at: &str,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(super::reads::INSERT_WITNESSED_SQL)
                    .bind(w.origin)
                    .bind(w.size)
                    .bind(&w.root[..])
                    .bind(w.note)
                    .bind(created_at)
                    .bind(w.old)
                    .execute(&self.$pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(crate) async fn write_cosignature(
                &self,
                tree_size: i64,
                witness: &str,
                line: &str,
                created_at: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(super::reads::INSERT_COSIGNATURE_SQL)
                    .bind(tree_size)
                    .bind(witness)
                    .bind(line)
                    .bind(created_at)
                    .execute(&self.$pool)
                    .await?;
                Ok(())
            }

            pub(crate) async fn write_time_seal(
                &self,
                seal: &super::StoredTimeSeal,
                created_at: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(super::reads::INSERT_TIME_SEAL_SQL)
                    .bind(seal.tree_size)
                    .bind(seal.tsa.as_str())
                    .bind(seal.token.as_slice())
                    .bind(seal.gen_time.as_str())
                    .bind(created_at)
                    .execute(&self.$pool)
                    .await?;
                Ok(())
            }

            pub(crate) async fn write_checkpoint(
                &self,
                tree_size: i64,
                note: &str,
                created_at: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(super::reads::INSERT_CHECKPOINT_SQL)
                    .bind(tree_size)
                    .bind(note)
                    .bind(created_at)
                    .execute(&self.$pool)
                    .await?;
                Ok(())
            }

            /// Records that `destination` acknowledged every entry up to
            /// `seq` (a row already there is kept as it is).
            pub(crate) async fn write_export_position(
                &self,
                destination: &str,
                seq: i64,
                recorded_at: &str,
            ) -> Result<(), StoreError> {
                sqlx::query(super::writes::INSERT_EXPORT_POSITION_SQL)
                    .bind(destination)
                    .bind(seq)
                    .bind(recorded_at)
                    .execute(&self.$pool)
                    .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_evidence_writes;

/// SQLite (3.24 and later) and PostgreSQL both take this form.
pub(crate) const INSERT_EXPORT_POSITION_SQL: &str = "INSERT INTO export_progress \
     (destination, acked_seq, recorded_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
