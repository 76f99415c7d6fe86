//! The one place that instantiates fhirbolt's generic R4 (de)serialisers.
//!
//! fhirbolt's generated serde code is huge; every crate that monomorphises it
//! pays minutes of build time. Keeping it here behind plain, non-generic
//! functions means it is compiled once and cached while `vellum` itself changes.

use fhirbolt::model::r4::resources::AuditEvent;
use fhirbolt::model::r4::Resource;
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

/// A resource that could not be converted between JSON and XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConvertError {}

fn convert_error(e: impl std::fmt::Display) -> ConvertError {
    ConvertError {
        message: e.to_string(),
    }
}

/// FHIR JSON of any R4 resource → FHIR XML. Parsed as `Resource` rather than
/// `Bundle` (fhirbolt 0.4 mis-parses a Bundle entry when a primitive follows
/// its nested resource, CRATES.md).
pub fn json_to_xml(json: &[u8]) -> Result<String, ConvertError> {
    let resource: Resource = fhirbolt::json::from_slice(json, strict()).map_err(convert_error)?;
    fhirbolt::xml::to_string(&resource, None).map_err(convert_error)
}

/// FHIR XML of any R4 resource → FHIR JSON (Strict mode only: fhirbolt's
/// lenient XML modes are broken and can hang, CRATES.md; callers bound the
/// input size).
pub fn xml_to_json(xml: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let resource: Resource = fhirbolt::xml::from_slice(xml, strict()).map_err(convert_error)?;
    fhirbolt::json::to_vec(&resource, None).map_err(convert_error)
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
    fn xml_round_trip_keeps_the_resource() {
        let json = br#"{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z",
            "agent":[{"requestor":true,"name":"Zo\u00eb <x>"}],"source":{"observer":{"display":"x"}}}"#;
        let xml = json_to_xml(json).unwrap();
        assert!(
            xml.contains("<AuditEvent xmlns=\"http://hl7.org/fhir\">"),
            "{xml}"
        );
        assert!(
            xml.contains("Zo\u{eb} &lt;x&gt;") || xml.contains("Zo\u{eb} &#60;x&#62;"),
            "{xml}"
        );
        let back: serde_json::Value =
            serde_json::from_slice(&xml_to_json(xml.as_bytes()).unwrap()).unwrap();
        let orig: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn xml_with_unknown_elements_is_refused() {
        let xml = br#"<AuditEvent xmlns="http://hl7.org/fhir"><bogus value="1"/></AuditEvent>"#;
        assert!(xml_to_json(xml).is_err());
    }

    #[test]
    fn minimal_audit_event_passes() {
        let ok = br#"{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z",
            "agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}"#;
        check_audit_event_json(ok).unwrap();
    }
}
