//! One pass over the stored entries for [`super::verify_all`]: a reader
//! streams pages (store/stream.rs) while this side hashes each page on every
//! core (body SHA-256, leaf hash, id/timestamp columns, the search-index
//! rows re-derived from the body and compared with the stored ones), then
//! walks the page in order (chain links and the Merkle fold, cheap and
//! sequential). Each body is read once.

use std::collections::{HashMap, VecDeque};

use super::tree_nodes::NodeDigests;
use super::{check_columns, Verdict, Walker, LOOKAHEAD};
use crate::hash::{self, Hash};
use crate::merkle::Accumulator;
use crate::store::stream::{Page, PageReceiver, RowHasher, RowsDigest};
use crate::store::summary::SummaryFn;
use crate::store::{last_updated_row, ExpectedKey, IndexFn, KeyFn, StoreError, StoredEntry};
use vellum_json::tape::{Node, Tape};

/// Reports entries verified so far (called once per page).
pub type Progress = Box<dyn Fn(u64) + Send>;

/// How the rows an entry's body gives are re-derived: its search-index
/// rows (`indexer`, compared as a digest under `hasher`), from them its
/// idempotency key (`keyer`), and its report summary row (`summarizer`,
/// summed under `hasher` for the entries up to `summaries_upto`).
#[derive(Clone)]
pub(super) struct Derive {
    pub indexer: Option<IndexFn>,
    pub keyer: Option<KeyFn>,
    pub summarizer: Option<SummaryFn>,
    pub summaries_upto: i64,
    pub hasher: RowHasher,
    /// The stored index rows come as one sum (table order), not per entry.
    pub in_table_order: bool,
}

/// What is computed for one row off the sequential path.
pub(super) struct Pre {
    pub body_sha: Hash,
    pub leaf: Hash,
    /// `id` and `last_updated` say what the body says.
    pub columns_ok: bool,
    /// What the rows derived from this entry's body contradict, if
    /// anything (reported only once the entry itself verifies).
    pub finding: Option<Finding>,
    /// The digest of the index rows its body gives.
    pub index: RowsDigest,
    /// The digest of the summary row its body gives (none: count 0).
    pub summary: RowsDigest,
}

/// A per-entry check that failed: the first one (by seq) is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Finding {
    /// The stored index rows are not the ones the body gives.
    Index { stored: u64, expected: u64 },
    /// The index rows of all entries, compared as one sum, differ
    /// somewhere: stream again per entry to find where.
    IndexSomewhere,
    /// The stored idempotency keys are not the one the body gives.
    Keys { missing: usize, extra: usize },
}

/// The walk's outcome: the chain verdict, the Merkle fold of the verified
/// prefix, (root, chain hash) at each wanted size, and the first entry
/// whose derived rows differ.
pub(super) struct Walked {
    pub verdict: Verdict,
    pub acc: Accumulator,
    pub at_size: HashMap<u64, (Hash, Hash)>,
    /// The seq of the first finding, and the finding.
    pub finding: Option<(i64, Finding)>,
    /// The sum of the summary rows the bodies up to
    /// [`Derive::summaries_upto`] give.
    pub summaries: RowsDigest,
    /// The stored-level nodes of the fold, as the append stores them.
    pub nodes: NodeDigests,
}

/// The entry's stored idempotency keys against the one its body gives.
fn check_keys<'a>(
    expected: &ExpectedKey,
    stored: impl Iterator<Item = &'a str>,
) -> Option<Finding> {
    let (mut matching, mut extra) = (0usize, 0usize);
    for k in stored {
        if expected.matches(k) {
            matching += 1;
        } else {
            extra += 1;
        }
    }
    // A retry never stores a second key for the same entry.
    let extra = extra + matching.saturating_sub(1);
    let missing = usize::from(matching == 0);
    (missing + extra > 0).then_some(Finding::Keys { missing, extra })
}

/// The rows derived from the body (`root`, `None` when it is not JSON)
/// against the stored ones: the entry's first finding, and the digest of
/// the index rows its body gives. Per-entry checks of derived data go here.
fn derived_finding(
    e: &StoredEntry,
    i: usize,
    page: &Page,
    d: &Derive,
    root: Option<Node<'_>>,
) -> (Option<Finding>, RowsDigest) {
    let Some(indexer) = d.indexer else {
        return (None, RowsDigest::default());
    };
    let mut expected = RowsDigest::default();
    // The first row that names a key decides which key the body gives.
    let mut key: Option<ExpectedKey> = None;
    if let Some(root) = root {
        indexer(root, &mut |r| {
            if let (None, Some(keyer)) = (&key, d.keyer) {
                key = keyer(&r);
            }
            expected.add(d.hasher.derived_row(e.seq, &r));
        });
    }
    let keys = key.and_then(|k| check_keys(&k, page.keys_of(e.seq)));
    if let Some(t) = crate::parse_stamp(&e.last_updated) {
        expected.add(d.hasher.index_row(e.seq, &last_updated_row(t)));
    }
    // Per entry only when the page carries per-entry digests; otherwise
    // the walk compares the sums (table order).
    if let Some(stored) = page.index.get(i) {
        if *stored != expected {
            let f = Finding::Index {
                stored: stored.count,
                expected: expected.count,
            };
            return (Some(f), expected);
        }
    }
    (keys, expected)
}

/// The `id` and `meta.lastUpdated` of a parsed body are the row's columns
/// (what [`check_columns`] checks, read from the parse already made).
fn columns_match(e: &StoredEntry, root: Node<'_>) -> bool {
    root.get("id").and_then(Node::as_str) == Some(e.id.as_str())
        && root
            .get("meta")
            .and_then(|m| m.get("lastUpdated"))
            .and_then(Node::as_str)
            == Some(e.last_updated.as_str())
}

fn pre_row(e: &StoredEntry, i: usize, page: &Page, d: &Derive) -> Pre {
    let body = e.body.as_bytes();
    // One parse serves the column check and the row derivations; a body
    // that is not JSON gets the column check's own verdict.
    let derives = d.indexer.is_some() || d.summarizer.is_some();
    let tape = derives.then(|| Tape::parse(body).ok()).flatten();
    let root = tape.as_ref().map(Tape::root);
    let columns_ok = match root {
        Some(root) => columns_match(e, root),
        None => check_columns(e.seq, e).is_ok(),
    };
    let (finding, index) = derived_finding(e, i, page, d, root);
    let mut summary = RowsDigest::default();
    if let (Some(summarize), Some(root)) = (d.summarizer, root) {
        if let Some(s) = summarize(root) {
            summary.add(d.hasher.summary(e.seq, &s));
        }
    }
    Pre {
        body_sha: hash::body_sha256(body),
        leaf: hash::leaf_hash(body),
        columns_ok,
        finding,
        index,
        summary,
    }
}

/// [`pre_row`] for every row of the page, split across the cores.
fn precompute(page: &Page, d: &Derive, workers: usize) -> Vec<Pre> {
    let chunk = page.rows.len().div_ceil(workers.max(1)).max(1);
    std::thread::scope(|s| {
        let mut parts = page.rows.chunks(chunk).enumerate();
        let first = parts.next();
        let handles: Vec<_> = parts
            .map(|(c, rows)| {
                s.spawn(move || {
                    rows.iter()
                        .enumerate()
                        .map(|(j, e)| pre_row(e, c * chunk + j, page, d))
                        .collect()
                })
            })
            .collect();
        let mut out: Vec<Pre> = first
            .map(|(_, rows)| {
                rows.iter()
                    .enumerate()
                    .map(|(j, e)| pre_row(e, j, page, d))
                    .collect()
            })
            .unwrap_or_default();
        for h in handles {
            let part: Vec<Pre> = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            out.extend(part);
        }
        out
    })
}

/// A stray row (its seq names no stored entry) as a finding at that seq.
fn stray_finding(page: &Page) -> Option<(i64, Finding)> {
    let index = page.stray_index.map(|(seq, n)| {
        (
            seq,
            Finding::Index {
                stored: n,
                expected: 0,
            },
        )
    });
    let keys = page.stray_keys.map(|(seq, n)| {
        (
            seq,
            Finding::Keys {
                missing: 0,
                extra: usize::try_from(n).unwrap_or(usize::MAX),
            },
        )
    });
    match (index, keys) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Keeps the finding with the lowest seq.
fn first_of(current: &mut Option<(i64, Finding)>, new: Option<(i64, Finding)>) {
    if let Some(n) = new {
        if current.as_ref().is_none_or(|c| n.0 < c.0) {
            *current = Some(n);
        }
    }
}

/// Consumes the stream (on a blocking thread). `sizes`: the tree sizes
/// whose root and chain hash are wanted (the stored checkpoints').
pub(super) fn walk(
    mut rx: PageReceiver,
    sizes: &[u64],
    derive: &Derive,
    progress: Option<Progress>,
) -> Result<Walked, StoreError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let mut walker = Walker::new();
    let mut acc = Accumulator::default();
    let mut at_size = HashMap::new();
    let wanted: std::collections::HashSet<u64> = sizes.iter().copied().collect();
    let mut finding: Option<(i64, Finding)> = None;
    // Table order: the stored rows' sum and the derived rows' sum.
    let (mut stored_total, mut expected_total) = (RowsDigest::default(), RowsDigest::default());
    let mut summaries = RowsDigest::default();
    let mut nodes = NodeDigests::default();
    let mut rows: VecDeque<StoredEntry> = VecDeque::new();
    let mut pres: VecDeque<Pre> = VecDeque::new();
    let mut exhausted = false;
    let mut done = 0u64;
    loop {
        while !exhausted && rows.len() <= LOOKAHEAD {
            match rx.blocking_recv() {
                Some(page) => {
                    let page = page?;
                    let computed = precompute(&page, derive, workers);
                    first_of(&mut finding, stray_finding(&page));
                    stored_total.merge(page.index_total);
                    rows.extend(page.rows);
                    pres.extend(computed);
                    if let Some(p) = &progress {
                        p(done);
                    }
                }
                None => exhausted = true,
            }
        }
        let (Some(row), Some(pre)) = (rows.pop_front(), pres.pop_front()) else {
            break;
        };
        // The common case needs no lookahead; anything else is classified
        // by the full step.
        let step = if walker.accept(&row, &pre) {
            Ok(())
        } else {
            walker.step(&row, ahead(&mut rows))
        };
        if let Err(p) = step {
            return Ok(Walked {
                verdict: walker.verdict(Some(p)),
                acc,
                at_size,
                finding,
                summaries,
                nodes,
            });
        }
        let leaf = hash::from_slice(&row.leaf_hash).unwrap_or_default();
        acc.push_reporting(leaf, |id, h| nodes.add(&derive.hasher, id, h));
        if wanted.contains(&acc.size()) {
            at_size.insert(
                acc.size(),
                (
                    acc.root(),
                    hash::from_slice(&row.chain_hash).unwrap_or_default(),
                ),
            );
        }
        if let Some(f) = pre.finding {
            first_of(&mut finding, Some((row.seq, f)));
        }
        expected_total.merge(pre.index);
        if row.seq <= derive.summaries_upto {
            summaries.merge(pre.summary);
        }
        done += 1;
    }
    if let Some(p) = &progress {
        p(done);
    }
    if derive.in_table_order && stored_total != expected_total {
        first_of(&mut finding, Some((i64::MAX, Finding::IndexSomewhere)));
    }
    Ok(Walked {
        verdict: walker.verdict(None),
        acc,
        at_size,
        finding,
        summaries,
        nodes,
    })
}

/// The rows after the one being checked, at most LOOKAHEAD.
fn ahead(rows: &mut VecDeque<StoredEntry>) -> &[StoredEntry] {
    let all = rows.make_contiguous();
    &all[..all.len().min(LOOKAHEAD)]
}
