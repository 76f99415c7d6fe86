//! The hash rules of docs/hashing.md, in one place. Everything that hashes an
//! entry (the writer, `verify`, proofs) calls these functions.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// chain_hash(0): 32 zero bytes.
pub const GENESIS: Hash = [0u8; 32];

/// body_sha256 = SHA-256(body), body being the canonical JSON bytes.
pub fn body_sha256(body: &[u8]) -> Hash {
    Sha256::digest(body).into()
}

/// chain_hash(seq) = SHA-256(chain_hash(seq-1) ‖ u64_be(seq) ‖ body_sha256).
pub fn chain_hash(prev: &Hash, seq: u64, body_sha256: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(body_sha256);
    h.finalize().into()
}

/// RFC 6962 / RFC 9162 leaf hash: SHA-256(0x00 ‖ body).
pub fn leaf_hash(body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

/// RFC 6962 interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Converts a stored hash column back to a fixed array.
pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers computed independently with Python's hashlib:
    //   body = b'{"resourceType":"AuditEvent"}'
    //   hashlib.sha256(body).hexdigest()
    //   hashlib.sha256(bytes(32) + (1).to_bytes(8,'big') + hashlib.sha256(body).digest()).hexdigest()
    //   hashlib.sha256(b'\x00' + body).hexdigest()
    const BODY: &[u8] = br#"{"resourceType":"AuditEvent"}"#;

    #[test]
    fn body_hash_known_answer() {
        assert_eq!(
            hex::encode(body_sha256(BODY)),
            "b0562125b3727a15e203f22a243739edf4d9e0cda22b9b00ba5706ab33c84b8e"
        );
    }

    #[test]
    fn chain_hash_known_answer() {
        let c1 = chain_hash(&GENESIS, 1, &body_sha256(BODY));
        assert_eq!(
            hex::encode(c1),
            "4fee5aaf0e46e9b8be3dbb096b40e2aef602118445d00f8f242b1307c909353c"
        );
        let c2 = chain_hash(&c1, 2, &body_sha256(BODY));
        assert_eq!(
            hex::encode(c2),
            "9ef8f85f43405bad508cfe9f030030e380c00ebb39e4eac7e1285615d6cb4acd"
        );
    }

    #[test]
    fn leaf_and_node_hash_known_answer() {
        let leaf = leaf_hash(BODY);
        assert_eq!(
            hex::encode(leaf),
            "ce0d037df8e4eb512e0450ccadc74eebb7d6b2781cf89f1eece7e307906e2ca6"
        );
        assert_eq!(
            hex::encode(node_hash(&leaf, &leaf)),
            "cf38858ee362ccad247549eb14ed96093a19b512f12cec181ebe6c2c7f93554c"
        );
    }

    #[test]
    fn empty_leaf_matches_rfc6962() {
        // RFC 6962 test vector: the hash of an empty leaf.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    /// The example of docs/hashing.md; keeps the page honest.
    #[test]
    fn docs_worked_example() {
        let input = br#"{
          "resourceType": "AuditEvent",
          "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112"},
          "action": "E",
          "recorded": "2026-01-01T00:00:00Z",
          "agent": [{"requestor": true}],
          "source": {"observer": {"display": "pacs"}},
          "id": "6f1c2a8e-2b9d-4a57-9a51-0c8f0d3c1b7e",
          "meta": {"versionId": "1", "lastUpdated": "2026-11-23T16:55:05.895198Z"}
        }"#;
        let body = vellum_json::canonicalize(input).unwrap();
        assert_eq!(body.len(), 340);
        let b = body_sha256(&body);
        assert_eq!(
            hex::encode(b),
            "d96d94c34ea9f2acd35ff26a9591f1615ce477a9928bc909fa9a5820e2c2fbfd"
        );
        assert_eq!(
            hex::encode(chain_hash(&GENESIS, 1, &b)),
            "e8fb2e14b1ddf34a301dc93b16c7b69b280a9ff4854310d5685de1d4c7d86e66"
        );
        assert_eq!(
            hex::encode(leaf_hash(&body)),
            "01b227320c4fcf175b8fb86dd3b811648f3cccd8a0626b0a63b1d88b84ef58fd"
        );
    }
}
