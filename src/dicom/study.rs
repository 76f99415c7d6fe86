//! Study digest (`study-pixel-sha256`, docs/dicom.md): the hashed instances
//! sorted by SOP Instance UID (byte order), SHA-256 over, for each, the
//! UID's ASCII bytes ‖ 0x00 ‖ its 32-byte instance digest; recorded with
//! the number of instances.
//!
//! The same instance met twice (a file copied within a folder tree, or
//! fetched from two sources) counts once: members are (UID, digest) pairs
//! de-duplicated. Two different digests under one UID both count, ordered
//! by digest, so the result never depends on the order files were found.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::digest::InstanceDigest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StudyDigest {
    pub study_instance_uid: String,
    /// Instances hashed (the NumberOfInstances extension).
    pub instances: usize,
    #[serde(serialize_with = "as_hex")]
    pub sha256: [u8; 32],
}

fn as_hex<S: serde::Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(d))
}

impl StudyDigest {
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The `pixel-sha256` detail's `valueBase64Binary`.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sha256)
    }
}

/// The study digest over `(SOP Instance UID, instance digest)` members.
pub fn study_digest<'a>(
    study_instance_uid: &str,
    members: impl IntoIterator<Item = (&'a str, [u8; 32])>,
) -> StudyDigest {
    let members: BTreeSet<(&[u8], [u8; 32])> = members
        .into_iter()
        .map(|(uid, d)| (uid.as_bytes(), d))
        .collect();
    let mut sha = Sha256::new();
    for (uid, d) in &members {
        sha.update(uid);
        sha.update([0u8]);
        sha.update(d);
    }
    StudyDigest {
        study_instance_uid: study_instance_uid.to_string(),
        instances: members.len(),
        sha256: sha.finalize().into(),
    }
}

/// One study digest per Study Instance UID among `instances` (instances
/// without a Study or SOP Instance UID belong to no study), in UID order.
pub fn study_digests<'a>(
    instances: impl IntoIterator<Item = &'a InstanceDigest>,
) -> Vec<StudyDigest> {
    let mut by_study: BTreeMap<&str, Vec<(&str, [u8; 32])>> = BTreeMap::new();
    for i in instances {
        if i.study_instance_uid.is_empty() || i.sop_instance_uid.is_empty() {
            continue;
        }
        by_study
            .entry(&i.study_instance_uid)
            .or_default()
            .push((&i.sop_instance_uid, i.sha256));
    }
    by_study
        .into_iter()
        .map(|(study, members)| study_digest(study, members))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn study_digest_is_sha256_over_sorted_uid_nul_digest() {
        // Byte order puts "1.10" before "1.2" ('1' < '2' at the third
        // byte), unlike numeric order.
        let got = study_digest("9", [("1.2", d(2)), ("1.10", d(1))]);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"1.10\0");
        expected.extend_from_slice(&d(1));
        expected.extend_from_slice(b"1.2\0");
        expected.extend_from_slice(&d(2));
        assert_eq!(got.sha256, <[u8; 32]>::from(Sha256::digest(&expected)));
        assert_eq!(got.instances, 2);
    }

    #[test]
    fn order_of_discovery_does_not_matter_and_copies_count_once() {
        let a = study_digest("s", [("1.1", d(1)), ("1.3", d(3)), ("1.2", d(2))]);
        let b = study_digest(
            "s",
            [("1.2", d(2)), ("1.1", d(1)), ("1.3", d(3)), ("1.1", d(1))],
        );
        assert_eq!(a, b);
        assert_eq!(a.instances, 3);
    }

    #[test]
    fn empty_study_hashes_nothing() {
        let e = study_digest("s", std::iter::empty());
        assert_eq!(e.instances, 0);
        assert_eq!(e.sha256, <[u8; 32]>::from(Sha256::digest(b"")));
    }
}
