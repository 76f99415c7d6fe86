//! Candidate entries for the per-study and per-patient lists, found through
//! the search index instead of a walk over every body: the lists then
//! apply their own exact rules to the candidates' bodies, in ledger order.

use std::collections::BTreeMap;

use vellum_ledger::store::search::{
    Condition, Cursor, RowMatch, SearchQuery, Selectivity, SortKey, SystemMatch,
};
use vellum_ledger::store::{StoreError, StoredEntry};
use vellum_ledger::Ledger;

/// Hits read per search page.
const PAGE: i64 = 2000;

/// A narrow condition: some index row of `param` matches one of `any`.
pub fn has(param: &str, any: Vec<RowMatch>) -> Condition {
    Condition::Has {
        param: param.to_string(),
        any,
        negate: false,
        selectivity: Selectivity::Narrow,
    }
}

/// An identifier value of any system.
pub fn value(v: &str) -> RowMatch {
    RowMatch::Value {
        val: v.to_string(),
        sys: SystemMatch::Any,
    }
}

/// Every entry up to `head` matching `cond`, added to `out` by seq.
pub async fn collect(
    ledger: &Ledger,
    cond: Condition,
    head: i64,
    out: &mut BTreeMap<i64, StoredEntry>,
) -> Result<Vec<i64>, StoreError> {
    let mut cursor = None;
    let mut added = Vec::new();
    loop {
        let q = SearchQuery {
            conditions: vec![cond.clone()],
            sort: SortKey::Seq,
            descending: false,
            head,
            cursor,
            limit: PAGE,
        };
        let hits = ledger.search(&q).await?;
        let full = hits.len() as i64 >= PAGE;
        cursor = hits.last().map(|h| Cursor {
            key: h.sort_key,
            seq: h.entry.seq,
            forward: true,
        });
        for h in hits {
            let seq = h.entry.seq;
            if let std::collections::btree_map::Entry::Vacant(slot) = out.entry(seq) {
                added.push(seq);
                slot.insert(h.entry);
            }
        }
        if !full || cursor.is_none() {
            return Ok(added);
        }
    }
}
