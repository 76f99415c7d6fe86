//! One pass over the stored entries for [`super::verify_all`]: a reader
//! streams pages (store/stream.rs) while this side hashes each page on every
//! core (body SHA-256, leaf hash, id/timestamp columns, the search-index
//! rows re-derived from the body and compared with the stored ones), then
//! walks the page in order (chain links and the Merkle fold, cheap and
//! sequential). Each body is read once.

use std::collections::{HashMap, VecDeque};

use super::{check_columns, problem, Problem, ProblemKind, Verdict, Walker, LOOKAHEAD};
use crate::hash::{self, Hash};
use crate::merkle::Accumulator;
use crate::store::stream::{Page, PageReceiver};
use crate::store::{expected_rows, IndexFn, IndexRow, StoreError, StoredEntry};

/// Reports entries verified so far (called once per page).
pub type Progress = Box<dyn Fn(u64) + Send>;

/// What is computed for one row off the sequential path.
pub(super) struct Pre {
    pub body_sha: Hash,
    pub leaf: Hash,
    /// `id` and `last_updated` say what the body says.
    pub columns_ok: bool,
    /// (missing, extra, stored, expected) index rows, when they differ.
    pub index_diff: Option<(usize, usize, usize, usize)>,
}

/// The walk's outcome: the chain verdict, the Merkle fold of the verified
/// prefix, (root, chain hash) at each wanted size, and the first entry whose
/// index rows differ.
pub(super) struct Walked {
    pub verdict: Verdict,
    pub acc: Accumulator,
    pub at_size: HashMap<u64, (Hash, Hash)>,
    pub index_problem: Option<Problem>,
}

type Key<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
    Option<i64>,
);

fn key(r: &IndexRow) -> Key<'_> {
    (
        r.param.as_str(),
        r.sys.as_deref(),
        r.val.as_deref(),
        r.exact.as_deref(),
        r.low,
        r.high,
    )
}

/// The stored index rows against those the body gives, as multisets.
fn index_diff(
    e: &StoredEntry,
    stored: &[(i64, IndexRow)],
    indexer: IndexFn,
) -> Option<(usize, usize, usize, usize)> {
    let expected = expected_rows(&e.body, &e.last_updated, indexer);
    let mut want: Vec<Key<'_>> = expected.iter().map(key).collect();
    let mut have: Vec<Key<'_>> = stored.iter().map(|(_, r)| key(r)).collect();
    want.sort_unstable();
    have.sort_unstable();
    if want == have {
        return None;
    }
    let missing = want.iter().filter(|k| !have.contains(k)).count();
    let extra = have.iter().filter(|k| !want.contains(k)).count();
    Some((missing, extra, have.len(), want.len()))
}

fn pre_row(e: &StoredEntry, page: &Page, indexer: Option<IndexFn>) -> Pre {
    Pre {
        body_sha: hash::body_sha256(e.body.as_bytes()),
        leaf: hash::leaf_hash(e.body.as_bytes()),
        columns_ok: check_columns(e.seq, e).is_ok(),
        index_diff: indexer.and_then(|f| index_diff(e, page.index_of(e.seq), f)),
    }
}

/// [`pre_row`] for every row of the page, split across the cores.
fn precompute(page: &Page, indexer: Option<IndexFn>, workers: usize) -> Vec<Pre> {
    let chunk = page.rows.len().div_ceil(workers.max(1)).max(1);
    std::thread::scope(|s| {
        let mut parts = page.rows.chunks(chunk);
        let first = parts.next().unwrap_or(&[]);
        let handles: Vec<_> = parts
            .map(|rows| s.spawn(move || rows.iter().map(|e| pre_row(e, page, indexer)).collect()))
            .collect();
        let mut out: Vec<Pre> = first.iter().map(|e| pre_row(e, page, indexer)).collect();
        for h in handles {
            let part: Vec<Pre> = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            out.extend(part);
        }
        out
    })
}

/// Consumes the stream (on a blocking thread). `sizes`: the tree sizes
/// whose root and chain hash are wanted (the stored checkpoints').
pub(super) fn walk(
    mut rx: PageReceiver,
    sizes: &[u64],
    indexer: Option<IndexFn>,
    progress: Option<Progress>,
) -> Result<Walked, StoreError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let mut walker = Walker::new();
    let mut acc = Accumulator::default();
    let mut at_size = HashMap::new();
    let wanted: std::collections::HashSet<u64> = sizes.iter().copied().collect();
    let mut index_problem = None;
    let mut rows: VecDeque<StoredEntry> = VecDeque::new();
    let mut pres: VecDeque<Pre> = VecDeque::new();
    let mut exhausted = false;
    let mut done = 0u64;
    loop {
        while !exhausted && rows.len() <= LOOKAHEAD {
            match rx.blocking_recv() {
                Some(page) => {
                    let page = page?;
                    let computed = precompute(&page, indexer, workers);
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
                index_problem,
            });
        }
        let leaf = hash::from_slice(&row.leaf_hash).unwrap_or_default();
        acc.push(leaf);
        if wanted.contains(&acc.size()) {
            at_size.insert(
                acc.size(),
                (
                    acc.root(),
                    hash::from_slice(&row.chain_hash).unwrap_or_default(),
                ),
            );
        }
        if let (None, Some((missing, extra, have, want))) = (&index_problem, pre.index_diff) {
            index_problem = Some(problem(
                row.seq,
                ProblemKind::IndexMismatch,
                format!(
                    "search-index rows differ from the body: {missing} missing, {extra} extra \
                     ({have} stored, {want} expected)"
                ),
            ));
        }
        done += 1;
    }
    if let Some(p) = &progress {
        p(done);
    }
    Ok(Walked {
        verdict: walker.verdict(None),
        acc,
        at_size,
        index_problem,
    })
}

/// The rows after the one being checked, at most LOOKAHEAD.
fn ahead(rows: &mut VecDeque<StoredEntry>) -> &[StoredEntry] {
    let all = rows.make_contiguous();
    &all[..all.len().min(LOOKAHEAD)]
}
