//! `vellum verify`: recompute every body hash and chain link.

use serde::Serialize;

use super::hash::{self, Hash};
use crate::store::{Store, StoreError};

/// Entries read per page while verifying.
const PAGE: i64 = 2000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Entries checked.
    pub entries: i64,
    /// Hex chain hash of the last entry (all zeros when empty).
    pub head_chain_hash: String,
    /// The first problem found, if any.
    pub problem: Option<Problem>,
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
}

/// Walks the whole chain in seq order.
pub async fn verify(store: &impl Store) -> Result<Verdict, StoreError> {
    let mut prev: Hash = hash::GENESIS;
    let mut expected_seq = 1i64;
    let mut after = 0i64;
    loop {
        let page = store.entries_after(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            let problem = |kind, detail: String| Verdict {
                entries: expected_seq - 1,
                head_chain_hash: hex::encode(prev),
                problem: Some(Problem {
                    seq: e.seq,
                    kind,
                    detail,
                }),
            };
            if e.seq != expected_seq {
                return Ok(problem(
                    ProblemKind::EntryMissing,
                    format!("expected seq {expected_seq}, found {}", e.seq),
                ));
            }
            let body_sha = hash::body_sha256(e.body.as_bytes());
            if e.body_sha256 != body_sha {
                return Ok(problem(
                    ProblemKind::BodyModified,
                    "body does not match body_sha256".into(),
                ));
            }
            let link = hash::chain_hash(&prev, e.seq as u64, &body_sha);
            if e.chain_hash != link {
                return Ok(problem(
                    ProblemKind::ChainBroken,
                    "chain_hash does not link to the previous entry".into(),
                ));
            }
            prev = link;
            expected_seq += 1;
            after = e.seq;
        }
    }
    Ok(Verdict {
        entries: expected_seq - 1,
        head_chain_hash: hex::encode(prev),
        problem: None,
    })
}
