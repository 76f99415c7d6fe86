//! Persistence behind one `Store` trait, with SQLite (default) and PostgreSQL
//! backends. The store never computes hashes: the ledger hands it a closure
//! that chains a batch onto the head the store read inside its transaction.

pub mod followups;
pub mod keys;
pub mod postgres;
mod progress;
mod reads;
pub mod search;
pub mod sqlite;
mod sqlite_append;
pub mod stream;
pub mod summary;
mod writes;

use std::future::Future;

use crate::hash::{Hash, GENESIS};
use crate::DatabaseUrl;
use search::{SearchHit, SearchQuery};

/// Entries back-filled into the search index per transaction.
const BACKFILL_CHUNK: i64 = 500;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the SQLite append thread has stopped")]
    AppenderGone,
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("stored data is malformed at seq {seq}: {what}")]
    Corrupt { seq: i64, what: &'static str },
    /// The PostgreSQL server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The SQLite file could not be opened.
    #[error("cannot open SQLite database {}: {reason}", path.display())]
    Open {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A role name that cannot be written into SQL as it is.
    #[error("the role name {0:?} is not a plain SQL identifier")]
    InvalidRole(String),
}

/// The last entry of the chain (seq 0 and 32 zero bytes when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub chain_hash: Hash,
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        chain_hash: GENESIS,
    };
}

/// A fully chained entry, ready to insert.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub seq: i64,
    pub id: String,
    pub body: String,
    pub body_sha256: Hash,
    pub chain_hash: Hash,
    pub leaf_hash: Hash,
    /// `meta.lastUpdated` as written in the body (RFC 3339, UTC, microseconds).
    pub last_updated: String,
    /// Search index rows, inserted in the same transaction as the entry.
    pub index: Vec<IndexRow>,
    /// The report summary row, inserted in the same transaction (boxed:
    /// most entries have none).
    pub summary: Option<Box<summary::Summary>>,
}

/// One row of the `search_index` table (layout in
/// migrations/sqlite/0004_search_index.sql): a token, string, reference or
/// date value of one search parameter of one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRow {
    pub param: String,
    pub sys: Option<String>,
    pub val: Option<String>,
    pub exact: Option<String>,
    pub low: Option<i64>,
    pub high: Option<i64>,
}

/// Longest index text (`sys`, `val`, `exact`) stored as written, in bytes.
/// A PostgreSQL B-tree entry must fit a third of a page (about 2.7 kB): a
/// longer value would fail its insert and with it every event of the same
/// group commit. Longer values are stored as their first bytes plus the
/// SHA-256 of the whole, and searches bound their values the same way, so
/// equal values still match; a prefix or `:contains` search longer than
/// this only matches equal values.
pub const MAX_INDEX_TEXT: usize = 512;

/// `v` as the index stores it (see [`MAX_INDEX_TEXT`]).
pub fn bound_index_text(v: &str) -> std::borrow::Cow<'_, str> {
    if v.len() <= MAX_INDEX_TEXT {
        return std::borrow::Cow::Borrowed(v);
    }
    // 64 hex digits and a separator follow the kept prefix.
    let mut keep = MAX_INDEX_TEXT - 65;
    while !v.is_char_boundary(keep) {
        keep -= 1;
    }
    let digest = crate::hash::body_sha256(v.as_bytes());
    std::borrow::Cow::Owned(format!("{}#{}", &v[..keep], hex::encode(digest)))
}

impl IndexRow {
    /// The row with every text bounded for the index (see [`MAX_INDEX_TEXT`]).
    pub(crate) fn bounded(mut self) -> Self {
        for t in [&mut self.sys, &mut self.val, &mut self.exact]
            .into_iter()
            .flatten()
        {
            if t.len() > MAX_INDEX_TEXT {
                *t = bound_index_text(t).into_owned();
            }
        }
        self
    }
}

/// One stored row, exactly as the database holds it (hashes unchecked).
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: i64,
    pub id: String,
    pub body: String,
    pub body_sha256: Vec<u8>,
    pub chain_hash: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    pub last_updated: String,
}

/// What chains a batch: called inside the write transaction with the head
/// read there and, per request, whether it needs a new entry (`false` when
/// its idempotency key already names one). Returns the entries to insert,
/// one per `true`, in order.
pub type ChainFn = Box<dyn FnOnce(ChainHead, &[bool]) -> Vec<NewEntry> + Send>;

/// What happened to one request of a batch.
#[derive(Debug, Clone)]
pub enum Appended {
    /// A new entry was inserted.
    Inserted(NewEntry),
    /// The idempotency key was already stored: this is the entry it names.
    Existing(StoredEntry),
    /// The same key appeared earlier in this batch, at this index.
    SameAs(usize),
}

/// One index row as derived from a body, its text borrowed (from the body
/// or the deriver), so checking rows allocates nothing per row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowRef<'a> {
    pub param: &'a str,
    pub sys: Option<&'a str>,
    pub val: Option<&'a str>,
    pub exact: Option<&'a str>,
    pub low: Option<i64>,
    pub high: Option<i64>,
}

impl RowRef<'_> {
    /// The row as stored (unbounded: see [`IndexRow::bounded`]).
    pub fn to_row(&self) -> IndexRow {
        IndexRow {
            param: self.param.to_string(),
            sys: self.sys.map(str::to_string),
            val: self.val.map(str::to_string),
            exact: self.exact.map(str::to_string),
            low: self.low,
            high: self.high,
        }
    }
}

/// Derives the search-index rows of a parsed stored body (all but
/// `_lastUpdated`, which the ledger adds from the commit time), handing
/// each to the sink in order. Supplied by the layer that knows the resource
/// type, so the store stays ignorant of FHIR.
pub type IndexFn = for<'a> fn(vellum_json::tape::Node<'a>, &mut dyn FnMut(RowRef<'_>));

/// The rows `indexer` derives from `body`, owned and unbounded; none when
/// the body is not JSON.
pub fn index_rows(indexer: IndexFn, body: &str) -> Vec<IndexRow> {
    let mut rows = Vec::new();
    if let Ok(tape) = vellum_json::tape::Tape::parse(body.as_bytes()) {
        indexer(tape.root(), &mut |r| rows.push(r.to_row()));
    }
    rows
}

/// The idempotency key an entry must be stored under, as far as its body
/// tells: a key whose stem (the part before `separator`; all of it when
/// there is none) has this SHA-256. The rest, when present, is what the
/// body does not record (such as the digest of the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedKey {
    pub stem_sha256: Hash,
    pub separator: char,
}

impl ExpectedKey {
    pub fn matches(&self, key: &str) -> bool {
        let stem = key.split(self.separator).next().unwrap_or(key);
        crate::hash::body_sha256(stem.as_bytes()) == self.stem_sha256
    }
}

/// Derives [`ExpectedKey`] from one of a body's (unbounded) index rows:
/// `Some` for the row that names the key. The first such row of a body
/// decides; a body with none names no key.
pub type KeyFn = fn(&RowRef<'_>) -> Option<ExpectedKey>;

/// The `_lastUpdated` row of an entry stamped at `t` (µs, half-open range).
pub fn last_updated_row(t: time::OffsetDateTime) -> IndexRow {
    let us = (t.unix_timestamp_nanos() / 1000) as i64;
    IndexRow {
        param: "_lastUpdated".to_string(),
        low: Some(us),
        high: Some(us + 1),
        ..Default::default()
    }
}

/// Every index row an entry must have: its body's, bounded, and its
/// `_lastUpdated` row (what the writer stores, and what verify expects).
pub(crate) fn expected_rows(body: &str, last_updated: &str, indexer: IndexFn) -> Vec<IndexRow> {
    let mut index: Vec<IndexRow> = index_rows(indexer, body)
        .into_iter()
        .map(IndexRow::bounded)
        .collect();
    if let Some(t) = crate::parse_stamp(last_updated) {
        index.push(last_updated_row(t));
    }
    index
}

/// A stored entry as a `NewEntry` carrying its index rows (hash fields are
/// not used by the index insert).
pub(crate) fn backfill_entry(e: StoredEntry, indexer: IndexFn) -> NewEntry {
    let index = expected_rows(&e.body, &e.last_updated, indexer);
    NewEntry {
        seq: e.seq,
        id: e.id,
        body: String::new(),
        body_sha256: [0; 32],
        chain_hash: [0; 32],
        leaf_hash: [0; 32],
        last_updated: e.last_updated,
        index,
        summary: None,
    }
}

/// Decides, for a batch's keys, which requests need a new entry.
/// `stored(key)` gives the entry a key already names.
pub(crate) fn plan_batch(
    keys: &[Option<String>],
    mut stored: std::collections::HashMap<String, StoredEntry>,
) -> (Vec<bool>, Vec<Option<Appended>>) {
    let mut fresh = Vec::with_capacity(keys.len());
    let mut plan = Vec::with_capacity(keys.len());
    let mut first_in_batch: std::collections::HashMap<&str, usize> = Default::default();
    for (i, key) in keys.iter().enumerate() {
        match key {
            Some(k) if stored.contains_key(k) => {
                fresh.push(false);
                plan.push(stored.remove(k).map(Appended::Existing));
                // Later duplicates in the batch point at this one.
                first_in_batch.insert(k, i);
            }
            Some(k) => match first_in_batch.get(k.as_str()) {
                Some(&j) => {
                    fresh.push(false);
                    plan.push(Some(Appended::SameAs(j)));
                }
                None => {
                    first_in_batch.insert(k, i);
                    fresh.push(true);
                    plan.push(None);
                }
            },
            None => {
                fresh.push(true);
                plan.push(None);
            }
        }
    }
    (fresh, plan)
}

/// Fills the `None` slots of `plan` with the inserted entries, in order.
pub(crate) fn merge_plan(plan: Vec<Option<Appended>>, inserted: Vec<NewEntry>) -> Vec<Appended> {
    let mut inserted = inserted.into_iter();
    plan.into_iter()
        .map(|p| {
            p.unwrap_or_else(|| {
                inserted
                    .next()
                    .map(Appended::Inserted)
                    .unwrap_or(Appended::SameAs(usize::MAX))
            })
        })
        .collect()
}

pub trait Store: Send + Sync + 'static {
    /// Applies the backend's migrations.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// In one transaction: lock the chain, read its head, look up the
    /// requests' idempotency `keys`, call `chain`, insert what it returns
    /// (and the new keys), commit. Returns one `Appended` per key, in order,
    /// once committed.
    fn append_batch(
        &self,
        keys: Vec<Option<String>>,
        chain: ChainFn,
    ) -> impl Future<Output = Result<Vec<Appended>, StoreError>> + Send;

    fn head(&self) -> impl Future<Output = Result<ChainHead, StoreError>> + Send;

    fn get_by_id(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredEntry>, StoreError>> + Send;

    /// Up to `limit` entries with seq > `after_seq`, in seq order.
    fn entries_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredEntry>, StoreError>> + Send;

    /// True when the database answers and the schema is migrated.
    fn ready(&self) -> impl Future<Output = bool> + Send;

    /// One page of a search, in the query's order.
    fn search(
        &self,
        query: &SearchQuery,
    ) -> impl Future<Output = Result<Vec<SearchHit>, StoreError>> + Send;

    /// How many entries match a search (cursor and limit ignored).
    fn count(&self, query: &SearchQuery) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// The backend chosen by configuration.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    pub async fn connect(url: &DatabaseUrl, pg_role: Option<&str>) -> Result<Self, StoreError> {
        Ok(match url {
            DatabaseUrl::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open(path).await?),
            DatabaseUrl::Postgres(url) => {
                AnyStore::Postgres(PostgresStore::connect(url, pg_role).await?)
            }
        })
    }

    /// The search-index rows of the entries with seq in `(after, upto]`.
    pub async fn index_rows_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, IndexRow)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.index_rows_between(after, upto).await,
            AnyStore::Postgres(s) => s.index_rows_between(after, upto).await,
        }
    }

    /// `(seq, key)` of every idempotency key of the entries in
    /// `after < seq <= upto`, in seq order.
    pub async fn keys_between(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.keys_between(after, upto).await,
            AnyStore::Postgres(s) => s.keys_between(after, upto).await,
        }
    }

    /// How summary rows are derived from a body, when set.
    pub fn summarizer(&self) -> Option<summary::SummaryFn> {
        match self {
            AnyStore::Sqlite(s) => s.summarizer,
            AnyStore::Postgres(s) => s.summarizer,
        }
    }

    /// Sets how summary rows are derived from a body: used by `migrate`'s
    /// back-fill and by verify; without it both skip summary rows.
    pub fn with_summarizer(self, summarizer: summary::SummaryFn) -> Self {
        match self {
            AnyStore::Sqlite(mut s) => {
                s.summarizer = Some(summarizer);
                AnyStore::Sqlite(s)
            }
            AnyStore::Postgres(mut s) => {
                s.summarizer = Some(summarizer);
                AnyStore::Postgres(s)
            }
        }
    }

    /// The summary rows `q` selects, by seq.
    pub async fn summaries(
        &self,
        q: &summary::SummaryQuery,
    ) -> Result<Vec<(i64, summary::Summary)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => {
                let (path, q) = (s.path.clone(), q.clone());
                tokio::task::spawn_blocking(move || summary::read_sqlite(&path, &q))
                    .await
                    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
            }
            AnyStore::Postgres(s) => summary::read_pg(s.pool(), q).await,
        }
    }

    /// The patient column of the summary rows `seqs` name.
    pub async fn summary_patients(
        &self,
        seqs: &[i64],
    ) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => {
                let (path, seqs) = (s.path.clone(), seqs.to_vec());
                tokio::task::spawn_blocking(move || summary::patients_sqlite(&path, &seqs))
                    .await
                    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
            }
            AnyStore::Postgres(s) => summary::patients_pg(s.pool(), seqs).await,
        }
    }

    /// Derives the summary rows of entries stored before the summary tables
    /// existed (an upgrade), once: a marker row records the head it
    /// reached. Rows already stored are kept, so an interrupted back-fill
    /// is simply run again at the next start.
    async fn backfill_summaries(&self) -> Result<(), StoreError> {
        let Some(summarizer) = self.summarizer() else {
            return Ok(());
        };
        if self.summary_backfilled().await? {
            return Ok(());
        }
        let head = self.head().await?.seq;
        if head > 0 {
            tracing::info!(entries = head, "deriving summary rows of existing entries");
        }
        let mut after = 0;
        while after < head {
            let page = self
                .entries_after(after, (BACKFILL_CHUNK * 10).min(head - after))
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let rows = summary::derive(&page, summarizer);
            self.insert_summary_backfill(&rows, None).await?;
        }
        let now = crate::stamp(time::OffsetDateTime::now_utc());
        self.insert_summary_backfill(&[], Some((head, &now))).await
    }

    async fn summary_backfilled(&self) -> Result<bool, StoreError> {
        let n: i64 = match self {
            AnyStore::Sqlite(s) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM summary_backfill")
                    .fetch_one(s.pool())
                    .await?
            }
            AnyStore::Postgres(s) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM summary_backfill")
                    .fetch_one(s.pool())
                    .await?
            }
        };
        Ok(n > 0)
    }

    async fn insert_summary_backfill(
        &self,
        rows: &[(i64, summary::Summary)],
        upto: Option<(i64, &str)>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => {
                let path = s.path.clone();
                let rows = rows.to_vec();
                let upto = upto.map(|(n, t)| (n, t.to_string()));
                tokio::task::spawn_blocking(move || {
                    summary::backfill_sqlite(
                        &path,
                        &rows,
                        upto.as_ref().map(|(n, t)| (*n, t.as_str())),
                    )
                })
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
            }
            AnyStore::Postgres(s) => summary::backfill_pg(s.pool(), rows, upto).await,
        }
    }

    /// How index rows are derived from a body, when set.
    pub fn indexer(&self) -> Option<IndexFn> {
        match self {
            AnyStore::Sqlite(s) => s.indexer,
            AnyStore::Postgres(s) => s.indexer,
        }
    }

    /// How the idempotency key an entry must carry is derived from its
    /// body's index rows, when set.
    pub fn keyer(&self) -> Option<KeyFn> {
        match self {
            AnyStore::Sqlite(s) => s.keyer,
            AnyStore::Postgres(s) => s.keyer,
        }
    }

    /// Sets how `verify` derives, from a body's index rows, the idempotency
    /// key its entry must carry.
    pub fn with_keyer(self, keyer: KeyFn) -> Self {
        match self {
            AnyStore::Sqlite(mut s) => {
                s.keyer = Some(keyer);
                AnyStore::Sqlite(s)
            }
            AnyStore::Postgres(mut s) => {
                s.keyer = Some(keyer);
                AnyStore::Postgres(s)
            }
        }
    }

    /// Sets how the upgrade back-fill (run by `migrate`) derives the index
    /// rows of entries stored before the search index existed; without it
    /// the back-fill is skipped.
    pub fn with_indexer(self, indexer: IndexFn) -> Self {
        match self {
            AnyStore::Sqlite(mut s) => {
                s.indexer = Some(indexer);
                AnyStore::Sqlite(s)
            }
            AnyStore::Postgres(mut s) => {
                s.indexer = Some(indexer);
                AnyStore::Postgres(s)
            }
        }
    }

    /// PostgreSQL: creates and grants the writer role after the
    /// migrations (see [`postgres::PostgresStore::grant_writer_role`]).
    /// SQLite has no roles: nothing to do.
    pub async fn grant_writer_role(&self, role: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(()),
            AnyStore::Postgres(s) => s.grant_writer_role(role).await,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate().await)?;
        self.backfill_tree().await?;
        self.backfill_summaries().await
    }
    async fn append_batch(
        &self,
        keys: Vec<Option<String>>,
        chain: ChainFn,
    ) -> Result<Vec<Appended>, StoreError> {
        dispatch!(self, s => s.append_batch(keys, chain).await)
    }
    async fn head(&self) -> Result<ChainHead, StoreError> {
        dispatch!(self, s => s.head().await)
    }
    async fn get_by_id(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        dispatch!(self, s => s.get_by_id(id).await)
    }
    async fn entries_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        dispatch!(self, s => s.entries_after(after_seq, limit).await)
    }
    async fn ready(&self) -> bool {
        dispatch!(self, s => s.ready().await)
    }
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        dispatch!(self, s => s.search(query).await)
    }
    async fn count(&self, query: &SearchQuery) -> Result<i64, StoreError> {
        dispatch!(self, s => s.count(query).await)
    }
}

/// The Merkle frontier of the chain head the appender last committed, so a
/// batch need not read it back (read again whenever the head differs, e.g.
/// after another process appended).
#[derive(Debug, Clone)]
pub(crate) struct TreeCache {
    pub head: ChainHead,
    pub frontier: Vec<Hash>,
}

/// Off only in the benchmark that measures what keeping the tree costs
/// (a store written with it off has no tree and cannot serve proofs).
static TREE_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[doc(hidden)]
pub fn benchmark_without_tree(off: bool) {
    TREE_OFF.store(off, std::sync::atomic::Ordering::Relaxed);
}

/// The nodes a batch adds to the tree and the frontier after it.
pub(crate) fn extend_tree(
    head: ChainHead,
    frontier: &[Hash],
    entries: &[NewEntry],
) -> (Vec<(crate::merkle::NodeId, Hash)>, TreeCache) {
    if TREE_OFF.load(std::sync::atomic::Ordering::Relaxed) {
        let head = entries.last().map_or(head, |e| ChainHead {
            seq: e.seq,
            chain_hash: e.chain_hash,
        });
        return (
            Vec::new(),
            TreeCache {
                head,
                frontier: Vec::new(),
            },
        );
    }
    let leaves: Vec<Hash> = entries.iter().map(|e| e.leaf_hash).collect();
    let (nodes, frontier) = crate::merkle::extend(head.seq as u64, frontier, &leaves);
    let head = entries.last().map_or(head, |e| ChainHead {
        seq: e.seq,
        chain_hash: e.chain_hash,
    });
    (nodes, TreeCache { head, frontier })
}

/// A node's hash from the stored hashes of its span (`merkle::StoredSpan`),
/// or `Corrupt` when any is missing or malformed.
pub(crate) fn node_from_span(
    id: crate::merkle::NodeId,
    rows: &[Vec<u8>],
) -> Result<Hash, StoreError> {
    let hashes: Option<Vec<Hash>> = rows.iter().map(|r| crate::hash::from_slice(r)).collect();
    hashes
        .filter(|h| h.len() as u64 == id.stored_span().count)
        .and_then(|h| crate::merkle::fold_complete(&h))
        .ok_or(StoreError::Corrupt {
            seq: (id.index << id.level) as i64 + 1,
            what: "a Merkle tree node is missing or not 32 bytes",
        })
}

/// One stored signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tree_size: i64,
    pub note: String,
}

/// One stored witness cosignature of one of this log's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCosignature {
    pub tree_size: i64,
    /// `<witness name>+<hex key ID>`.
    pub witness: String,
    /// The signature line, `— <name> <base64>`, without its newline.
    pub line: String,
}

/// A checkpoint of another log to record as cosigned by this witness.
#[derive(Debug, Clone)]
pub struct Witnessed<'a> {
    pub origin: &'a str,
    /// The size the request said the witness last cosigned.
    pub old: i64,
    pub size: i64,
    pub root: Hash,
    pub note: &'a str,
}

/// One stored RFC 3161 time-stamp token of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTimeSeal {
    pub tree_size: i64,
    /// The TSA's URL, as configured when the token was obtained.
    pub tsa: String,
    /// The token (DER CMS SignedData), exactly as the TSA returned it.
    pub token: Vec<u8>,
    /// The TSA's genTime, as written in the token.
    pub gen_time: String,
}

impl AnyStore {
    /// Builds the Merkle nodes of entries stored before the tree existed (an
    /// upgrade): when the head's frontier is incomplete, every entry's leaf
    /// is folded in again and the missing nodes inserted (existing ones are
    /// kept; nodes are deterministic, so a concurrent writer agrees).
    async fn backfill_tree(&self) -> Result<(), StoreError> {
        let head = self.head().await?;
        let mut complete = true;
        for id in crate::merkle::frontier_ids(head.seq as u64) {
            if self.node(id).await.is_err() {
                complete = false;
                break;
            }
        }
        if complete {
            return Ok(());
        }
        tracing::info!(
            entries = head.seq,
            "building the Merkle tree of existing entries"
        );
        let (mut size, mut frontier, mut after) = (0u64, Vec::new(), 0i64);
        loop {
            let rows = self.entries_after(after, BACKFILL_CHUNK * 10).await?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            let leaves: Vec<Hash> = rows
                .iter()
                .map(|e| crate::hash::leaf_hash(e.body.as_bytes()))
                .collect();
            let (nodes, f) = crate::merkle::extend(size, &frontier, &leaves);
            size += leaves.len() as u64;
            frontier = f;
            dispatch!(self, s => s.insert_nodes(&nodes).await)?;
        }
        Ok(())
    }

    /// The hash of one complete subtree (level 0: the entry's leaf hash).
    pub(crate) async fn node(&self, id: crate::merkle::NodeId) -> Result<Hash, StoreError> {
        let rows = dispatch!(self, s => s.read_span(id.stored_span()).await)?;
        node_from_span(id, &rows)
    }

    /// Every stored node of the stored levels (`merkle::is_stored`) inside
    /// a tree of `size` leaves, handed to `f` page by page, level by level
    /// in index order (`verify`: one row per 16 entries, never all held).
    pub(crate) async fn each_stored_node(
        &self,
        size: u64,
        mut f: impl FnMut(crate::merkle::NodeId, &[u8]),
    ) -> Result<(), StoreError> {
        const PAGE: i64 = 8192;
        let mut level = crate::merkle::STORED_EVERY;
        while level < 64 && size >> level > 0 {
            let end = (size >> level) as i64;
            let mut from = 0i64;
            loop {
                let rows = dispatch!(self, s => s.read_nodes(level, from, end, PAGE).await)?;
                for (idx, hash) in &rows {
                    let id = crate::merkle::NodeId {
                        level,
                        index: *idx as u64,
                    };
                    f(id, hash);
                }
                match rows.last() {
                    Some((idx, _)) if rows.len() as i64 == PAGE => from = idx + 1,
                    _ => break,
                }
            }
            level += crate::merkle::STORED_EVERY;
        }
        Ok(())
    }

    pub(crate) async fn insert_checkpoint(
        &self,
        tree_size: i64,
        note: &str,
        created_at: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.write_checkpoint(tree_size, note, created_at).await)
    }

    /// Up to `limit` checkpoints larger than `after`, by size.
    pub(crate) async fn checkpoints_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        dispatch!(self, s => s.read_checkpoints_after(after, limit).await)
    }

    pub(crate) async fn witnessed_latest(
        &self,
        origin: &str,
    ) -> Result<Option<(i64, Hash)>, StoreError> {
        let got = dispatch!(self, s => s.read_witnessed_latest(origin).await)?;
        got.map(|(size, root)| {
            crate::hash::from_slice(&root)
                .map(|r| (size, r))
                .ok_or(StoreError::Corrupt {
                    seq: 0,
                    what: "a witnessed checkpoint's root is not 32 bytes",
                })
        })
        .transpose()
    }

    pub(crate) async fn insert_witnessed(
        &self,
        w: &Witnessed<'_>,
        created_at: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.write_witnessed(w, created_at).await)
    }

    pub(crate) async fn cosignatures(
        &self,
        size: Option<i64>,
    ) -> Result<Vec<StoredCosignature>, StoreError> {
        dispatch!(self, s => s.read_cosignatures(size).await)
    }

    pub(crate) async fn latest_cosigned(&self, witness: &str) -> Result<i64, StoreError> {
        dispatch!(self, s => s.read_latest_cosigned(witness).await)
    }

    pub(crate) async fn insert_cosignature(
        &self,
        tree_size: i64,
        witness: &str,
        line: &str,
        created_at: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.write_cosignature(tree_size, witness, line, created_at).await)
    }

    pub(crate) async fn insert_time_seal(
        &self,
        seal: &StoredTimeSeal,
        created_at: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.write_time_seal(seal, created_at).await)
    }

    /// The time seals of checkpoint `size`, or of every checkpoint.
    pub async fn time_seals(&self, size: Option<i64>) -> Result<Vec<StoredTimeSeal>, StoreError> {
        dispatch!(self, s => s.read_time_seals(size).await)
    }

    /// Every stored checkpoint, by size.
    pub(crate) async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        dispatch!(self, s => s.read_checkpoints(None, false).await)
    }

    /// The newest checkpoint, or the one of `size`.
    pub(crate) async fn checkpoint(
        &self,
        size: Option<i64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(dispatch!(self, s => s.read_checkpoints(size, true).await)?.pop())
    }
}

/// Reads a 32-byte hash column of the head row.
pub(crate) fn head_from_row(
    seq: Option<i64>,
    chain: Option<Vec<u8>>,
) -> Result<ChainHead, StoreError> {
    match (seq, chain) {
        (Some(seq), Some(c)) => Ok(ChainHead {
            seq,
            chain_hash: crate::hash::from_slice(&c).ok_or(StoreError::Corrupt {
                seq,
                what: "chain_hash is not 32 bytes",
            })?,
        }),
        _ => Ok(ChainHead::EMPTY),
    }
}
