//! The authenticated sender of an event: recorded in the event as a
//! `meta.tag` (system `…/CodeSystem/submitter`, code = the subject; any
//! tag of that system the sender wrote itself is replaced, so it cannot be
//! forged), and the scope of idempotency keys and `If-None-Exist`.

use vellum_json::Json;

use crate::vocabulary::SUBMITTER_SYSTEM;

pub use crate::auth::key_scope::{scoped_key, DIGEST_SEPARATOR};

/// `If-None-Exist` criteria limited to the sender's own events (`_tag`).
pub fn scoped_criteria(criteria: &[u8], sender: Option<&str>) -> Vec<u8> {
    let Some(s) = sender else {
        return criteria.to_vec();
    };
    let mut out = criteria.to_vec();
    let tag: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("_tag", &format!("{SUBMITTER_SYSTEM}|{s}"))
        .finish();
    if !out.is_empty() && !out.ends_with(b"?") && !out.ends_with(b"&") {
        out.push(b'&');
    }
    out.extend_from_slice(tag.as_bytes());
    out
}

/// Sets the submitter tag on the event (`meta.tag`).
pub fn stamp(root: &mut Json, subject: &str) {
    super::tags::replace(root, SUBMITTER_SYSTEM, Some(subject));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_submitter_tag_is_replaced() {
        let mut root = vellum_json::parse(
            br#"{"meta":{"tag":[{"system":"https://vellum-audit.org/fhir/CodeSystem/submitter","code":"someone-else"},{"system":"urn:x","code":"keep"}]}}"#,
        )
        .unwrap();
        stamp(&mut root, "pacs-01");
        let tags = root
            .get("meta")
            .unwrap()
            .get("tag")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[1].get("code").unwrap().as_str(), Some("pacs-01"));
        assert_eq!(tags[0].get("code").unwrap().as_str(), Some("keep"));
    }

    #[test]
    fn scopes_never_collide() {
        assert_ne!(
            scoped_key("ai-model:a|1", Some("x")),
            scoped_key("ai-model:a|1", Some("y"))
        );
        assert_eq!(scoped_key("k", None), "k");
        let c = scoped_criteria(b"AuditEvent?entity=abc", Some("pacs 01"));
        assert!(String::from_utf8(c).unwrap().ends_with(
            "&_tag=https%3A%2F%2Fvellum-audit.org%2Ffhir%2FCodeSystem%2Fsubmitter%7Cpacs+01"
        ));
    }
}
