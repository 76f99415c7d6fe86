//! `vellum verify`: recompute every body hash, leaf hash and chain link, and
//! name the first seq where the stored ledger differs from an honest one —
//! and what happened there (modified, deleted, inserted or reordered entries).
//!
//! The walk keeps the recomputed chain of the entries verified so far (the
//! last few of them) and reads a few rows ahead. At the first row that does
//! not verify, those rows are used as evidence: every rule below is an exact
//! hash equality, so a classification is never a guess, only — where the
//! evidence cannot tell two explanations apart — a detail naming both.
//!
//! Rules, for the row stored at the expected seq `k` (prev = verified chain
//! hash of seq k-1; "links from c at s" = chain_hash(c, s, body_sha256) equals
//! the row's stored chain_hash, with the recomputed or the stored body hash):
//! - seq jumps past `k` → `EntryMissing` at `k` (deleted, gap left).
//! - a hash column is not 32 bytes → `Malformed`.
//! - the row links from prev, its successor does not link from it → the row
//!   was rewritten with its hashes: `BodyModified` (caught when a leftover
//!   `leaf_hash` or `body_sha256` still disagrees with the body).
//! - the row links from prev, `leaf_hash` differs → `LeafHashMismatch`;
//!   `body_sha256` differs → `ChainBroken` (the column was altered).
//! - the body does not match `body_sha256`, which still links → `BodyModified`.
//! - the body of a later row links from prev into this row's chain_hash →
//!   bodies were exchanged: `OrderChanged`.
//! - a later row links from prev at `k` (it is the original entry k): if the
//!   row at `k` (or one before that later row) is the original's successor,
//!   or a later row still links from the row at `k` → `OrderChanged`;
//!   otherwise rows were inserted and the rest renumbered → `EntryInserted`.
//! - the row links from an earlier verified chain hash at an earlier seq `j`
//!   → rows j..k-1 were inserted with consistent hashes: `EntryInserted` at j.
//! - the successor links from this row's stored chain_hash at its own seq
//!   (this chain_hash is the original one): the body was replaced
//!   (`BodyModified` when a leftover hash disagrees with it), else an earlier
//!   row was rewritten with consistent hashes (`ChainBroken` at `k`).
//! - the successor links from the recomputed chain hash → this row's
//!   chain_hash column was altered: `ChainBroken`.
//! - the successor links from this row's chain_hash at its seq + d → d
//!   entries were deleted and the rest renumbered: `EntryMissing` at `k`.
//! - otherwise: the last row, internally consistent but unchained, is
//!   `EntryInserted`; a body disagreeing with its own hashes is
//!   `BodyModified`; anything else `ChainBroken`.
//! - once every hash holds, the `id` and `last_updated` columns must equal the
//!   body's `id` and `meta.lastUpdated` → else `Malformed`.

use std::collections::VecDeque;
use std::future::Future;

use serde::{Deserialize, Serialize};

mod stream;
mod summary;
mod tree_nodes;
pub use stream::Progress;

use super::hash::{self, Hash};
use crate::checkpoint::Checkpoint;
use crate::merkle;
use crate::note::NoteVerifier;
use crate::store::stream::{RowHasher, Wants};
use crate::store::summary::SummaryFn;
use crate::store::{expected_rows, AnyStore, IndexFn, IndexRow, Store, StoreError, StoredEntry};

/// Entries read per page while verifying.
const PAGE: i64 = 2000;
/// Rows read past the one being checked, used to classify a problem.
const LOOKAHEAD: usize = 4;
/// Verified chain hashes kept behind the row being checked.
const HISTORY: usize = 4;
/// Largest renumbering (entries deleted at once) recognised as such.
const MAX_SHIFT: i64 = 1024;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Entries checked.
    pub entries: i64,
    /// Hex chain hash of the last entry (all zeros when empty).
    pub head_chain_hash: String,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
    /// Signed checkpoints checked against the entries.
    pub checkpoints: i64,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// First seq where the stored chain differs from the recomputed one.
    pub seq: i64,
    pub kind: ProblemKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    BodyModified,
    EntryMissing,
    EntryInserted,
    OrderChanged,
    ChainBroken,
    LeafHashMismatch,
    Malformed,
    /// Entries a signed checkpoint covers are gone from the end.
    Truncated,
    /// The entries do not hash to a signed checkpoint's root or chain.
    HistoryRewritten,
    /// A stored checkpoint's signature does not verify.
    CheckpointForged,
    /// The stored Merkle tree nodes disagree with the entries.
    TreeMismatch,
    /// An entry's search-index rows are not the ones its body gives
    /// (missing rows hide it from searches; extra rows make it match
    /// searches it should not).
    IndexMismatch,
    /// An entry's idempotency keys are not the one its body gives (a
    /// missing key lets a retry store the event twice).
    KeyMismatch,
    /// An entry's report summary row is missing, extra or not the one its
    /// body gives.
    SummaryMismatch,
}

/// Walks the whole chain in seq order.
pub async fn verify(store: &impl Store) -> Result<Verdict, StoreError> {
    verify_paged(
        PAGE,
        |after, limit| store.entries_after(after, limit),
        |_| (),
    )
    .await
}

/// Entries per page of the streamed walk ([`verify_all`]).
const STREAM_PAGE: usize = 8192;

/// [`verify`], then every stored checkpoint: its signature (with `key`;
/// without one only its form), and that the entries hash to its root and
/// chain; that the stored Merkle nodes give the recomputed root; and, when
/// the store has an indexer, that every entry's search-index rows are the
/// ones its body gives. One streamed pass over the entries (stream.rs).
pub async fn verify_all(
    store: &AnyStore,
    key: Option<&NoteVerifier>,
) -> Result<Verdict, StoreError> {
    verify_all_with(store, key, None).await
}

/// [`verify_all`], reporting the entries verified so far to `progress`.
pub async fn verify_all_with(
    store: &AnyStore,
    key: Option<&NoteVerifier>,
    progress: Option<stream::Progress>,
) -> Result<Verdict, StoreError> {
    let stored = store.checkpoints().await?;
    let sizes: Vec<u64> = stored.iter().map(|c| c.tree_size.max(0) as u64).collect();
    // SQLite reads the index in table order and compares sums; only when
    // they differ is the store walked again, per entry, to name the seq.
    let in_table_order = matches!(store, AnyStore::Sqlite(_));
    // Summary rows: the walk sums the rows the bodies give (from the parse
    // it makes anyway) while the stored rows up to the head as of now are
    // summed beside it, under the same keyed hash. Only when the sums differ
    // are the entries read again, page by page, to name the first seq.
    let summary_head = store.head().await?.seq;
    let summarizer = store.summarizer();
    let hasher = RowHasher::default();
    let summary_check = async {
        match summarizer {
            Some(_) => summary::stored_sum(store, &hasher, summary_head).await,
            None => Ok((Default::default(), None)),
        }
    };
    let walk_summaries = summarizer.map(|f| (f, summary_head));
    let (walked, stored_summaries) = tokio::join!(
        walk(
            store,
            &sizes,
            in_table_order,
            progress,
            walk_summaries,
            hasher.clone()
        ),
        summary_check
    );
    let mut walked = walked?;
    let (stored_summaries, beyond) = stored_summaries?;
    if matches!(walked.finding, Some((_, stream::Finding::IndexSomewhere))) {
        let again = walk(store, &sizes, false, None, None, hasher.clone()).await?;
        if again.verdict.problem.is_none() && again.finding.is_some() {
            walked.finding = again.finding;
        }
    }
    let stream::Walked {
        mut verdict,
        acc,
        at_size,
        finding,
        summaries,
        nodes,
    } = walked;
    if verdict.problem.is_some() {
        return Ok(verdict);
    }
    for c in &stored {
        let parsed = match key {
            Some(k) => Checkpoint::open(&c.note, k).map_err(|e| e.to_string()),
            None => c
                .note
                .split_once("\n\n")
                .ok_or_else(|| "no signature block".to_string())
                .and_then(|(t, _)| Checkpoint::parse(&format!("{t}\n")).map_err(|e| e.to_string())),
        };
        let cp = match parsed {
            Ok(cp) if cp.size as i64 == c.tree_size => cp,
            Ok(_) => {
                verdict.problem = Some(problem(
                    c.tree_size,
                    ProblemKind::CheckpointForged,
                    format!(
                        "checkpoint stored as size {} names another size",
                        c.tree_size
                    ),
                ));
                return Ok(verdict);
            }
            Err(e) => {
                verdict.problem = Some(problem(
                    c.tree_size,
                    ProblemKind::CheckpointForged,
                    format!("checkpoint of size {}: {e}", c.tree_size),
                ));
                return Ok(verdict);
            }
        };
        match at_size.get(&cp.size).copied() {
            None if cp.size == 0 => {}
            None => {
                verdict.problem = Some(problem(
                    verdict.entries + 1,
                    ProblemKind::Truncated,
                    format!(
                        "a signed checkpoint covers {} entries; {} are stored",
                        cp.size, verdict.entries
                    ),
                ));
                return Ok(verdict);
            }
            Some((root, chain)) if root != cp.root || chain != cp.chain => {
                verdict.problem = Some(problem(
                    cp.size as i64,
                    ProblemKind::HistoryRewritten,
                    format!(
                        "the first {} entries do not hash to the signed checkpoint's {}",
                        cp.size,
                        if root != cp.root {
                            "Merkle root"
                        } else {
                            "chain hash"
                        }
                    ),
                ));
                return Ok(verdict);
            }
            Some(_) => {}
        }
        verdict.checkpoints += 1;
    }
    // Proofs are served from the stored nodes: they must give the same root.
    let n = acc.size();
    let mut hashes = Vec::new();
    for id in merkle::range_nodes(0, n) {
        hashes.push(store.node(id).await.ok());
    }
    let stored_root = hashes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|h| merkle::root_from_frontier(&h));
    if stored_root != Some(acc.root()) {
        verdict.problem = Some(problem(
            n as i64,
            ProblemKind::TreeMismatch,
            "the stored Merkle tree nodes do not give the entries' root".to_string(),
        ));
        return Ok(verdict);
    }
    // Every stored node, not only those the root is folded from: proofs of
    // any entry are served from them.
    let mut stored_nodes = tree_nodes::NodeDigests::default();
    store
        .each_stored_node(n, |id, h| stored_nodes.add(&hasher, id, h))
        .await?;
    if let Some(seq) = nodes.first_difference(&stored_nodes) {
        let last = (seq - 1)
            .saturating_add(tree_nodes::BLOCK_LEAVES as i64)
            .min(n as i64);
        verdict.problem = Some(problem(
            seq,
            ProblemKind::TreeMismatch,
            format!(
                "a stored Merkle tree node whose first entry is in {seq}..={last} is \
                 missing, extra or not the hash of its entries"
            ),
        ));
        return Ok(verdict);
    }
    let derived_problem = match finding {
        Some((seq, f)) => Some(derived_problem(store, seq, f).await?),
        None => None,
    };
    // Summary rows are compared without their values (they may be patient
    // ids).
    let summary_problem = match summarizer {
        Some(f) if summaries != stored_summaries => Some(
            summary::first_problem(store, f, summary_head)
                .await?
                .unwrap_or_else(|| summary::somewhere(summary_head)),
        ),
        _ => beyond,
    };
    verdict.problem = match (derived_problem, summary_problem) {
        (Some(d), Some(s)) => Some(if s.seq < d.seq { s } else { d }),
        (d, s) => d.or(s),
    };
    Ok(verdict)
}

/// One streamed pass over the entries (stream.rs), with the store's
/// derivations.
async fn walk(
    store: &AnyStore,
    sizes: &[u64],
    in_table_order: bool,
    progress: Option<stream::Progress>,
    summaries: Option<(SummaryFn, i64)>,
    hasher: RowHasher,
) -> Result<stream::Walked, StoreError> {
    let derive = stream::Derive {
        indexer: store.indexer(),
        keyer: store.keyer(),
        summarizer: summaries.map(|(f, _)| f),
        summaries_upto: summaries.map_or(0, |(_, upto)| upto),
        hasher,
        in_table_order,
    };
    let wants = Wants {
        index: derive.indexer.map(|_| derive.hasher.clone()),
        index_in_table_order: in_table_order,
        keys: derive.indexer.is_some() && derive.keyer.is_some(),
    };
    let rx = store.stream_entries(STREAM_PAGE, wants);
    let sizes = sizes.to_vec();
    tokio::task::spawn_blocking(move || stream::walk(rx, &sizes, &derive, progress))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
}

/// The first entry whose derived rows differ, described by counts only
/// (index values and keys may be patient identifiers).
async fn derived_problem(
    store: &AnyStore,
    seq: i64,
    f: stream::Finding,
) -> Result<Problem, StoreError> {
    Ok(match f {
        stream::Finding::Index { stored, expected } => {
            // The walk compared digests; name what differs from the rows.
            let rows = store.index_rows_between(seq - 1, seq).await?;
            let entry = store.entries_after(seq - 1, 1).await?;
            let exact = match (store.indexer(), entry.first()) {
                (Some(indexer), Some(e)) if e.seq == seq => Some(index_diff(e, &rows, indexer)),
                _ => None,
            };
            let detail = match exact {
                Some((missing, extra, have, want)) => format!(
                    "search-index rows differ from the body: {missing} missing, {extra} extra \
                     ({have} stored, {want} expected)"
                ),
                None => format!(
                    "search-index rows of seq {seq} name no stored entry ({stored} stored, \
                     {expected} expected)"
                ),
            };
            problem(seq, ProblemKind::IndexMismatch, detail)
        }
        stream::Finding::IndexSomewhere => problem(
            seq.min(1),
            ProblemKind::IndexMismatch,
            "the search-index rows of all entries together differ from those the bodies \
             give, though no single entry's do (rows were changed while verifying?)"
                .to_string(),
        ),
        stream::Finding::Keys { missing, extra } => problem(
            seq,
            ProblemKind::KeyMismatch,
            format!(
                "idempotency keys differ from the body: {missing} missing, {extra} extra \
                 (a retry of a request whose key is missing would be stored twice)"
            ),
        ),
    })
}

type RowKey<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
    Option<i64>,
);

fn row_key(r: &IndexRow) -> RowKey<'_> {
    (
        r.param.as_str(),
        r.sys.as_deref(),
        r.val.as_deref(),
        r.exact.as_deref(),
        r.low,
        r.high,
    )
}

/// The stored index rows against those the body gives, as multisets:
/// (missing, extra, stored, expected).
fn index_diff(
    e: &StoredEntry,
    stored: &[(i64, IndexRow)],
    indexer: IndexFn,
) -> (usize, usize, usize, usize) {
    let expected = expected_rows(&e.body, &e.last_updated, indexer);
    let mut want: Vec<RowKey<'_>> = expected.iter().map(row_key).collect();
    let mut have: Vec<RowKey<'_>> = stored.iter().map(|(_, r)| row_key(r)).collect();
    want.sort_unstable();
    have.sort_unstable();
    let missing = multiset_minus(&want, &have);
    let extra = multiset_minus(&have, &want);
    (missing, extra, have.len(), want.len())
}

/// |a \ b| for sorted multisets.
fn multiset_minus<T: Ord>(a: &[T], b: &[T]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while let Some(x) = a.get(i) {
        match b.get(j) {
            Some(y) if y < x => j += 1,
            Some(y) if y == x => {
                i += 1;
                j += 1;
            }
            _ => {
                n += 1;
                i += 1;
            }
        }
    }
    n
}

/// The walk over pages of `page` rows fetched by `fetch(after_seq, limit)`;
/// `verified` sees each row once it holds, in seq order.
async fn verify_paged<F, Fut, E>(
    page: i64,
    mut fetch: F,
    mut verified: impl FnMut(&StoredEntry),
) -> Result<Verdict, E>
where
    F: FnMut(i64, i64) -> Fut,
    Fut: Future<Output = Result<Vec<StoredEntry>, E>>,
{
    let mut walker = Walker::new();
    let mut window: VecDeque<StoredEntry> = VecDeque::new();
    let mut read_to = 0i64;
    let mut exhausted = false;
    loop {
        // Keep the row being checked plus LOOKAHEAD rows in the window,
        // across page boundaries.
        while !exhausted && window.len() <= LOOKAHEAD {
            let rows = fetch(read_to, page).await?;
            match rows.last() {
                Some(last) => read_to = last.seq,
                None => exhausted = true,
            }
            window.extend(rows);
        }
        let Some(row) = window.pop_front() else {
            break;
        };
        let ahead = window.make_contiguous();
        let ahead = &ahead[..ahead.len().min(LOOKAHEAD)];
        if let Err(problem) = walker.step(&row, ahead) {
            return Ok(walker.verdict(Some(problem)));
        }
        verified(&row);
    }
    Ok(walker.verdict(None))
}

/// Verifies rows already in memory (in seq order), exactly as [`verify`].
pub fn verify_rows(rows: &[StoredEntry]) -> Verdict {
    let mut walker = Walker::new();
    for (i, row) in rows.iter().enumerate() {
        let rest = &rows[i + 1..];
        let ahead = &rest[..rest.len().min(LOOKAHEAD)];
        if let Err(problem) = walker.step(row, ahead) {
            return walker.verdict(Some(problem));
        }
    }
    walker.verdict(None)
}

/// The verified prefix of the chain: its last few (seq, chain hash) pairs,
/// starting from (0, GENESIS).
struct Walker {
    verified: VecDeque<(i64, Hash)>,
}

fn problem(seq: i64, kind: ProblemKind, detail: String) -> Problem {
    Problem { seq, kind, detail }
}

/// Stored seqs are positive (CHECK seq > 0); anything else hashes as 0.
fn seq_u64(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

/// True when `row` chains from `prev` at `seq`, using either its recomputed
/// body hash or its stored body_sha256 (so a neighbour's own tampering does
/// not hide the link being tested).
fn links_from(prev: &Hash, seq: i64, row: &StoredEntry) -> bool {
    let computed = hash::body_sha256(row.body.as_bytes());
    if row.chain_hash == hash::chain_hash(prev, seq_u64(seq), &computed) {
        return true;
    }
    match hash::from_slice(&row.body_sha256) {
        Some(stored) if stored != computed => {
            row.chain_hash == hash::chain_hash(prev, seq_u64(seq), &stored)
        }
        _ => false,
    }
}

/// What was recomputed for the row being checked.
#[derive(Clone, Copy)]
struct Facts {
    /// SHA-256 of the stored body.
    body_sha: Hash,
    /// chain_hash(prev, k, body_sha): what the row's chain_hash should be.
    link: Hash,
    /// The stored body_sha256 equals `body_sha`.
    sha_ok: bool,
    /// The stored leaf_hash equals the body's leaf hash.
    leaf_ok: bool,
}

/// The row's stored chain hash, when it has the right length.
fn stored_chain(row: &StoredEntry) -> Option<Hash> {
    hash::from_slice(&row.chain_hash)
}

impl Walker {
    fn new() -> Self {
        let mut verified = VecDeque::with_capacity(HISTORY + 1);
        verified.push_back((0, hash::GENESIS));
        Walker { verified }
    }

    fn head(&self) -> (i64, Hash) {
        self.verified.back().copied().unwrap_or((0, hash::GENESIS))
    }

    /// The verdict once the walk stops: the verified prefix ends just before
    /// the problem's seq.
    fn verdict(&self, problem: Option<Problem>) -> Verdict {
        let (mut seq, mut chain) = self.head();
        if let Some(p) = &problem {
            if let Some(&(s, c)) = self.verified.iter().rev().find(|(s, _)| *s < p.seq) {
                seq = s;
                chain = c;
            }
        }
        Verdict {
            entries: seq,
            head_chain_hash: hex::encode(chain),
            problem,
            checkpoints: 0,
        }
    }

    fn push(&mut self, k: i64, link: Hash) {
        if self.verified.len() > HISTORY {
            self.verified.pop_front();
        }
        self.verified.push_back((k, link));
    }

    /// The row holds, given its precomputed hashes: it is the next seq,
    /// its hash columns and `id`/`last_updated` match its body, and it links
    /// from the verified chain. Then it joins the verified prefix; otherwise
    /// nothing changes and [`Walker::step`] classifies it.
    fn accept(&mut self, row: &StoredEntry, pre: &stream::Pre) -> bool {
        let (prev_seq, prev) = self.head();
        let k = prev_seq + 1;
        if row.seq != k
            || !pre.columns_ok
            || row.body_sha256 != pre.body_sha
            || row.leaf_hash != pre.leaf
        {
            return false;
        }
        let link = hash::chain_hash(&prev, seq_u64(k), &pre.body_sha);
        if row.chain_hash != link {
            return false;
        }
        self.push(k, link);
        true
    }

    /// Checks `row`, the next row in seq order, with up to LOOKAHEAD rows
    /// that follow it. On success the row joins the verified prefix.
    fn step(&mut self, row: &StoredEntry, ahead: &[StoredEntry]) -> Result<(), Problem> {
        let (prev_seq, prev) = self.head();
        let k = prev_seq + 1;
        if row.seq < k {
            return Err(problem(
                row.seq,
                ProblemKind::OrderChanged,
                format!("seq {} appears after seq {prev_seq}", row.seq),
            ));
        }
        if row.seq > k {
            return Err(self.gap(k, &prev, row));
        }
        for (column, value) in [
            ("body_sha256", &row.body_sha256),
            ("chain_hash", &row.chain_hash),
            ("leaf_hash", &row.leaf_hash),
        ] {
            if value.len() != 32 {
                return Err(problem(
                    k,
                    ProblemKind::Malformed,
                    format!(
                        "{column} of entry {k} is {} bytes long, not 32",
                        value.len()
                    ),
                ));
            }
        }
        let body_sha = hash::body_sha256(row.body.as_bytes());
        let link = hash::chain_hash(&prev, seq_u64(k), &body_sha);
        let sha_ok = row.body_sha256 == body_sha;
        let leaf_ok = row.leaf_hash == hash::leaf_hash(row.body.as_bytes());
        if row.chain_hash == link {
            if sha_ok && leaf_ok {
                check_columns(k, row)?;
                self.push(k, link);
                return Ok(());
            }
            return Err(linked_but_inconsistent(k, &link, sha_ok, ahead.first()));
        }
        let facts = Facts {
            body_sha,
            link,
            sha_ok,
            leaf_ok,
        };
        Err(self.unlinked(k, &prev, row, &facts, ahead))
    }

    /// The row stored after seq k-1 carries a higher seq.
    fn gap(&self, k: i64, prev: &Hash, row: &StoredEntry) -> Problem {
        let detail = if links_from(prev, k, row) {
            format!(
                "no entry has seq {k}: the entry stored as seq {} is the original entry {k} \
                 (its seq was altered)",
                row.seq
            )
        } else if row.seq == k + 1 {
            format!(
                "entry {k} was deleted (the next stored entry is seq {})",
                row.seq
            )
        } else {
            format!(
                "entries {k}..={} were deleted (the next stored entry is seq {})",
                row.seq - 1,
                row.seq
            )
        };
        problem(k, ProblemKind::EntryMissing, detail)
    }

    /// Classifies a row at the expected seq `k` whose chain_hash does not
    /// link from the verified chain.
    fn unlinked(
        &self,
        k: i64,
        prev: &Hash,
        row: &StoredEntry,
        facts: &Facts,
        ahead: &[StoredEntry],
    ) -> Problem {
        let Facts {
            body_sha,
            link,
            sha_ok,
            leaf_ok,
        } = *facts;
        // The body was edited in place; the stored body_sha256 still links.
        if !sha_ok && links_from(prev, k, row) {
            return problem(
                k,
                ProblemKind::BodyModified,
                format!(
                    "body of entry {k} was modified: it no longer matches body_sha256, \
                     which still links into the chain"
                ),
            );
        }
        let Some(row_chain) = stored_chain(row) else {
            // Unreachable: lengths were checked by the caller.
            return problem(k, ProblemKind::Malformed, format!("entry {k} is malformed"));
        };
        // Bodies exchanged, chain hashes left in place: a later body links
        // from prev into this row's chain_hash.
        for w in ahead {
            let w_sha = hash::body_sha256(w.body.as_bytes());
            if row.chain_hash == hash::chain_hash(prev, seq_u64(k), &w_sha) {
                return problem(
                    k,
                    ProblemKind::OrderChanged,
                    format!(
                        "the body stored at seq {} is the original body of entry {k}: \
                         bodies were exchanged (chain hashes left in place)",
                        w.seq
                    ),
                );
            }
        }
        // The original entry k sits at a later position.
        if let Some(j) = ahead.iter().position(|w| links_from(prev, k, w)) {
            let original = &ahead[j];
            let reordered = match stored_chain(original) {
                Some(orig_chain) => {
                    std::iter::once(row)
                        .chain(&ahead[..j])
                        .any(|w| links_from(&orig_chain, k + 1, w))
                        || ahead
                            .iter()
                            .enumerate()
                            .any(|(p, w)| p != j && links_from(&row_chain, w.seq, w))
                }
                None => false,
            };
            if reordered {
                return problem(
                    k,
                    ProblemKind::OrderChanged,
                    format!(
                        "the entry stored at seq {} is the original entry {k}, and the entry \
                         stored at seq {k} belongs elsewhere: entries were reordered",
                        original.seq
                    ),
                );
            }
            let n = original.seq - k;
            return problem(
                k,
                ProblemKind::EntryInserted,
                format!(
                    "{n} entr{} inserted at seq {k}..={}: the entry stored at seq {} is the \
                     original entry {k} (later entries renumbered up)",
                    if n == 1 { "y was" } else { "ies were" },
                    original.seq - 1,
                    original.seq
                ),
            );
        }
        // Rows inserted before k with consistent hashes: this row is an
        // original entry that links from an earlier verified chain hash.
        for &(s, c) in self.verified.iter().rev().skip(1) {
            if links_from(&c, s + 1, row) {
                return problem(
                    s + 1,
                    ProblemKind::EntryInserted,
                    format!(
                        "entries {}..={} were inserted with consistent hashes: the entry \
                         stored at seq {k} is the original entry {} (later entries renumbered up)",
                        s + 1,
                        k - 1,
                        s + 1
                    ),
                );
            }
        }
        let leftover = if !sha_ok && !leaf_ok {
            "neither body_sha256 nor leaf_hash matches it"
        } else if !sha_ok {
            "body_sha256 does not match it"
        } else {
            "leaf_hash does not match it"
        };
        if let Some(next) = ahead.first() {
            // This row's chain_hash is the original one: the successor links from it.
            if links_from(&row_chain, next.seq, next) {
                if !sha_ok || !leaf_ok {
                    return problem(
                        k,
                        ProblemKind::BodyModified,
                        format!(
                            "body of entry {k} was replaced: {leftover}, and its chain_hash \
                             (from which entry {} still links) does not link it",
                            next.seq
                        ),
                    );
                }
                if k == 1 {
                    // Nothing precedes entry 1 that could have been rewritten.
                    return problem(
                        k,
                        ProblemKind::BodyModified,
                        format!(
                            "body of entry 1 was replaced together with body_sha256 and \
                             leaf_hash: its chain_hash (from which entry {} still links) does \
                             not link it",
                            next.seq
                        ),
                    );
                }
                return problem(
                    k,
                    ProblemKind::ChainBroken,
                    format!(
                        "entry {k} does not link to entry {}, though entry {} links to it: \
                         entry {} (or an earlier one) was rewritten together with its hashes, \
                         or the body of entry {k} was replaced together with body_sha256 and \
                         leaf_hash",
                        k - 1,
                        next.seq,
                        k - 1
                    ),
                );
            }
            if links_from(&link, next.seq, next) {
                return problem(
                    k,
                    ProblemKind::ChainBroken,
                    format!(
                        "chain_hash of entry {k} was altered: its body is authentic and entry {} \
                         links from the recomputed chain hash",
                        next.seq
                    ),
                );
            }
            if let Some(d) = (1..=MAX_SHIFT).find(|d| links_from(&row_chain, next.seq + d, next)) {
                return problem(
                    k,
                    ProblemKind::EntryMissing,
                    format!(
                        "{d} entr{} deleted at seq {k}..={} and later entries renumbered down: \
                         the entry stored at seq {k} is the original entry {}",
                        if d == 1 { "y was" } else { "ies were" },
                        k + d - 1,
                        k + d
                    ),
                );
            }
        }
        match (sha_ok && leaf_ok, ahead.is_empty()) {
            (true, true) => problem(
                k,
                ProblemKind::EntryInserted,
                format!(
                    "entry {k}, the last one, is consistent in itself but does not link to \
                     entry {}: it was appended outside the ledger (or its chain_hash was \
                     altered, or its body replaced together with body_sha256 and leaf_hash)",
                    k - 1
                ),
            ),
            (true, false) => problem(
                k,
                ProblemKind::ChainBroken,
                format!(
                    "entry {k} does not link to entry {}, and entry {} does not link to it",
                    k - 1,
                    k + 1
                ),
            ),
            (false, _) if !leaf_ok => problem(
                k,
                ProblemKind::BodyModified,
                format!("body of entry {k} was modified: {leftover}, and it does not link"),
            ),
            (false, _) => problem(
                k,
                ProblemKind::ChainBroken,
                format!(
                    "body_sha256 and chain_hash of entry {k} do not match its body \
                     (body_sha256 {}, recomputed {})",
                    hex::encode(&row.body_sha256),
                    hex::encode(body_sha)
                ),
            ),
        }
    }
}

/// The row's body links from the verified chain, but one of its hash
/// columns disagrees with it.
fn linked_but_inconsistent(
    k: i64,
    link: &Hash,
    sha_ok: bool,
    next: Option<&StoredEntry>,
) -> Problem {
    let column = if sha_ok { "leaf_hash" } else { "body_sha256" };
    if let Some(next) = next {
        if !links_from(link, next.seq, next) {
            // Body and chain_hash were rewritten consistently; the successor
            // still links from the original chain hash and the leftover
            // column still describes the original body.
            return problem(
                k,
                ProblemKind::BodyModified,
                format!(
                    "body of entry {k} was rewritten together with its chain_hash: entry {} no \
                     longer links to it and its {column} does not match it",
                    next.seq
                ),
            );
        }
    }
    if sha_ok {
        problem(
            k,
            ProblemKind::LeafHashMismatch,
            format!("leaf_hash of entry {k} does not match its body (body and chain are intact)"),
        )
    } else {
        problem(
            k,
            ProblemKind::ChainBroken,
            format!(
                "body_sha256 of entry {k} was altered: the body links into the chain but does \
                 not match the stored body_sha256"
            ),
        )
    }
}

#[derive(Deserialize)]
struct BodyHead<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    meta: Option<BodyMeta<'a>>,
}

#[derive(Deserialize)]
struct BodyMeta<'a> {
    #[serde(borrow, rename = "lastUpdated")]
    last_updated: Option<std::borrow::Cow<'a, str>>,
}

/// The `id` and `last_updated` columns (what reads look entries up by) must
/// say what the hashed body says.
fn check_columns(k: i64, row: &StoredEntry) -> Result<(), Problem> {
    let head: BodyHead<'_> = serde_json::from_str(&row.body).map_err(|_| {
        problem(
            k,
            ProblemKind::Malformed,
            format!("body of entry {k} is not a JSON object with an id"),
        )
    })?;
    if head.id.as_deref() != Some(row.id.as_str()) {
        return Err(problem(
            k,
            ProblemKind::Malformed,
            format!(
                "id column of entry {k} ({:?}) differs from the body's id ({:?})",
                row.id,
                head.id.as_deref().unwrap_or("")
            ),
        ));
    }
    let stamp = head.meta.as_ref().and_then(|m| m.last_updated.as_deref());
    if stamp != Some(row.last_updated.as_str()) {
        return Err(problem(
            k,
            ProblemKind::Malformed,
            format!(
                "last_updated column of entry {k} ({:?}) differs from the body's \
                 meta.lastUpdated ({:?})",
                row.last_updated,
                stamp.unwrap_or("")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: i64 = 12;

    fn body(seq: i64) -> String {
        format!(
            r#"{{"id":"id-{seq}","meta":{{"lastUpdated":"2026-01-01T00:00:{:02}.000000Z","versionId":"1"}},"outcome":"0","resourceType":"AuditEvent"}}"#,
            seq % 60
        )
    }

    /// A row with every hash computed honestly from `prev` at `seq`.
    fn honest(prev: &Hash, seq: i64, body: String) -> StoredEntry {
        let sha = hash::body_sha256(body.as_bytes());
        let head: serde_json::Value = serde_json::from_str(&body).unwrap();
        StoredEntry {
            seq,
            id: head["id"].as_str().unwrap().to_string(),
            last_updated: head["meta"]["lastUpdated"].as_str().unwrap().to_string(),
            body_sha256: sha.to_vec(),
            chain_hash: hash::chain_hash(prev, seq as u64, &sha).to_vec(),
            leaf_hash: hash::leaf_hash(body.as_bytes()).to_vec(),
            body,
        }
    }

    fn ledger(n: i64) -> Vec<StoredEntry> {
        let mut prev = hash::GENESIS;
        (1..=n)
            .map(|seq| {
                let e = honest(&prev, seq, body(seq));
                prev = hash::from_slice(&e.chain_hash).unwrap();
                e
            })
            .collect()
    }

    fn chain_of(e: &StoredEntry) -> Hash {
        hash::from_slice(&e.chain_hash).unwrap()
    }

    fn modified(b: &str) -> String {
        b.replace(r#""outcome":"0""#, r#""outcome":"8""#)
    }

    #[track_caller]
    fn assert_problem(rows: &[StoredEntry], seq: i64, kind: ProblemKind) -> Problem {
        let v = verify_rows(rows);
        let p = v
            .problem
            .clone()
            .unwrap_or_else(|| panic!("no problem found"));
        assert_eq!((p.seq, p.kind), (seq, kind), "{}", p.detail);
        assert_eq!(
            v.entries,
            seq - 1,
            "verified prefix ends before the problem"
        );
        let expected_head = if seq == 1 {
            hash::GENESIS
        } else {
            chain_of(&ledger(seq - 1)[(seq - 2) as usize])
        };
        assert_eq!(v.head_chain_hash, hex::encode(expected_head));
        p
    }

    fn renumber(rows: &mut [StoredEntry], from: usize) {
        for (i, r) in rows.iter_mut().enumerate().skip(from) {
            r.seq = i as i64 + 1;
        }
    }

    #[test]
    fn intact_ledger_verifies() {
        let rows = ledger(N);
        let v = verify_rows(&rows);
        assert!(v.ok(), "{:?}", v.problem);
        assert_eq!(v.entries, N);
        assert_eq!(
            v.head_chain_hash,
            hex::encode(chain_of(&rows[N as usize - 1]))
        );
        let empty = verify_rows(&[]);
        assert!(empty.ok());
        assert_eq!(empty.entries, 0);
        assert_eq!(empty.head_chain_hash, hex::encode(hash::GENESIS));
    }

    #[test]
    fn edited_body_with_its_hash_left_is_body_modified() {
        for k in [1, 5, N] {
            let mut rows = ledger(N);
            let r = &mut rows[k as usize - 1];
            r.body = modified(&r.body);
            assert_problem(&rows, k, ProblemKind::BodyModified);
        }
    }

    #[test]
    fn edited_body_with_rewritten_hashes_but_old_chain_is_body_modified() {
        for k in [1, 5, N] {
            for rewrite_leaf in [false, true] {
                let mut rows = ledger(N);
                let r = &mut rows[k as usize - 1];
                r.body = modified(&r.body);
                r.body_sha256 = hash::body_sha256(r.body.as_bytes()).to_vec();
                if rewrite_leaf {
                    r.leaf_hash = hash::leaf_hash(r.body.as_bytes()).to_vec();
                }
                if rewrite_leaf && k == 1 {
                    assert_problem(&rows, k, ProblemKind::BodyModified);
                } else if rewrite_leaf && k != N {
                    // Indistinguishable from an earlier consistent rewrite:
                    // reported where the chain breaks, naming both.
                    let p = assert_problem(&rows, k, ProblemKind::ChainBroken);
                    assert!(p.detail.contains("replaced"), "{}", p.detail);
                } else if rewrite_leaf {
                    assert_problem(&rows, k, ProblemKind::EntryInserted);
                } else {
                    assert_problem(&rows, k, ProblemKind::BodyModified);
                }
            }
        }
    }

    #[test]
    fn consistent_rewrite_with_leaf_left_is_body_modified_at_its_seq() {
        for k in [1, 5, N - 1] {
            let mut rows = ledger(N);
            let prev = if k == 1 {
                hash::GENESIS
            } else {
                chain_of(&rows[k as usize - 2])
            };
            let r = &mut rows[k as usize - 1];
            r.body = modified(&r.body);
            let sha = hash::body_sha256(r.body.as_bytes());
            r.body_sha256 = sha.to_vec();
            r.chain_hash = hash::chain_hash(&prev, k as u64, &sha).to_vec();
            assert_problem(&rows, k, ProblemKind::BodyModified);
        }
    }

    #[test]
    fn fully_consistent_rewrite_breaks_the_chain_at_the_next_seq() {
        let mut rows = ledger(N);
        let prev = chain_of(&rows[5]);
        let forged = honest(&prev, 7, modified(&rows[6].body));
        let forged_chain = chain_of(&forged);
        rows[6] = forged;
        let v = verify_rows(&rows);
        let p = v.problem.unwrap();
        assert_eq!(
            (p.seq, p.kind),
            (8, ProblemKind::ChainBroken),
            "{}",
            p.detail
        );
        assert!(
            p.detail.contains("entry 7 (or an earlier one)"),
            "{}",
            p.detail
        );
        // The forged entry 7 is part of the prefix that chains.
        assert_eq!(v.entries, 7);
        assert_eq!(v.head_chain_hash, hex::encode(forged_chain));
    }

    #[test]
    fn altered_chain_hash_alone_is_chain_broken() {
        let mut rows = ledger(N);
        rows[4].chain_hash = hash::body_sha256(b"forged").to_vec();
        let p = assert_problem(&rows, 5, ProblemKind::ChainBroken);
        assert!(
            p.detail.contains("chain_hash of entry 5 was altered"),
            "{}",
            p.detail
        );
    }

    #[test]
    fn altered_body_sha256_alone_is_chain_broken() {
        let mut rows = ledger(N);
        rows[4].body_sha256 = hash::body_sha256(b"forged").to_vec();
        let p = assert_problem(&rows, 5, ProblemKind::ChainBroken);
        assert!(p.detail.contains("body_sha256"), "{}", p.detail);
    }

    #[test]
    fn deleted_entry_leaving_a_gap_is_missing() {
        for k in [1usize, 5, N as usize - 1] {
            let mut rows = ledger(N);
            rows.remove(k - 1);
            assert_problem(&rows, k as i64, ProblemKind::EntryMissing);
        }
        let mut rows = ledger(N);
        rows.drain(3..6);
        let p = assert_problem(&rows, 4, ProblemKind::EntryMissing);
        assert!(p.detail.contains("4..=6"), "{}", p.detail);
    }

    #[test]
    fn deleted_entries_with_renumbering_are_missing() {
        for (k, count) in [(1usize, 1usize), (5, 1), (5, 3), (N as usize - 2, 1)] {
            let mut rows = ledger(N);
            rows.drain(k - 1..k - 1 + count);
            renumber(&mut rows, k - 1);
            let p = assert_problem(&rows, k as i64, ProblemKind::EntryMissing);
            assert!(
                p.detail.starts_with(&format!("{count} entr")),
                "{}",
                p.detail
            );
        }
    }

    #[test]
    fn renumbered_seq_is_reported_missing_at_its_original_seq() {
        let mut rows = ledger(N);
        rows[N as usize - 1].seq = 40;
        let p = assert_problem(&rows, N, ProblemKind::EntryMissing);
        assert!(p.detail.contains("seq was altered"), "{}", p.detail);
        let mut rows = ledger(N);
        rows[4].seq = 40;
        rows.sort_by_key(|r| r.seq);
        assert_problem(&rows, 5, ProblemKind::EntryMissing);
    }

    #[test]
    fn row_inserted_in_the_middle_is_reported_at_its_seq() {
        for k in [1usize, 5, N as usize] {
            for consistent in [false, true] {
                let mut rows = ledger(N);
                let prev = if k == 1 {
                    hash::GENESIS
                } else {
                    chain_of(&rows[k - 2])
                };
                let mut x = honest(&prev, k as i64, body(100));
                if !consistent {
                    x.chain_hash = hash::body_sha256(b"bogus").to_vec();
                }
                rows.insert(k - 1, x);
                renumber(&mut rows, k - 1);
                assert_problem(&rows, k as i64, ProblemKind::EntryInserted);
            }
        }
        // Two rows inserted at once.
        let mut rows = ledger(N);
        let bogus = |seq| {
            let mut x = honest(&hash::GENESIS, seq, body(100 + seq));
            x.chain_hash = hash::body_sha256(b"bogus").to_vec();
            x
        };
        rows.insert(4, bogus(5));
        rows.insert(5, bogus(6));
        renumber(&mut rows, 4);
        let p = assert_problem(&rows, 5, ProblemKind::EntryInserted);
        assert!(p.detail.starts_with("2 entries"), "{}", p.detail);
    }

    #[test]
    fn row_appended_with_a_bogus_hash_is_inserted() {
        let mut rows = ledger(N);
        let mut x = honest(&hash::GENESIS, N + 1, body(N + 1));
        x.chain_hash = hash::body_sha256(b"bogus").to_vec();
        rows.push(x);
        assert_problem(&rows, N + 1, ProblemKind::EntryInserted);
    }

    #[test]
    fn swapped_rows_are_order_changed_at_the_lower_seq() {
        for k in [1usize, 5, N as usize - 1] {
            // Seq values exchanged (whole rows swapped).
            let mut rows = ledger(N);
            rows.swap(k - 1, k);
            renumber(&mut rows, 0);
            assert_problem(&rows, k as i64, ProblemKind::OrderChanged);
            // Bodies (with their body hashes) exchanged, chain hashes left.
            let mut rows = ledger(N);
            let (a, b) = (rows[k - 1].clone(), rows[k].clone());
            for (dst, src) in [(k - 1, &b), (k, &a)] {
                rows[dst].body = src.body.clone();
                rows[dst].body_sha256 = src.body_sha256.clone();
                rows[dst].leaf_hash = src.leaf_hash.clone();
            }
            assert_problem(&rows, k as i64, ProblemKind::OrderChanged);
        }
        // Non-adjacent swap and a move to the front.
        let mut rows = ledger(N);
        rows.swap(3, 5);
        renumber(&mut rows, 0);
        assert_problem(&rows, 4, ProblemKind::OrderChanged);
        let mut rows = ledger(N);
        let moved = rows.remove(6);
        rows.insert(4, moved);
        renumber(&mut rows, 0);
        assert_problem(&rows, 5, ProblemKind::OrderChanged);
    }

    #[test]
    fn altered_leaf_hash_is_leaf_hash_mismatch() {
        for k in [1usize, 5, N as usize] {
            let mut rows = ledger(N);
            rows[k - 1].leaf_hash = hash::leaf_hash(b"forged").to_vec();
            assert_problem(&rows, k as i64, ProblemKind::LeafHashMismatch);
        }
    }

    #[test]
    fn wrong_length_hash_columns_are_malformed() {
        for column in 0..3 {
            let mut rows = ledger(N);
            let r = &mut rows[6];
            let v = match column {
                0 => &mut r.body_sha256,
                1 => &mut r.chain_hash,
                _ => &mut r.leaf_hash,
            };
            v.pop();
            assert_problem(&rows, 7, ProblemKind::Malformed);
        }
    }

    #[test]
    fn id_or_timestamp_column_differing_from_the_body_is_malformed() {
        let mut rows = ledger(N);
        rows[2].id = "someone-else".into();
        let p = assert_problem(&rows, 3, ProblemKind::Malformed);
        assert!(p.detail.contains("id column"), "{}", p.detail);
        let mut rows = ledger(N);
        rows[2].last_updated = "2030-01-01T00:00:00.000000Z".into();
        let p = assert_problem(&rows, 3, ProblemKind::Malformed);
        assert!(p.detail.contains("last_updated"), "{}", p.detail);
    }

    #[test]
    fn problems_are_found_across_lookahead_boundaries() {
        // A gap, an insertion or a swap found exactly at the end of the
        // lookahead window still classifies.
        let mut rows = ledger(N);
        let moved = rows.remove(2);
        rows.insert(2 + LOOKAHEAD, moved);
        renumber(&mut rows, 0);
        let v = verify_rows(&rows);
        let p = v.problem.unwrap();
        assert_eq!(p.seq, 3);
        assert_eq!(p.kind, ProblemKind::OrderChanged, "{}", p.detail);
    }

    #[tokio::test]
    async fn paged_walk_agrees_with_the_in_memory_walk_at_every_page_size() {
        let mut cases = vec![ledger(N)];
        for k in [0usize, 3, 4, 5, 9, 10] {
            let mut swapped = ledger(N);
            swapped.swap(k, k + 1);
            renumber(&mut swapped, 0);
            cases.push(swapped);
            let mut deleted = ledger(N);
            deleted.remove(k);
            renumber(&mut deleted, k);
            cases.push(deleted);
            let mut inserted = ledger(N);
            let mut x = honest(&hash::GENESIS, 0, body(100));
            x.chain_hash = hash::body_sha256(b"bogus").to_vec();
            inserted.insert(k, x);
            renumber(&mut inserted, k);
            cases.push(inserted);
            let mut leaf = ledger(N);
            leaf[k].leaf_hash = hash::leaf_hash(b"x").to_vec();
            cases.push(leaf);
        }
        for rows in &cases {
            let expected = verify_rows(rows);
            for page in 1..=7i64 {
                let fetch = |after: i64, limit: i64| {
                    let out: Vec<StoredEntry> = rows
                        .iter()
                        .filter(|r| r.seq > after)
                        .take(limit as usize)
                        .cloned()
                        .collect();
                    std::future::ready(Ok::<_, std::convert::Infallible>(out))
                };
                let got = verify_paged(page, fetch, |_| ()).await.unwrap();
                assert_eq!(got, expected, "page size {page}");
            }
        }
        // Sanity: the cases are classified as built.
        assert!(cases.iter().skip(1).all(|c| !verify_rows(c).ok()));
    }

    #[test]
    fn verdict_serialises_kind_in_snake_case() {
        let mut rows = ledger(3);
        rows[1].leaf_hash = hash::leaf_hash(b"x").to_vec();
        let v = serde_json::to_value(verify_rows(&rows)).unwrap();
        assert_eq!(v["problem"]["kind"], "leaf_hash_mismatch");
        assert_eq!(v["problem"]["seq"], 2);
        assert_eq!(v["entries"], 1);
    }
}
