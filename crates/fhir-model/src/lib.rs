//! The one place that instantiates fhirbolt's generic R4 (de)serialisers.
//!
//! fhirbolt's generated serde code is huge; every crate that monomorphises it
//! pays minutes of build time. Keeping it here behind plain, non-generic
//! functions means it is compiled once and cached while `vellum` itself changes.

use fhirbolt::model::r4::resources::AuditEvent;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};

/// A structural error reported by fhirbolt (Strict mode), with the 1-based
/// position serde_json reported, so callers can map it to a FHIRPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for StructureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for StructureError {}

fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    })
}

/// Checks that `json` is a structurally valid R4 AuditEvent: known elements
/// only, right JSON types, required single elements present.
pub fn check_audit_event_json(json: &[u8]) -> Result<(), StructureError> {
    fhirbolt::json::from_slice::<AuditEvent>(json, strict())
        .map(|_| ())
        .map_err(|e| StructureError {
            // serde_json's Display appends " at line L column C"; keep only the message.
            message: strip_position(&e.to_string()),
            line: e.line(),
            column: e.column(),
        })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_element_is_reported_with_position() {
        let err =
            check_audit_event_json(br#"{"resourceType":"AuditEvent","bogus":1}"#).unwrap_err();
        assert!(err.message.contains("bogus"), "{err}");
        assert_eq!(err.line, 1);
        assert!(err.column > 20);
    }

    #[test]
    fn minimal_audit_event_passes() {
        let ok = br#"{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z",
            "agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}"#;
        check_audit_event_json(ok).unwrap();
    }
}
