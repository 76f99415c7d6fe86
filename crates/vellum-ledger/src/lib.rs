//! The ledger: the only writer of the store and the only way to read it.
//! Every way in ends in `Ledger::append(Draft) -> Committed`; the draft
//! carries everything stored beside the entry (search-index rows, the
//! idempotency key), computed above this crate, so the ledger knows nothing
//! of FHIR, DICOM or HL7.

pub mod checkpoint;
pub mod cosignature;
pub mod hash;
pub mod merkle;
pub mod note;
pub mod observe;
pub mod rfc3161;
mod settings;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod verify;
mod writer;
pub use writer::Clock;

pub use settings::{
    DatabaseUrl, DatabaseUrlError, WriterSettings, DEFAULT_BATCH_MAX_EVENTS,
    DEFAULT_BATCH_MAX_WAIT_US, DEFAULT_WRITER_QUEUE,
};

use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::store::followups::{FollowupKind, Pending};
use crate::store::search::{SearchHit, SearchQuery};
use crate::store::{AnyStore, ChainHead, IndexRow, Store, StoreError, StoredEntry};

pub use observe::WriterObserver;
pub use store::postgres::{is_plain_identifier, DEFAULT_WRITER_ROLE};
pub use writer::WriterHandle;

/// Width of `meta.lastUpdated` as vellum writes it: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const STAMP_LEN: usize = 27;
/// What a draft carries in `meta.lastUpdated` until the writer stamps it.
pub const STAMP_PLACEHOLDER: &str = "0000-00-00T00:00:00.000000Z";

/// A resource ready to be chained: canonical JSON whose `meta.lastUpdated`
/// is a placeholder at `stamp_at`, patched with the commit time by the writer.
#[derive(Debug, Clone)]
pub struct Draft {
    id: String,
    body: Vec<u8>,
    stamp_at: usize,
    key: Option<String>,
    index: Vec<IndexRow>,
    summary: Option<store::summary::Summary>,
}

#[derive(Debug, thiserror::Error)]
#[error("draft has no {STAMP_LEN}-byte lastUpdated placeholder at the marked offset")]
pub struct DraftError;

impl Draft {
    /// `body` must be canonical JSON with [`STAMP_PLACEHOLDER`] at
    /// `stamp_at`; `index` are its search-index rows, derived above the
    /// ledger (the writer adds `_lastUpdated`).
    pub fn with_index(
        id: String,
        body: Vec<u8>,
        stamp_at: usize,
        index: Vec<IndexRow>,
    ) -> Result<Self, DraftError> {
        match body.get(stamp_at..stamp_at + STAMP_LEN) {
            Some(s) if s == STAMP_PLACEHOLDER.as_bytes() => Ok(Draft {
                id,
                body,
                stamp_at,
                key: None,
                index,
                summary: None,
            }),
            _ => Err(DraftError),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// An idempotency key (e.g. `mllp:<sender>|<MSH-10>`): if an entry was
    /// already stored under it, `append` returns that entry instead of
    /// storing this one.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The report summary row derived from the body, stored beside the
    /// entry in the same transaction.
    pub fn with_summary(mut self, summary: Option<store::summary::Summary>) -> Self {
        self.summary = summary;
        self
    }

    /// The canonical body, still carrying the placeholder.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// What every append returns once its transaction has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub chain_hash: hash::Hash,
    pub id: String,
}

impl Receipt {
    pub fn chain_hash_hex(&self) -> String {
        hex::encode(self.chain_hash)
    }
}

/// A committed entry: its receipt and the exact stored body.
#[derive(Debug, Clone)]
pub struct Committed {
    pub receipt: Receipt,
    pub body: String,
    pub last_updated: String,
    /// False when the draft's idempotency key named an existing entry.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the ledger writer is not running")]
    WriterGone,
    #[error("the ledger is overloaded; retry later")]
    Overloaded,
    #[error("the batch could not be committed: {0}")]
    Store(String),
}

/// Formats a commit time as `meta.lastUpdated` (UTC, microseconds).
pub fn stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    // Rfc3339 would drop trailing zero digits; the stamp must be fixed-width.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Now as RFC 3339 UTC (seconds), for `created_at` columns.
fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Parses a stored `meta.lastUpdated`.
pub fn parse_stamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// An inclusion proof (RFC 9162 §2.1.3); `leaf_index` is seq - 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: hash::Hash,
    pub proof: Vec<hash::Hash>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointFailed {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing failed: {0}")]
    Sign(#[from] note::NoteError),
    #[error("the clock could not be formatted")]
    Time,
    #[error("no entry at that tree size")]
    Size,
}

#[derive(Clone)]
pub struct Ledger {
    store: AnyStore,
    tx: mpsc::Sender<writer::Request>,
    _writer: Arc<WriterHandle>,
}

impl Ledger {
    /// Starts the single writer task over `store`.
    pub fn start(store: AnyStore, settings: WriterSettings) -> Self {
        Self::start_observed(store, settings, Arc::new(observe::NoObserver))
    }

    /// [`Ledger::start`], telling `observer` about every batch.
    pub fn start_observed(
        store: AnyStore,
        settings: WriterSettings,
        observer: Arc<dyn WriterObserver>,
    ) -> Self {
        let (tx, handle) = writer::spawn(
            store.clone(),
            settings,
            observer,
            Arc::new(OffsetDateTime::now_utc),
        );
        Ledger {
            store,
            tx,
            _writer: Arc::new(handle),
        }
    }

    /// [`Ledger::start`] with commit stamps taken from `clock` instead of
    /// the system clock: for tests and benchmarks that need a stored
    /// history spread over days.
    pub fn start_with_clock(store: AnyStore, settings: WriterSettings, clock: Clock) -> Self {
        let (tx, handle) = writer::spawn(
            store.clone(),
            settings,
            Arc::new(observe::NoObserver),
            clock,
        );
        Ledger {
            store,
            tx,
            _writer: Arc::new(handle),
        }
    }

    /// Chains and commits `draft`; returns only after the commit.
    pub async fn append(&self, draft: Draft) -> Result<Committed, AppendError> {
        self.append_all(vec![draft])
            .await?
            .pop()
            .ok_or_else(|| AppendError::Store("empty commit".into()))
    }

    /// Chains and commits `drafts` in one transaction: all of them or none
    /// (a FHIR transaction Bundle). Returns only after the commit, in order.
    pub async fn append_all(&self, drafts: Vec<Draft>) -> Result<Vec<Committed>, AppendError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(writer::Request { drafts, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AppendError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => AppendError::WriterGone,
            })?;
        rx.await.map_err(|_| AppendError::WriterGone)?
    }

    /// The entry stored under `id`.
    pub async fn read(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.store.get_by_id(id).await
    }

    /// The entry an idempotency key names.
    pub async fn read_by_key(&self, key: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.store.entry_by_key(key).await
    }

    /// `(key, entry)` for every idempotency key starting with `prefix`, in
    /// seq order.
    pub async fn read_by_key_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, StoredEntry)>, StoreError> {
        self.store.entries_by_key_prefix(prefix).await
    }

    /// Up to `limit` entries with seq > `after_seq`, in seq order.
    pub async fn entries_after(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        self.store.entries_after(after_seq, limit).await
    }

    /// The highest seq the outbound feed `destination` acknowledged (0:
    /// none yet).
    pub async fn export_position(&self, destination: &str) -> Result<i64, StoreError> {
        self.store.export_position(destination).await
    }

    /// Records that `destination` acknowledged every entry up to `seq`
    /// (an insert-only progress row, outside the chain; a repeat is kept
    /// once).
    pub async fn record_export_position(
        &self,
        destination: &str,
        seq: i64,
    ) -> Result<(), StoreError> {
        let now = stamp(OffsetDateTime::now_utc());
        self.store
            .insert_export_position(destination, seq, &now)
            .await
    }

    /// The report summary rows `q` selects, in seq order (filters applied
    /// by the database).
    pub async fn summaries(
        &self,
        q: &store::summary::SummaryQuery,
    ) -> Result<Vec<(i64, store::summary::Summary)>, StoreError> {
        self.store.summaries(q).await
    }

    /// The patient column of the summary rows `seqs` name (rows without a
    /// patient are left out).
    pub async fn summary_patients(
        &self,
        seqs: &[i64],
    ) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        self.store.summary_patients(seqs).await
    }

    /// The last committed entry's seq and chain hash.
    pub async fn head(&self) -> Result<ChainHead, StoreError> {
        self.store.head().await
    }

    /// One page of a search, in the query's order.
    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        self.store.search(query).await
    }

    /// How many entries match a search.
    pub async fn count(&self, query: &SearchQuery) -> Result<i64, StoreError> {
        self.store.count(query).await
    }

    /// Outstanding follow-ups of `kind`, oldest first.
    pub async fn pending_followups(
        &self,
        kind: &FollowupKind,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<Pending>, StoreError> {
        self.store.pending_followups(kind, from_seq, limit).await
    }

    /// How many follow-ups of `kind` are outstanding.
    pub async fn pending_count(&self, kind: &FollowupKind) -> Result<i64, StoreError> {
        self.store.pending_count(kind).await
    }

    /// How many follow-ups of `kind` are stored.
    pub async fn followup_count(&self, kind: &FollowupKind) -> Result<i64, StoreError> {
        self.store.followup_count(kind).await
    }

    /// The Merkle root of the first `size` entries (O(log n) node reads).
    pub async fn tree_root(&self, size: u64) -> Result<hash::Hash, StoreError> {
        self.range_hash(0, size).await
    }

    /// The RFC hash of leaves `[lo, hi)` as the RFC recursion splits them.
    async fn range_hash(&self, lo: u64, hi: u64) -> Result<hash::Hash, StoreError> {
        let mut hashes = Vec::new();
        for id in merkle::range_nodes(lo, hi) {
            hashes.push(self.store.node(id).await?);
        }
        Ok(merkle::fold(&hashes).unwrap_or_else(merkle::empty_root))
    }

    /// The inclusion proof of entry `seq` in the tree of `size` entries
    /// (RFC 9162 §2.1.3), or `None` when the sizes are out of range.
    pub async fn inclusion_proof(
        &self,
        seq: u64,
        size: u64,
    ) -> Result<Option<InclusionProof>, StoreError> {
        let head = self.store.head().await?.seq as u64;
        if seq == 0 || seq > size || size > head {
            return Ok(None);
        }
        let leaf = self.range_hash(seq - 1, seq).await?;
        let mut proof = Vec::new();
        for (lo, hi) in merkle::inclusion_ranges(seq - 1, size) {
            proof.push(self.range_hash(lo, hi).await?);
        }
        Ok(Some(InclusionProof {
            leaf_index: seq - 1,
            tree_size: size,
            leaf_hash: leaf,
            proof,
        }))
    }

    /// The consistency proof from `first` to `second` entries (RFC 9162
    /// §2.1.4), or `None` when the sizes are out of range.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Option<Vec<hash::Hash>>, StoreError> {
        let head = self.store.head().await?.seq as u64;
        if first > second || second > head {
            return Ok(None);
        }
        let mut proof = Vec::new();
        for (lo, hi) in merkle::consistency_ranges(first, second) {
            proof.push(self.range_hash(lo, hi).await?);
        }
        Ok(Some(proof))
    }

    /// One complete subtree's hash (level 0: an entry's leaf hash).
    pub async fn tree_node(&self, id: merkle::NodeId) -> Result<hash::Hash, StoreError> {
        self.store.node(id).await
    }

    /// Signs and stores a checkpoint of the current head (one per size: if
    /// the head has one already, that one is returned).
    pub async fn checkpoint(&self, signer: &note::NoteSigner) -> Result<String, CheckpointFailed> {
        let head = self.store.head().await?;
        self.checkpoint_of(signer, head).await
    }

    /// [`Ledger::checkpoint`] of the first `size` entries (an export that
    /// ends before the head).
    pub async fn checkpoint_at(
        &self,
        signer: &note::NoteSigner,
        size: u64,
    ) -> Result<String, CheckpointFailed> {
        let size = i64::try_from(size).map_err(|_| CheckpointFailed::Size)?;
        let head = if size == 0 {
            ChainHead::EMPTY
        } else {
            let e = self
                .store
                .entries_after(size - 1, 1)
                .await?
                .pop()
                .filter(|e| e.seq == size)
                .ok_or(CheckpointFailed::Size)?;
            ChainHead {
                seq: size,
                chain_hash: hash::from_slice(&e.chain_hash).ok_or(StoreError::Corrupt {
                    seq: size,
                    what: "chain_hash is not 32 bytes",
                })?,
            }
        };
        self.checkpoint_of(signer, head).await
    }

    async fn checkpoint_of(
        &self,
        signer: &note::NoteSigner,
        head: ChainHead,
    ) -> Result<String, CheckpointFailed> {
        if let Some(existing) = self.store.checkpoint(Some(head.seq)).await? {
            return Ok(existing.note);
        }
        let cp = checkpoint::Checkpoint {
            origin: signer.name().to_string(),
            size: head.seq as u64,
            root: self.tree_root(head.seq as u64).await?,
            chain: head.chain_hash,
            time: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc())
                .format(&Rfc3339)
                .map_err(|_| CheckpointFailed::Time)?,
        };
        let note = cp.sign(signer)?;
        self.store
            .insert_checkpoint(head.seq, &note, &cp.time)
            .await?;
        // A concurrent request may have stored one of this size first.
        Ok(self
            .store
            .checkpoint(Some(head.seq))
            .await?
            .map_or(note, |c| c.note))
    }

    /// The newest stored checkpoint, or the one of `size`.
    pub async fn stored_checkpoint(
        &self,
        size: Option<i64>,
    ) -> Result<Option<store::StoredCheckpoint>, StoreError> {
        self.store.checkpoint(size).await
    }

    /// Every stored checkpoint, by size.
    pub async fn stored_checkpoints(&self) -> Result<Vec<store::StoredCheckpoint>, StoreError> {
        self.store.checkpoints().await
    }

    /// Up to `limit` stored checkpoints larger than `after`, by size.
    pub async fn checkpoints_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<store::StoredCheckpoint>, StoreError> {
        self.store.checkpoints_after(after, limit).await
    }

    /// The stored checkpoint of `size` (the newest when `None`) with the
    /// witness cosignature lines stored for it appended: a signed note with
    /// extra signature lines.
    pub async fn cosigned_checkpoint(
        &self,
        size: Option<i64>,
    ) -> Result<Option<store::StoredCheckpoint>, StoreError> {
        let Some(mut cp) = self.store.checkpoint(size).await? else {
            return Ok(None);
        };
        for c in self.store.cosignatures(Some(cp.tree_size)).await? {
            cp.note.push_str(&c.line);
            cp.note.push('\n');
        }
        Ok(Some(cp))
    }

    /// Stored witness cosignatures: of checkpoint `size`, or all.
    pub async fn cosignatures(
        &self,
        size: Option<i64>,
    ) -> Result<Vec<store::StoredCosignature>, StoreError> {
        self.store.cosignatures(size).await
    }

    /// The largest checkpoint size `witness` (`<name>+<hex key ID>`) has
    /// cosigned, -1 when none.
    pub async fn latest_cosigned(&self, witness: &str) -> Result<i64, StoreError> {
        self.store.latest_cosigned(witness).await
    }

    /// Stores a witness's verified cosignature line of checkpoint `size`
    /// (insert-only; a second one of the same witness and size is ignored).
    pub async fn store_cosignature(
        &self,
        size: i64,
        witness: &str,
        line: &str,
    ) -> Result<(), StoreError> {
        self.store
            .insert_cosignature(size, witness, line.trim_end_matches('\n'), &now_rfc3339())
            .await
    }

    /// As a witness: the newest checkpoint of `origin` cosigned, its size
    /// and root.
    pub async fn witnessed_latest(
        &self,
        origin: &str,
    ) -> Result<Option<(i64, hash::Hash)>, StoreError> {
        self.store.witnessed_latest(origin).await
    }

    /// As a witness: records a checkpoint of another log, only while the
    /// newest recorded for its origin is still `w.old` (false otherwise).
    pub async fn record_witnessed(&self, w: &store::Witnessed<'_>) -> Result<bool, StoreError> {
        self.store.insert_witnessed(w, &now_rfc3339()).await
    }

    /// Stores an RFC 3161 token of the checkpoint of `seal.tree_size`
    /// (insert-only; a second token from the same TSA is dropped).
    pub async fn store_time_seal(&self, seal: &store::StoredTimeSeal) -> Result<(), StoreError> {
        let now = stamp(OffsetDateTime::now_utc());
        self.store.insert_time_seal(seal, &now).await
    }

    /// The stored time seals of checkpoint `size`, or of every checkpoint.
    pub async fn time_seals(
        &self,
        size: Option<i64>,
    ) -> Result<Vec<store::StoredTimeSeal>, StoreError> {
        self.store.time_seals(size).await
    }

    /// Recomputes every hash and link (see [`verify::verify`]).
    pub async fn verify(&self) -> Result<verify::Verdict, StoreError> {
        verify::verify(&self.store).await
    }

    /// [`verify::verify_all`]: the chain, then every stored checkpoint
    /// (signatures with `key`) and the stored Merkle tree.
    pub async fn verify_all(
        &self,
        key: Option<&note::NoteVerifier>,
    ) -> Result<verify::Verdict, StoreError> {
        verify::verify_all(&self.store, key).await
    }

    /// True when the database answers and the schema is migrated.
    pub async fn ready(&self) -> bool {
        self.store.ready().await
    }

    /// Appends waiting for the writer, and how many may wait.
    pub fn queue_depth(&self) -> (usize, usize) {
        let max = self.tx.max_capacity();
        (max - self.tx.capacity(), max)
    }

    pub fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_fixed_width_utc_microseconds() {
        let t = time::macros::datetime!(2026-03-01 05:06:07.000100 +02:00);
        let s = stamp(t);
        assert_eq!(s, "2026-03-01T03:06:07.000100Z");
        assert_eq!(s.len(), STAMP_LEN);
        assert_eq!(parse_stamp(&s), Some(t));
    }

    #[test]
    fn draft_requires_the_placeholder() {
        let body = format!(r#"{{"meta":{{"lastUpdated":"{STAMP_PLACEHOLDER}"}}}}"#).into_bytes();
        assert!(Draft::with_index("x".into(), body.clone(), 24, vec![]).is_ok());
        assert!(Draft::with_index("x".into(), body, 3, vec![]).is_err());
    }
}
