//! The HL7 v2 reader and mapping (src/hl7v2): a frame is read, and what is
//! accepted is mapped to an AuditEvent that must be valid JSON.
use vellum::hl7v2::{self, InferenceRef, Kind, Origin};

fn main() {
    let origin = Origin {
        peer: "192.0.2.1:5000".parse().expect("address"),
        local: "192.0.2.2:2575".parse().expect("address"),
    };
    let link = InferenceRef {
        id: "00000000-0000-4000-8000-000000000000".into(),
        recorded: "2024-01-01T00:00:00Z".into(),
        // Set, so that the clinical time-to-action path is fuzzed too.
        clinical_time: Some("20240101000000".into()),
    };
    afl::fuzz!(|data: &[u8]| {
        let Ok(inbound) = hl7v2::read(data, origin) else {
            return;
        };
        let link = matches!(inbound.kind, Kind::AiOverride { .. }).then_some(&link);
        let event = hl7v2::to_audit_event(&inbound, link, "2024-01-01T00:00:01Z");
        vellum_json::parse(event.as_bytes()).expect("the mapped event is JSON");
    });
}
