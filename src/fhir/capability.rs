//! The CapabilityStatement: exactly what this build of vellum supports.

use serde_json::{json, Value};

pub fn capability_statement(base_url: &str, date: &str) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "vellum",
        "kind": "instance",
        "software": { "name": "vellum", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "vellum tamper-evident AuditEvent repository",
            "url": base_url
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Insert-only, hash-chained AuditEvent store. Update, patch and delete are refused (405).",
            "resource": [{
                "type": "AuditEvent",
                "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
                "interaction": [
                    { "code": "create" },
                    { "code": "read" },
                    { "code": "vread" }
                ],
                "versioning": "versioned",
                "readHistory": false,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported"
            }]
        }]
    })
}
