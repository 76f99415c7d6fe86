//! The canonical JSON parser (crates/vellum-json): any input is parsed or
//! refused without panicking, and what parses canonicalizes to a fixed
//! point (canonical bytes parse back to the same canonical bytes).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(v) = vellum_json::parse(data) else {
            return;
        };
        let canonical = vellum_json::to_canonical(&v);
        let again = vellum_json::parse(&canonical).expect("canonical JSON parses");
        assert_eq!(vellum_json::to_canonical(&again), canonical);
        assert_eq!(
            vellum_json::canonicalize(data).expect("canonicalize agrees with parse"),
            canonical
        );
    });
}
