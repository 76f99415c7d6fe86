//! The caller's W3C trace context, recorded in the event so an audit event
//! can be joined with the traces of the request that recorded it: one
//! entity (System Object) whose `what.identifier` is the trace id under
//! [`TRACE_CONTEXT_SYSTEM`] (so `entity.identifier=<system>|<trace id>`
//! finds it) and whose `detail` `traceparent` holds the whole header value.
//! The edge passes only a value it has checked; this adds, never replaces,
//! so what the client wrote stays as written.

use vellum_json::{Json, Value};

use crate::vocabulary::{ENTITY_TYPE, TRACE_CONTEXT_SYSTEM};

/// `detail.type` of the recorded header value.
pub const TRACEPARENT_DETAIL: &str = "traceparent";

/// A `traceparent` value in the version-00 form
/// `00-<32 lowercase hex>-<16 lowercase hex>-<2 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParentValue(String);

impl TraceParentValue {
    /// Builds the value from its checked parts.
    pub fn new(trace_id: &[u8; 16], parent_id: &[u8; 8], flags: u8) -> Self {
        TraceParentValue(format!(
            "00-{}-{}-{flags:02x}",
            hex::encode(trace_id),
            hex::encode(parent_id)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 hex digits of the trace id.
    fn trace_id(&self) -> &str {
        self.0.get(3..35).unwrap_or_default()
    }
}

/// Appends the trace-context entity to the event.
pub fn stamp(root: &mut Json, trace: &TraceParentValue) {
    let entity = serde_json::json!({
        "what": {"identifier": {"system": TRACE_CONTEXT_SYSTEM, "value": trace.trace_id()}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "description": "W3C trace context of the request that recorded this event",
        "detail": [{"type": TRACEPARENT_DETAIL, "valueString": trace.as_str()}],
    });
    let Ok(entity) = vellum_json::parse(entity.to_string().as_bytes()) else {
        return;
    };
    let mut entities: Vec<Json> = root
        .get("entity")
        .and_then(Json::as_array)
        .map(|a| a.to_vec())
        .unwrap_or_default();
    entities.push(entity);
    root.set("entity", Json::new(Value::Array(entities)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entity_carries_the_trace_id_and_the_header() {
        let t = TraceParentValue::new(&[0x4b; 16], &[0x01; 8], 1);
        assert_eq!(
            t.as_str(),
            "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0101010101010101-01"
        );
        let mut root = vellum_json::parse(br#"{"entity":[{"name":"keep"}]}"#).unwrap();
        stamp(&mut root, &t);
        let entities = root.get("entity").unwrap().as_array().unwrap();
        assert_eq!(entities.len(), 2);
        assert_eq!(entities[0].get("name").unwrap().as_str(), Some("keep"));
        let added = &entities[1];
        let id = added.get("what").unwrap().get("identifier").unwrap();
        assert_eq!(
            id.get("value").unwrap().as_str(),
            Some("4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b")
        );
        let detail = &added.get("detail").unwrap().as_array().unwrap()[0];
        assert_eq!(
            detail.get("valueString").unwrap().as_str(),
            Some(t.as_str())
        );
    }
}
