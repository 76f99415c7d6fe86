//! `meta.tag` entries vellum owns: one system each, set by vellum alone.
//! A tag of such a system that the sender wrote itself is always removed,
//! so it can neither be forged nor make `verify` expect something else.

use vellum_json::{Json, Member, Value};

fn member(key: &str, value: &str) -> Member {
    Member {
        key: key.to_string(),
        key_start: 0,
        value: Json::new(Value::String(value.to_string())),
    }
}

/// Replaces every tag of `system` in the event by one with `code` (by none
/// without). A body with nothing to add or remove stays as written.
pub fn replace(root: &mut Json, system: &str, code: Option<&str>) {
    let Some(meta) = root.object_entry("meta") else {
        return;
    };
    let mut tags: Vec<Json> = meta
        .get("tag")
        .and_then(Json::as_array)
        .map(|a| a.to_vec())
        .unwrap_or_default();
    let before = tags.len();
    tags.retain(|t| t.get("system").and_then(Json::as_str) != Some(system));
    if let Some(code) = code {
        tags.push(Json::new(Value::Object(vec![
            member("system", system),
            member("code", code),
        ])));
    } else if tags.len() == before {
        return;
    }
    if tags.is_empty() {
        meta.remove("tag");
    } else {
        meta.set("tag", Json::new(Value::Array(tags)));
    }
}
