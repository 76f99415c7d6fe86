//! The FHIR search-parameter parser (src/fhir/search.rs): the input is a
//! query string, parsed into name=value pairs as the HTTP layer does.
use vellum::fhir::search;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let params: Vec<(String, String)> = form_urlencoded::parse(data)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for strict in [false, true] {
            let _ = search::parse_within(
                &params,
                strict,
                1_700_000_000_000_000,
                search::SearchLimits::default(),
            );
        }
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = search::parse_search_date(text);
            let _ = search::split_or(text);
        }
    });
}
