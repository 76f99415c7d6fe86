//! Bundles vellum returns: `searchset` (search results with paging links)
//! and the responses to `batch` / `transaction` Bundles. Stored bodies are
//! spliced in byte for byte; only the envelope is built here.

use serde_json::{json, Value};

use super::outcome::OperationOutcome;
use vellum_json as canonical;

/// One link of a searchset.
#[derive(Debug, Clone)]
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

/// A search match: the resource's full URL and its JSON body.
pub struct Match<'a> {
    pub full_url: String,
    pub body: &'a str,
}

/// Writes a searchset Bundle. `outcome` (ignored parameters) becomes an
/// entry with `search.mode = outcome`.
pub fn searchset(
    id: &str,
    last_updated: &str,
    total: Option<i64>,
    links: &[Link],
    matches: &[Match<'_>],
    outcome: Option<&OperationOutcome>,
) -> String {
    let body_bytes: usize = matches
        .iter()
        .map(|m| m.body.len() + m.full_url.len() + 64)
        .sum();
    let mut out = String::with_capacity(512 + body_bytes);
    out.push_str(r#"{"resourceType":"Bundle","id":"#);
    canonical::write_string(&mut out, id);
    out.push_str(r#","meta":{"lastUpdated":"#);
    canonical::write_string(&mut out, last_updated);
    out.push_str(r#"},"type":"searchset""#);
    if let Some(t) = total {
        out.push_str(&format!(r#","total":{t}"#));
    }
    out.push_str(r#","link":["#);
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"relation":"#);
        canonical::write_string(&mut out, l.relation);
        out.push_str(r#","url":"#);
        canonical::write_string(&mut out, &l.url);
        out.push('}');
    }
    out.push(']');
    if !matches.is_empty() || outcome.is_some() {
        out.push_str(r#","entry":["#);
        let mut first = true;
        for m in matches {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(r#"{"fullUrl":"#);
            canonical::write_string(&mut out, &m.full_url);
            out.push_str(r#","resource":"#);
            out.push_str(m.body);
            out.push_str(r#","search":{"mode":"match"}}"#);
        }
        if let Some(oo) = outcome {
            if !first {
                out.push(',');
            }
            out.push_str(r#"{"resource":"#);
            out.push_str(&oo.to_json().to_string());
            out.push_str(r#","search":{"mode":"outcome"}}"#);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// Keeps only the top-level `elements` (plus the mandatory `resourceType`,
/// `id` and `meta`) and marks the copy SUBSETTED (R4 §3.1.1.5.9). The
/// result is not the stored body, so it is not what the hashes cover.
pub fn subset(body: &str, elements: &[String]) -> String {
    let Ok(mut root) = canonical::parse(body.as_bytes()) else {
        return body.to_string();
    };
    if let canonical::Value::Object(members) = &mut root.value {
        members.retain(|m| {
            matches!(m.key.as_str(), "resourceType" | "id" | "meta")
                || elements
                    .iter()
                    .any(|e| e == m.key.strip_prefix('_').unwrap_or(&m.key))
        });
    }
    if let Some(meta) = root.object_entry("meta") {
        let tag = canonical::parse(
            br#"{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}"#,
        );
        if let Ok(tag) = tag {
            let mut tags: Vec<canonical::Json> = meta
                .get("tag")
                .and_then(|t| t.as_array())
                .map(<[_]>::to_vec)
                .unwrap_or_default();
            tags.push(tag);
            meta.set("tag", canonical::Json::new(canonical::Value::Array(tags)));
        }
    }
    String::from_utf8(canonical::to_canonical(&root)).unwrap_or_default()
}

/// One entry of a batch/transaction response.
#[derive(Debug, Clone)]
pub struct ResponseEntry {
    /// "201 Created", "200 OK", "400 Bad Request", …
    pub status: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub full_url: Option<String>,
    /// The created/existing resource (spliced as is).
    pub resource: Option<String>,
    pub outcome: Option<OperationOutcome>,
}

/// A `batch-response` or `transaction-response` Bundle.
pub fn response_bundle(
    kind: &str,
    id: &str,
    last_updated: &str,
    entries: &[ResponseEntry],
) -> String {
    let mut out = String::with_capacity(
        256 + entries
            .iter()
            .map(|e| e.resource.as_ref().map_or(256, |r| r.len() + 256))
            .sum::<usize>(),
    );
    out.push_str(r#"{"resourceType":"Bundle","id":"#);
    canonical::write_string(&mut out, id);
    out.push_str(r#","meta":{"lastUpdated":"#);
    canonical::write_string(&mut out, last_updated);
    out.push_str(r#"},"type":"#);
    canonical::write_string(&mut out, kind);
    out.push_str(r#","entry":["#);
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        if let Some(u) = &e.full_url {
            out.push_str(r#""fullUrl":"#);
            canonical::write_string(&mut out, u);
            out.push(',');
        }
        if let Some(r) = &e.resource {
            out.push_str(r#""resource":"#);
            out.push_str(r);
            out.push(',');
        }
        let mut response = json!({ "status": e.status });
        if let Some(l) = &e.location {
            response["location"] = Value::String(l.clone());
        }
        if let Some(t) = &e.etag {
            response["etag"] = Value::String(t.clone());
        }
        if let Some(m) = &e.last_modified {
            response["lastModified"] = Value::String(m.clone());
        }
        if let Some(oo) = &e.outcome {
            response["outcome"] = oo.to_json();
        }
        out.push_str(r#""response":"#);
        out.push_str(&response.to_string());
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searchset_is_valid_json_with_spliced_bodies() {
        let body = r#"{"id":"a","resourceType":"AuditEvent","x":0.940}"#;
        let s = searchset(
            "b1",
            "2026-01-01T00:00:00.000000Z",
            Some(1),
            &[Link {
                relation: "self",
                url: "http://h/fhir/AuditEvent?x=1".into(),
            }],
            &[Match {
                full_url: "http://h/fhir/AuditEvent/a".into(),
                body,
            }],
            None,
        );
        assert!(s.contains(body));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["total"], 1);
        assert_eq!(v["entry"][0]["search"]["mode"], "match");
    }

    #[test]
    fn subset_keeps_mandatory_elements_and_tags() {
        let s = subset(
            r#"{"action":"E","id":"a","meta":{"versionId":"1"},"recorded":"2026","resourceType":"AuditEvent"}"#,
            &["action".to_string()],
        );
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["action"], "E");
        assert!(v.get("recorded").is_none());
        assert_eq!(v["meta"]["tag"][0]["code"], "SUBSETTED");
    }
}
