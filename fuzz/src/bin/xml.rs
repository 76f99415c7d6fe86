//! The XML → JSON path of FHIR request bodies: the bounded pre-scan
//! (src/fhir/xml_guard.rs), then fhirbolt's conversion exactly as the
//! server runs it (a panic inside the converter is caught there and
//! answered 400; a stack overflow or abort is a crash), then the JSON
//! parser on what came out.
use vellum::fhir::xml_guard::{self, XmlLimits};

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let limits = XmlLimits {
            max_depth: 50,
            max_bytes: 4 * 1024 * 1024,
        };
        if xml_guard::check(data, limits).is_err() {
            return;
        }
        let converted = std::panic::catch_unwind(|| fhir_model::xml_to_json(data));
        if let Ok(Ok(json)) = converted {
            let _ = vellum_json::parse(&json);
        }
    });
}
