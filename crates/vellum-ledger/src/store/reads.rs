//! The read queries both backends serve, written once. Every statement
//! uses numbered placeholders (`$1`, `$2`, …), which SQLite and PostgreSQL
//! both accept, so the SQL is the same text on both; only the row and
//! argument types differ, which is what [`impl_reads!`] fills in.

/// The entry columns every read selects, in `StoredEntry` order.
macro_rules! entry_columns {
    () => {
        "e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, e.last_updated"
    };
}
pub(crate) use entry_columns;

pub(crate) const HEAD_SQL: &str = "SELECT seq, chain_hash FROM entry ORDER BY seq DESC LIMIT 1";
pub(crate) const BY_ID_SQL: &str =
    concat!("SELECT ", entry_columns!(), " FROM entry e WHERE e.id = $1");
pub(crate) const AFTER_SQL: &str = concat!(
    "SELECT ",
    entry_columns!(),
    " FROM entry e WHERE e.seq > $1 ORDER BY e.seq LIMIT $2"
);
pub(crate) const KEY_RANGE_SQL: &str = concat!(
    "SELECT k.key, ",
    entry_columns!(),
    " FROM entry_key k JOIN entry e ON e.seq = k.seq WHERE k.key >= $1 AND k.key < $2 ORDER BY e.seq"
);
pub(crate) const BY_KEY_SQL: &str = concat!(
    "SELECT ",
    entry_columns!(),
    " FROM entry_key k JOIN entry e ON e.seq = k.seq WHERE k.key = $1"
);
/// At most `$4` stored nodes of level `$1` with indexes `[$2, $3)`, with
/// their index: the span a node folds from (`merkle::StoredSpan`), or one
/// page of verify's check of every stored node.
pub(crate) const NODES_SQL: &str = "SELECT idx, hash FROM merkle_node \
     WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx LIMIT $4";
/// Leaf hashes of entries `[$1, $2)` by seq (leaf index + 1).
pub(crate) const LEAF_SPAN_SQL: &str =
    "SELECT leaf_hash AS hash FROM entry WHERE seq >= $1 AND seq < $2 ORDER BY seq";
pub(crate) const CHECKPOINTS_SQL: &str =
    "SELECT tree_size, note FROM checkpoint ORDER BY tree_size";
pub(crate) const LATEST_CHECKPOINT_SQL: &str =
    "SELECT tree_size, note FROM checkpoint ORDER BY tree_size DESC LIMIT 1";
pub(crate) const CHECKPOINT_AT_SQL: &str =
    "SELECT tree_size, note FROM checkpoint WHERE tree_size = $1";
/// One checkpoint per size: asking again at the same size keeps the first.
pub(crate) const INSERT_CHECKPOINT_SQL: &str =
    "INSERT INTO checkpoint (tree_size, note, created_at) \
     VALUES ($1, $2, $3) ON CONFLICT (tree_size) DO NOTHING";
pub(crate) const CHECKPOINTS_AFTER_SQL: &str =
    "SELECT tree_size, note FROM checkpoint WHERE tree_size > $1 ORDER BY tree_size LIMIT $2";
pub(crate) const WITNESSED_LATEST_SQL: &str = "SELECT tree_size, root FROM witnessed_checkpoint \
     WHERE origin = $1 ORDER BY tree_size DESC LIMIT 1";
/// Inserts only while the newest stored size for the origin is still `$6`,
/// so two requests checked against the same state cannot both move it.
pub(crate) const INSERT_WITNESSED_SQL: &str =
    "INSERT INTO witnessed_checkpoint (origin, tree_size, root, note, created_at) \
     SELECT $1, $2, $3, $4, $5 WHERE COALESCE((SELECT MAX(tree_size) FROM witnessed_checkpoint \
     WHERE origin = $1), 0) = $6 ON CONFLICT (origin, tree_size) DO NOTHING";
pub(crate) const COSIGNATURES_AT_SQL: &str =
    "SELECT tree_size, witness, line FROM witness_cosignature WHERE tree_size = $1 ORDER BY witness";
pub(crate) const COSIGNATURES_SQL: &str =
    "SELECT tree_size, witness, line FROM witness_cosignature ORDER BY tree_size, witness";
pub(crate) const LATEST_COSIGNED_SQL: &str =
    "SELECT COALESCE(MAX(tree_size), -1) AS n FROM witness_cosignature WHERE witness = $1";
pub(crate) const INSERT_COSIGNATURE_SQL: &str =
    "INSERT INTO witness_cosignature (tree_size, witness, line, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size, witness) DO NOTHING";
pub(crate) const TIME_SEALS_SQL: &str =
    "SELECT tree_size, tsa, token, gen_time FROM time_seal ORDER BY tree_size, created_at, tsa";
pub(crate) const TIME_SEALS_AT_SQL: &str = "SELECT tree_size, tsa, token, gen_time \
     FROM time_seal WHERE tree_size = $1 ORDER BY created_at, tsa";
/// One seal per checkpoint and TSA: a second one for the same pair is dropped.
pub(crate) const INSERT_TIME_SEAL_SQL: &str =
    "INSERT INTO time_seal (tree_size, tsa, token, gen_time, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size, tsa) DO NOTHING";
pub(crate) const INDEX_ROWS_SQL: &str = "SELECT seq, param, sys, val, exact, low, high \
     FROM search_index WHERE seq > $1 AND seq <= $2 ORDER BY seq";
pub(crate) const KEYS_SQL: &str =
    "SELECT seq, key FROM entry_key WHERE seq > $1 AND seq <= $2 ORDER BY seq";
pub(crate) const READY_SQL: &str = "SELECT 1 FROM entry LIMIT 1";
pub(crate) const MAX_INDEXED_SQL: &str = "SELECT COALESCE(MAX(seq), 0) AS n FROM search_index";

/// Writes, for one backend (`$store` with its read pool field `$pool`,
/// database `$db`, row `$row`, search dialect `$dialect`), the row decoder `row_to_entry`, the search
/// binder `bind_all`, and the read half of the store: head, by id, after,
/// ready, search, count, by key, by key range.
macro_rules! impl_reads {
    ($store:ty, $db:ty, $row:ty, $pool:ident, $dialect:expr) => {
        fn bind_all<'q>(
            mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            binds: &'q [super::search::Bind],
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            for b in binds {
                q = match b {
                    super::search::Bind::Text(t) => q.bind(t.as_str()),
                    super::search::Bind::Int(i) => q.bind(*i),
                };
            }
            q
        }

        fn row_to_entry(row: &$row) -> Result<super::StoredEntry, sqlx::Error> {
            use sqlx::Row as _;
            Ok(super::StoredEntry {
                seq: row.try_get("seq")?,
                id: row.try_get("id")?,
                body: row.try_get("body")?,
                body_sha256: row.try_get("body_sha256")?,
                chain_hash: row.try_get("chain_hash")?,
                leaf_hash: row.try_get("leaf_hash")?,
                last_updated: row.try_get("last_updated")?,
            })
        }

        impl $store {
            /// The search plan, from bounded probes of the index (search.rs).
            async fn plan(
                &self,
                query: &super::search::SearchQuery,
                purpose: super::search::Purpose,
            ) -> Result<super::search::Plan, super::StoreError> {
                use sqlx::Row as _;
                super::search::choose_plan(query, purpose, |sql| async move {
                    let text = sql.numbered();
                    let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(text.as_str())), &sql.binds)
                        .fetch_one(&self.$pool)
                        .await?;
                    Ok(row.try_get("n")?)
                })
                .await
            }

            async fn read_head(&self) -> Result<super::ChainHead, super::StoreError> {
                use sqlx::Row as _;
                let row = sqlx::query(super::reads::HEAD_SQL)
                    .fetch_optional(&self.$pool)
                    .await?;
                match row {
                    Some(r) => super::head_from_row(
                        Some(r.try_get("seq")?),
                        Some(r.try_get("chain_hash")?),
                    ),
                    None => Ok(super::ChainHead::EMPTY),
                }
            }

            async fn read_by_id(
                &self,
                id: &str,
            ) -> Result<Option<super::StoredEntry>, super::StoreError> {
                let row = sqlx::query(super::reads::BY_ID_SQL)
                    .bind(id)
                    .fetch_optional(&self.$pool)
                    .await?;
                Ok(row.as_ref().map(row_to_entry).transpose()?)
            }

            async fn read_after(
                &self,
                after_seq: i64,
                limit: i64,
            ) -> Result<Vec<super::StoredEntry>, super::StoreError> {
                let rows = sqlx::query(super::reads::AFTER_SQL)
                    .bind(after_seq)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await?;
                Ok(rows.iter().map(row_to_entry).collect::<Result<_, _>>()?)
            }

            async fn read_ready(&self) -> bool {
                sqlx::query(super::reads::READY_SQL)
                    .fetch_optional(&self.$pool)
                    .await
                    .is_ok()
            }

            async fn read_search(
                &self,
                query: &super::search::SearchQuery,
            ) -> Result<Vec<super::search::SearchHit>, super::StoreError> {
                use sqlx::Row as _;
                let plan = self.plan(query, super::search::Purpose::Page).await?;
                let sql = super::search::page_sql(query, &plan, $dialect);
                let text = sql.numbered();
                let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(text.as_str())), &sql.binds)
                    .fetch_all(&self.$pool)
                    .await?;
                let hits = rows
                    .iter()
                    .map(|r: &$row| {
                        Ok(super::search::SearchHit {
                            entry: row_to_entry(r)?,
                            sort_key: r.try_get("sort_key")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok(super::search::hits_in_order(hits, query))
            }

            async fn read_count(
                &self,
                query: &super::search::SearchQuery,
            ) -> Result<i64, super::StoreError> {
                use sqlx::Row as _;
                let plan = self.plan(query, super::search::Purpose::Count).await?;
                let sql = super::search::count_sql(query, &plan, $dialect);
                let text = sql.numbered();
                let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(text.as_str())), &sql.binds)
                    .fetch_one(&self.$pool)
                    .await?;
                Ok(row.try_get("n")?)
            }

            /// Entries whose idempotency key is in `[from, to)`, in seq order.
            pub(crate) async fn entries_by_key_range(
                &self,
                from: &str,
                to: &str,
            ) -> Result<Vec<(String, super::StoredEntry)>, super::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(super::reads::KEY_RANGE_SQL)
                    .bind(from)
                    .bind(to)
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("key")?, row_to_entry(r)?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// The stored hashes a Merkle node folds from, in index order.
            pub(crate) async fn read_span(
                &self,
                span: crate::merkle::StoredSpan,
            ) -> Result<Vec<Vec<u8>>, super::StoreError> {
                use sqlx::Row as _;
                let (first, end) = (span.first as i64, (span.first + span.count) as i64);
                if span.level > 0 {
                    let nodes = self
                        .read_nodes(span.level, first, end, span.count as i64)
                        .await?;
                    return Ok(nodes.into_iter().map(|(_, h)| h).collect());
                }
                sqlx::query(super::reads::LEAF_SPAN_SQL)
                    .bind(first + 1)
                    .bind(end + 1)
                    .fetch_all(&self.$pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get("hash"))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// Up to `limit` stored nodes of `level` with indexes in
            /// `[from, to)`, in index order, with their index.
            pub(crate) async fn read_nodes(
                &self,
                level: u32,
                from: i64,
                to: i64,
                limit: i64,
            ) -> Result<Vec<(i64, Vec<u8>)>, super::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(super::reads::NODES_SQL)
                    .bind(level as i32)
                    .bind(from)
                    .bind(to)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("idx")?, r.try_get("hash")?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// Checkpoints: all by size, the latest (`latest`), or one size.
            pub(crate) async fn read_checkpoints(
                &self,
                size: Option<i64>,
                latest: bool,
            ) -> Result<Vec<super::StoredCheckpoint>, super::StoreError> {
                use sqlx::Row as _;
                let q = match (size, latest) {
                    (Some(n), _) => sqlx::query(super::reads::CHECKPOINT_AT_SQL).bind(n),
                    (None, true) => sqlx::query(super::reads::LATEST_CHECKPOINT_SQL),
                    (None, false) => sqlx::query(super::reads::CHECKPOINTS_SQL),
                };
                let rows = q.fetch_all(&self.$pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(super::StoredCheckpoint {
                            tree_size: r.try_get("tree_size")?,
                            note: r.try_get("note")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// Up to `limit` checkpoints larger than `after`, by size.
            pub(crate) async fn read_checkpoints_after(
                &self,
                after: i64,
                limit: i64,
            ) -> Result<Vec<super::StoredCheckpoint>, super::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(super::reads::CHECKPOINTS_AFTER_SQL)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(super::StoredCheckpoint {
                            tree_size: r.try_get("tree_size")?,
                            note: r.try_get("note")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// The newest checkpoint of `origin` this vellum cosigned as a
            /// witness: its size and root.
            pub(crate) async fn read_witnessed_latest(
                &self,
                origin: &str,
            ) -> Result<Option<(i64, Vec<u8>)>, super::StoreError> {
                use sqlx::Row as _;
                let row = sqlx::query(super::reads::WITNESSED_LATEST_SQL)
                    .bind(origin)
                    .fetch_optional(&self.$pool)
                    .await?;
                Ok(row
                    .map(|r| Ok::<_, sqlx::Error>((r.try_get("tree_size")?, r.try_get("root")?)))
                    .transpose()?)
            }

            /// Stored cosignatures: of one checkpoint size, or all.
            pub(crate) async fn read_cosignatures(
                &self,
                size: Option<i64>,
            ) -> Result<Vec<super::StoredCosignature>, super::StoreError> {
                use sqlx::Row as _;
                let q = match size {
                    Some(n) => sqlx::query(super::reads::COSIGNATURES_AT_SQL).bind(n),
                    None => sqlx::query(super::reads::COSIGNATURES_SQL),
                };
                let rows = q.fetch_all(&self.$pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(super::StoredCosignature {
                            tree_size: r.try_get("tree_size")?,
                            witness: r.try_get("witness")?,
                            line: r.try_get("line")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// Time seals: of one checkpoint size, or all by size.
            pub(crate) async fn read_time_seals(
                &self,
                size: Option<i64>,
            ) -> Result<Vec<super::StoredTimeSeal>, super::StoreError> {
                use sqlx::Row as _;
                let q = match size {
                    Some(n) => sqlx::query(super::reads::TIME_SEALS_AT_SQL).bind(n),
                    None => sqlx::query(super::reads::TIME_SEALS_SQL),
                };
                let rows = q.fetch_all(&self.$pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok(super::StoredTimeSeal {
                            tree_size: r.try_get("tree_size")?,
                            tsa: r.try_get("tsa")?,
                            token: r.try_get("token")?,
                            gen_time: r.try_get("gen_time")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// The largest checkpoint size `witness` cosigned (-1: none).
            pub(crate) async fn read_latest_cosigned(
                &self,
                witness: &str,
            ) -> Result<i64, super::StoreError> {
                use sqlx::Row as _;
                let row = sqlx::query(super::reads::LATEST_COSIGNED_SQL)
                    .bind(witness)
                    .fetch_one(&self.$pool)
                    .await?;
                Ok(row.try_get("n")?)
            }

            /// The search-index rows of the entries with seq in
            /// `(after, upto]`, in seq order.
            pub(crate) async fn index_rows_between(
                &self,
                after: i64,
                upto: i64,
            ) -> Result<Vec<(i64, super::IndexRow)>, super::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(super::reads::INDEX_ROWS_SQL)
                    .bind(after)
                    .bind(upto)
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get("seq")?,
                            super::IndexRow {
                                param: r.try_get("param")?,
                                sys: r.try_get("sys")?,
                                val: r.try_get("val")?,
                                exact: r.try_get("exact")?,
                                low: r.try_get("low")?,
                                high: r.try_get("high")?,
                            },
                        ))
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// `(seq, key)` of every idempotency key of the entries in
            /// `after < seq <= upto`, in seq order.
            pub(crate) async fn keys_between(
                &self,
                after: i64,
                upto: i64,
            ) -> Result<Vec<(i64, String)>, super::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query(super::reads::KEYS_SQL)
                    .bind(after)
                    .bind(upto)
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("seq")?, r.try_get("key")?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(super::StoreError::from)
            }

            /// The entry an idempotency key names.
            pub(crate) async fn entry_by_key(
                &self,
                key: &str,
            ) -> Result<Option<super::StoredEntry>, super::StoreError> {
                let row = sqlx::query(super::reads::BY_KEY_SQL)
                    .bind(key)
                    .fetch_optional(&self.$pool)
                    .await?;
                Ok(row.as_ref().map(row_to_entry).transpose()?)
            }
        }
    };
}
pub(crate) use impl_reads;
