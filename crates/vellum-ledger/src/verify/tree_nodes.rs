//! Every stored Merkle tree node against the tree the entries give.
//!
//! Roots and proofs are folded from the stored nodes, so an altered,
//! missing or extra node would make vellum serve proofs that fail for some
//! entries, though the frontier check of the root would not see it. The walk
//! adds each node its fold completes (at the stored levels) to a keyed sum
//! per block of [`BLOCK_LEAVES`] entries; the stored nodes are summed per
//! block alike, one page at a time. Nothing is held per node, and a
//! difference is named by its block's first entry.

use std::collections::BTreeMap;

use crate::merkle::NodeId;
use crate::store::stream::{RowHasher, RowsDigest};

/// Entries per block that a difference is narrowed to.
pub(super) const BLOCK_LEAVES: u64 = 4096;

/// Keyed sums of nodes, per block of entries (the block of a node's first
/// leaf).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct NodeDigests(BTreeMap<u64, RowsDigest>);

impl NodeDigests {
    pub fn add(&mut self, hasher: &RowHasher, id: NodeId, hash: &[u8]) {
        let block = id.index.checked_shl(id.level).unwrap_or(u64::MAX) / BLOCK_LEAVES;
        self.0.entry(block).or_default().add(hasher.node(id, hash));
    }

    /// The first entry (seq) of the first block whose nodes differ.
    pub fn first_difference(&self, other: &NodeDigests) -> Option<i64> {
        let differs = |b: &u64| self.0.get(b) != other.0.get(b);
        let first = self
            .0
            .keys()
            .chain(other.0.keys())
            .filter(|b| differs(b))
            .min()?;
        Some((first.saturating_mul(BLOCK_LEAVES)).min(i64::MAX as u64 - 1) as i64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, Hash};
    use crate::merkle::{extend, Accumulator};

    fn walked(leaves: &[Hash], hasher: &RowHasher) -> NodeDigests {
        let mut acc = Accumulator::default();
        let mut d = NodeDigests::default();
        for l in leaves {
            acc.push_reporting(*l, |id, h| d.add(hasher, id, h));
        }
        d
    }

    #[test]
    fn the_walk_gives_the_nodes_the_append_stores_and_names_a_changed_block() {
        let leaves: Vec<_> = (0u32..10_000)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let hasher = RowHasher::default();
        let (stored, _) = extend(0, &[], &leaves);
        let mut from_store = NodeDigests::default();
        for (id, h) in &stored {
            from_store.add(&hasher, *id, h);
        }
        let from_walk = walked(&leaves, &hasher);
        assert_eq!(from_walk.first_difference(&from_store), None);
        assert_eq!(from_walk, from_store);

        // One altered node of level 4 over entries 4,097..4,112.
        let mut altered = NodeDigests::default();
        for (id, h) in &stored {
            let mut h = *h;
            if id.level == 4 && id.index == 256 {
                h[0] ^= 1;
            }
            altered.add(&hasher, *id, &h);
        }
        assert_eq!(from_walk.first_difference(&altered), Some(4097));

        // A missing node of level 8 over entries 1..256.
        let mut missing = NodeDigests::default();
        for (id, h) in stored
            .iter()
            .filter(|(id, _)| id.level != 8 || id.index != 0)
        {
            missing.add(&hasher, *id, h);
        }
        assert_eq!(missing.first_difference(&from_walk), Some(1));
    }
}
