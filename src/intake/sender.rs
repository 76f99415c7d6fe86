//! The authenticated sender of an event: recorded in the event as a
//! `meta.tag` (system `…/CodeSystem/submitter`, code = the subject; any
//! tag of that system the sender wrote itself is replaced, so it cannot be
//! forged), and the scope of idempotency keys and `If-None-Exist`.

use vellum_json::{Json, Member, Value};

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

fn string(s: &str) -> Json {
    Json::new(Value::String(s.to_string()))
}

/// Sets the submitter tag on the event (`meta.tag`).
pub fn stamp(root: &mut Json, subject: &str) {
    let Some(meta) = root.object_entry("meta") else {
        return;
    };
    let mut tags: Vec<Json> = meta
        .get("tag")
        .and_then(Json::as_array)
        .map(|a| a.to_vec())
        .unwrap_or_default();
    tags.retain(|t| t.get("system").and_then(Json::as_str) != Some(SUBMITTER_SYSTEM));
    let member = |key: &str, value: Json| Member {
        key: key.to_string(),
        key_start: 0,
        value,
    };
    tags.push(Json::new(Value::Object(vec![
        member("system", string(SUBMITTER_SYSTEM)),
        member("code", string(subject)),
    ])));
    meta.set("tag", Json::new(Value::Array(tags)));
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
