//! The idempotency key an event was stored under, recorded in the event
//! itself: a `meta.tag` whose code is the hex SHA-256 of the key's stem
//! (the key without the digest of the request it was made from). The body
//! thus tells `verify` which key its entry must carry — so a deleted key
//! row, which would let a retry store the event twice, is found — without
//! holding the key, which may name a patient (an `If-None-Exist` key). A
//! tag of that system the client wrote itself is always removed: it could
//! otherwise make `verify` expect a key nobody stored.

use sha2::{Digest, Sha256};
use vellum_json::Json;
use vellum_ledger::store::{ExpectedKey, RowRef};

use crate::vocabulary::IDEMPOTENCY_KEY_SYSTEM;

pub use crate::intake::sender::DIGEST_SEPARATOR;

/// Replaces any key tag in the event by the one of `stem` (none without).
pub fn stamp(root: &mut Json, stem: Option<&str>) {
    let code = stem.map(|stem| hex::encode(Sha256::digest(stem.as_bytes())));
    super::tags::replace(root, IDEMPOTENCY_KEY_SYSTEM, code.as_deref());
}

/// The key a stored body says its entry carries, from one of the body's
/// index rows: `Some` for the `_tag` row of the key tag. A body with no such
/// row names none — events stored without a key, and those stored before
/// keys were recorded.
pub fn expected_key(row: &RowRef<'_>) -> Option<ExpectedKey> {
    if row.param != "_tag" || row.sys != Some(IDEMPOTENCY_KEY_SYSTEM) {
        return None;
    }
    let stem_sha256 = row
        .val
        .and_then(|v| hex::decode(v).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        // A malformed tag expects a key no stored key can match.
        .unwrap_or_default();
    Some(ExpectedKey {
        stem_sha256,
        separator: DIGEST_SEPARATOR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(root: &Json) -> Vec<(String, String)> {
        root.get("meta")
            .and_then(|m| m.get("tag"))
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(|t| {
                        (
                            t.get("system").and_then(Json::as_str).unwrap_or("").into(),
                            t.get("code").and_then(Json::as_str).unwrap_or("").into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_forged_key_tag_is_replaced_or_removed() {
        let src = format!(
            r#"{{"meta":{{"tag":[{{"system":"{IDEMPOTENCY_KEY_SYSTEM}","code":"00"}},{{"system":"urn:x","code":"keep"}}]}}}}"#
        );
        let mut root = vellum_json::parse(src.as_bytes()).unwrap();
        stamp(&mut root, Some("ai-inference:e1"));
        let t = tags(&root);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0], ("urn:x".into(), "keep".into()));
        assert_eq!(
            t[1].1,
            hex::encode(Sha256::digest(b"ai-inference:e1")),
            "the code is the stem's SHA-256, never the key"
        );
        let mut root = vellum_json::parse(src.as_bytes()).unwrap();
        stamp(&mut root, None);
        assert_eq!(tags(&root), vec![("urn:x".to_string(), "keep".to_string())]);
        let mut bare = vellum_json::parse(br#"{"meta":{"versionId":"1"}}"#).unwrap();
        stamp(&mut bare, None);
        assert!(bare.get("meta").unwrap().get("tag").is_none());
    }

    #[test]
    fn the_expected_key_matches_the_stem_with_or_without_a_digest() {
        let stem = "ai-inference:e1\u{1f}pacs";
        let val = hex::encode(Sha256::digest(stem.as_bytes()));
        let row = RowRef {
            param: "_tag",
            sys: Some(IDEMPOTENCY_KEY_SYSTEM),
            val: Some(&val),
            ..Default::default()
        };
        let e = expected_key(&row).unwrap();
        assert!(e.matches(stem));
        assert!(e.matches(&format!("{stem}{DIGEST_SEPARATOR}{}", "ab".repeat(32))));
        assert!(!e.matches("ai-inference:e2\u{1f}pacs"));
        // Other rows name no key.
        assert!(expected_key(&RowRef {
            sys: Some("urn:other"),
            ..row
        })
        .is_none());
        assert!(expected_key(&RowRef {
            param: "action",
            ..row
        })
        .is_none());
    }
}
