//! The RFC 6962 / RFC 9162 Merkle tree over the entries' bodies, kept as
//! stored complete subtrees so the root at any size and any proof need only
//! O(log n) reads.
//!
//! A *node* `(level, index)` is the root of the complete subtree over leaves
//! `[index·2^level, (index+1)·2^level)` (0-based). Level 0 nodes are the
//! entries' leaf hashes (column `entry.leaf_hash`). Of the levels above, only
//! every [`STORED_EVERY`]th is stored, in the insert-only `merkle_node` table,
//! each node written once, when its last leaf is appended; a node between two
//! stored levels is folded from at most 2^(STORED_EVERY-1) stored nodes below
//! it, read with one range query. Any range the RFC's recursion produces
//! splits into at most log n nodes, which is why reads stay logarithmic.

use crate::hash::{node_hash, Hash};

/// One complete subtree: `(level, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

/// Every how many levels complete subtrees are stored. Storing every level
/// costs one row insert per appended entry (measured: 18 % of SQLite's append
/// throughput for small events); every fourth costs one per 15 entries, and a
/// node in between is folded from at most 8 stored ones.
pub const STORED_EVERY: u32 = 4;

/// Whether nodes of `level` are stored (level 0: in the entry rows).
pub fn is_stored(level: u32) -> bool {
    level.is_multiple_of(STORED_EVERY)
}

/// The stored nodes a node's hash is folded from: `count` consecutive nodes
/// of `level`, starting at `first` (just the node itself at a stored level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSpan {
    pub level: u32,
    pub first: u64,
    pub count: u64,
}

impl NodeId {
    pub fn stored_span(self) -> StoredSpan {
        let down = self.level % STORED_EVERY;
        StoredSpan {
            level: self.level - down,
            first: self.index << down,
            count: 1 << down,
        }
    }
}

/// The root of a complete subtree from all its descendants at one level,
/// left to right (`None` unless their number is a power of two).
pub fn fold_complete(hashes: &[Hash]) -> Option<Hash> {
    if !hashes.len().is_power_of_two() {
        return None;
    }
    let mut layer = hashes.to_vec();
    while layer.len() > 1 {
        layer = layer
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    layer.first().copied()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees whose fold is the RFC hash of leaves `[lo, hi)`,
/// left to right. `lo` must be aligned as the RFC recursion leaves it (a
/// multiple of the smallest power of two ≥ hi - lo, or 0).
pub fn range_nodes(lo: u64, hi: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut at = lo;
    let mut left = hi - lo;
    while left > 0 {
        let level = 63 - left.leading_zeros();
        out.push(NodeId {
            level,
            index: at >> level,
        });
        at += 1 << level;
        left -= 1 << level;
    }
    out
}

/// Folds the hashes of `range_nodes(lo, hi)` into the range's RFC hash:
/// MTH splits at the largest power of two, so the fold runs right to left.
pub fn fold(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The frontier of a tree of `size` leaves: the roots of its complete
/// subtrees for the set bits of `size`, left to right.
pub fn frontier_ids(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// Appends leaves to a tree of `size` leaves whose frontier hashes are
/// `frontier` (as [`frontier_ids`]). Returns the complete nodes of stored
/// levels ≥ 1 that the new leaves complete (to store) and the new frontier.
pub fn extend(size: u64, frontier: &[Hash], leaves: &[Hash]) -> (Vec<(NodeId, Hash)>, Vec<Hash>) {
    let mut acc = Accumulator::from_frontier(size, frontier);
    let mut created = Vec::new();
    for leaf in leaves {
        acc.push_reporting(*leaf, |id, h| created.push((id, *h)));
    }
    (created, acc.stack.into_iter().map(|(_, h)| h).collect())
}

/// The RFC hash of the first `size` leaves given their frontier hashes.
pub fn root_from_frontier(frontier: &[Hash]) -> Hash {
    fold(frontier).unwrap_or_else(empty_root)
}

/// MTH of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    crate::hash::body_sha256(b"")
}

/// The leaf ranges whose hashes form the inclusion proof of leaf `m` in a
/// tree of `n` leaves (RFC 9162 §2.1.3.1), bottom-up.
pub fn inclusion_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0u64, n);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m - lo < k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out.reverse();
    out
}

/// The leaf ranges whose hashes form the consistency proof from `m` to `n`
/// leaves (RFC 9162 §2.1.4.1, SUBPROOF with b = true), in proof order.
pub fn consistency_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if m == 0 || m >= n {
        return out;
    }
    // Walk down from D[0:n], remembering the siblings; SUBPROOF appends them
    // after the recursion's result, so collect and reverse.
    let (mut lo, mut hi, mut mm, mut b) = (0u64, n, m, true);
    let mut tail = Vec::new();
    loop {
        if mm == hi - lo {
            if !b {
                out.push((lo, hi));
            }
            break;
        }
        let k = split(hi - lo);
        if mm <= k {
            tail.push((lo + k, hi));
            hi = lo + k;
        } else {
            tail.push((lo, lo + k));
            mm -= k;
            lo += k;
            b = false;
        }
    }
    out.extend(tail.into_iter().rev());
    out
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *first_root && sr == *second_root
}

/// A tree built one leaf at a time in memory (verify, export checks).
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    size: u64,
    stack: Vec<(u32, Hash)>,
}

impl Accumulator {
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _| {});
    }

    /// [`Accumulator::push`], handing each complete node of a stored level
    /// (≥ 1) that the leaf completes to `stored` (what the append stores).
    pub fn push_reporting(&mut self, leaf: Hash, mut stored: impl FnMut(NodeId, &Hash)) {
        // The frontier as a stack of (level, hash): merging equal levels is
        // exactly binary addition of one leaf.
        let mut cur = (0u32, leaf);
        let n = self.size + 1;
        while let Some(&(level, h)) = self.stack.last() {
            if level != cur.0 {
                break;
            }
            self.stack.pop();
            cur = (level + 1, node_hash(&h, &cur.1));
            if is_stored(cur.0) {
                let id = NodeId {
                    level: cur.0,
                    index: (n >> cur.0) - 1,
                };
                stored(id, &cur.1);
            }
        }
        self.stack.push(cur);
        self.size = n;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Continues a tree of `size` leaves from its frontier hashes.
    pub fn from_frontier(size: u64, frontier: &[Hash]) -> Self {
        Accumulator {
            size,
            stack: frontier_ids(size)
                .into_iter()
                .zip(frontier.iter().copied())
                .map(|(id, h)| (id.level, h))
                .collect(),
        }
    }

    pub fn root(&self) -> Hash {
        let hs: Vec<Hash> = self.stack.iter().map(|(_, h)| *h).collect();
        root_from_frontier(&hs)
    }
}

/// The RFC hash of all `leaves`, computed directly (tests, export verify).
pub fn root_of(leaves: &[Hash]) -> Hash {
    let (_, frontier) = extend(0, &[], leaves);
    root_from_frontier(&frontier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    /// MTH exactly as RFC 6962 §2.1 defines it (recursive, no shortcuts).
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn rfc_leaves() -> Vec<Hash> {
        // The RFC 6962 test inputs used by Certificate Transparency's
        // reference implementations.
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        inputs.iter().map(|b| leaf_hash(b)).collect()
    }

    #[test]
    fn rfc6962_roots() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = rfc_leaves();
        for (i, e) in expected.iter().enumerate() {
            assert_eq!(hex::encode(root_of(&leaves[..=i])), *e, "size {}", i + 1);
            assert_eq!(hex::encode(mth(&leaves[..=i])), *e, "size {}", i + 1);
        }
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn rfc6962_inclusion_vector() {
        // Leaf 0 in the 8-leaf tree (RFC 6962 test data).
        let leaves = rfc_leaves();
        let proof = proof_hashes(&leaves, &inclusion_ranges(0, 8));
        let got: Vec<String> = proof.iter().map(hex::encode).collect();
        assert_eq!(
            got,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
    }

    #[test]
    fn rfc6962_consistency_vector() {
        // 1 → 8 and 6 → 8 (RFC 6962 test data).
        let leaves = rfc_leaves();
        let p = proof_hashes(&leaves, &consistency_ranges(6, 8));
        let got: Vec<String> = p.iter().map(hex::encode).collect();
        assert_eq!(
            got,
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        );
        let p = proof_hashes(&leaves, &consistency_ranges(1, 8));
        assert_eq!(p.len(), 3);
    }

    fn proof_hashes(leaves: &[Hash], ranges: &[(u64, u64)]) -> Vec<Hash> {
        ranges
            .iter()
            .map(|&(lo, hi)| {
                let ids = range_nodes(lo, hi);
                let hs: Vec<Hash> = ids
                    .iter()
                    .map(|id| {
                        let a = (id.index << id.level) as usize;
                        mth(&leaves[a..a + (1usize << id.level)])
                    })
                    .collect();
                let via_nodes = fold(&hs).unwrap();
                assert_eq!(via_nodes, mth(&leaves[lo as usize..hi as usize]));
                via_nodes
            })
            .collect()
    }

    #[test]
    fn all_proofs_verify_and_tampered_ones_fail() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() as u64 {
            let root = mth(&leaves[..n as usize]);
            for m in 0..n {
                let p = proof_hashes(&leaves, &inclusion_ranges(m, n));
                assert!(verify_inclusion(m, n, &leaves[m as usize], &p, &root));
                assert!(!verify_inclusion(
                    m,
                    n,
                    &leaves[(m as usize + 1) % 70],
                    &p,
                    &root
                ));
                if !p.is_empty() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(m, n, &leaves[m as usize], &bad, &root));
                }
            }
            for m in 1..=n {
                let first = mth(&leaves[..m as usize]);
                let p = proof_hashes(&leaves, &consistency_ranges(m, n));
                assert!(verify_consistency(m, n, &first, &root, &p), "{m}->{n}");
                if m < n {
                    let mut bad = p.clone();
                    bad.last_mut().unwrap()[0] ^= 1;
                    assert!(!verify_consistency(m, n, &first, &root, &bad));
                    assert!(!verify_consistency(m, n, &root, &first, &p));
                }
            }
        }
    }

    #[test]
    fn extend_matches_batches_and_stores_the_complete_nodes_of_stored_levels() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut size = 0u64;
        let mut frontier = Vec::new();
        let mut nodes = std::collections::HashMap::new();
        for chunk in leaves.chunks(5) {
            let (created, f) = extend(size, &frontier, chunk);
            nodes.extend(created);
            frontier = f;
            size += chunk.len() as u64;
            assert_eq!(root_from_frontier(&frontier), mth(&leaves[..size as usize]));
        }
        for (id, h) in &nodes {
            let a = (id.index << id.level) as usize;
            assert_eq!(*h, mth(&leaves[a..a + (1usize << id.level)]));
        }
        // 37 leaves: 18 + 9 + 4 + 2 + 1 complete nodes above the leaves, of
        // which the two of level 4 are stored.
        let mut ids: Vec<NodeId> = nodes.keys().copied().collect();
        ids.sort();
        assert_eq!(
            ids,
            [NodeId { level: 4, index: 0 }, NodeId { level: 4, index: 1 }]
        );
    }

    #[test]
    fn every_node_folds_from_its_stored_span() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let (stored, _) = extend(0, &[], &leaves);
        let stored: std::collections::HashMap<NodeId, Hash> = stored.into_iter().collect();
        for level in 0..=8u32 {
            for index in 0..(300u64 >> level) {
                let id = NodeId { level, index };
                let span = id.stored_span();
                assert!(is_stored(span.level) && span.level <= level);
                assert!(span.count <= 1 << (STORED_EVERY - 1));
                let below: Vec<Hash> = (span.first..span.first + span.count)
                    .map(|i| match span.level {
                        0 => leaves[i as usize],
                        l => stored[&NodeId { level: l, index: i }],
                    })
                    .collect();
                let a = (index << level) as usize;
                assert_eq!(
                    fold_complete(&below),
                    Some(mth(&leaves[a..a + (1usize << level)])),
                    "{id:?}"
                );
            }
        }
        assert_eq!(fold_complete(&leaves[..3]), None);
        assert_eq!(fold_complete(&[]), None);
    }
}
