//! The summary-row check of `verify`: every entry's report summary row must
//! be exactly the one its body gives (the store's summarizer), with no row
//! for an entry that is not an AI event. A missing row hides an event from
//! the reports; an extra or altered one changes their numbers.

use super::{problem, Problem, ProblemKind};
use crate::store::stream::{RowHasher, RowsDigest};
use crate::store::summary::{derive, Summary, SummaryFn, SummaryQuery};
use crate::store::{AnyStore, Store, StoreError};

/// Entries read per page.
const PAGE: i64 = 5000;

/// The sum of the stored summary rows up to `head` under `hasher` (what the
/// walk's sum of the rows the bodies give must equal), and a row naming an
/// entry past the current head, if any.
pub(super) async fn stored_sum(
    store: &AnyStore,
    hasher: &RowHasher,
    head: i64,
) -> Result<(RowsDigest, Option<Problem>), StoreError> {
    let mut sum = RowsDigest::default();
    let mut after = 0;
    while after < head {
        let upto = (after + PAGE).min(head);
        for (seq, s) in store.summaries(&range(after, Some(upto))).await? {
            sum.add(hasher.summary(seq, &s));
        }
        after = upto;
    }
    Ok((sum, beyond_head(store, head).await?))
}

/// A row naming an entry that is not stored (past the head: entries
/// appended since the check began have their rows, so only rows past the
/// current head are extra).
async fn beyond_head(store: &AnyStore, head: i64) -> Result<Option<Problem>, StoreError> {
    let now = store.head().await?.seq.max(head);
    let beyond = store.summaries(&range(now, None)).await?;
    Ok(beyond
        .first()
        .map(|(seq, _)| mismatch(*seq, "a summary row names an entry that is not stored")))
}

/// The sums differed but no page did (rows changed while they were read).
pub(super) fn somewhere(head: i64) -> Problem {
    mismatch(
        head,
        "the summary rows differ from the ones the bodies give",
    )
}

/// The first entry (up to `head`) whose summary rows differ from the ones
/// its body gives. Values are not named: they may be patient data.
pub(super) async fn first_problem(
    store: &AnyStore,
    summarizer: SummaryFn,
    head: i64,
) -> Result<Option<Problem>, StoreError> {
    let mut after = 0;
    while after < head {
        let page = store.entries_after(after, PAGE.min(head - after)).await?;
        let Some(last) = page.last() else { break };
        let upto = last.seq;
        let expected = derive(&page, summarizer);
        let stored = store.summaries(&range(after, Some(upto))).await?;
        if let Some(p) = compare(&expected, &stored) {
            return Ok(Some(p));
        }
        after = upto;
    }
    beyond_head(store, head).await
}

fn range(after: i64, upto: Option<i64>) -> SummaryQuery {
    SummaryQuery {
        seq_after: Some(after),
        seq_upto: upto,
        with_patient: true,
        ..Default::default()
    }
}

fn mismatch(seq: i64, what: &str) -> Problem {
    problem(seq, ProblemKind::SummaryMismatch, what.to_string())
}

/// The first difference between two seq-ordered row lists.
fn compare(expected: &[(i64, Summary)], stored: &[(i64, Summary)]) -> Option<Problem> {
    let (mut e, mut s) = (expected.iter().peekable(), stored.iter().peekable());
    loop {
        match (e.peek(), s.peek()) {
            (None, None) => return None,
            (Some((seq, _)), None) => {
                return Some(mismatch(*seq, "the entry's summary row is missing"))
            }
            (None, Some((seq, _))) => {
                return Some(mismatch(
                    *seq,
                    "a summary row is stored for an entry that has none",
                ))
            }
            (Some((es, ev)), Some((ss, sv))) => {
                if es < ss {
                    return Some(mismatch(*es, "the entry's summary row is missing"));
                }
                if ss < es {
                    return Some(mismatch(
                        *ss,
                        "a summary row is stored for an entry that has none",
                    ));
                }
                if ev != sv {
                    return Some(mismatch(
                        *es,
                        "the entry's summary row differs from the one its body gives",
                    ));
                }
                e.next();
                s.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::summary::SummaryKind;

    fn row(seq: i64, action: &str) -> (i64, Summary) {
        let mut s = Summary::new(SummaryKind::Override, format!("e{seq}"), "t".into(), 0);
        s.action = Some(action.into());
        (seq, s)
    }

    #[test]
    fn the_first_missing_extra_or_altered_row_is_named() {
        let good = vec![row(2, "accept"), row(4, "reject"), row(7, "accept")];
        assert_eq!(compare(&good, &good), None);
        let missing = vec![row(2, "accept"), row(7, "accept")];
        assert_eq!(compare(&good, &missing).map(|p| p.seq), Some(4));
        let extra = vec![row(2, "accept"), row(3, "accept"), row(4, "reject")];
        assert_eq!(compare(&good[..2], &extra).map(|p| p.seq), Some(3));
        let altered = vec![row(2, "accept"), row(4, "accept"), row(7, "accept")];
        let p = compare(&good, &altered).expect("a problem");
        assert_eq!((p.seq, p.kind), (4, ProblemKind::SummaryMismatch));
    }
}
