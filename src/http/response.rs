//! Response helpers shared by the routes.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

use crate::fhir::{Issue, IssueType, OperationOutcome};
use vellum_ledger::store::StoredEntry;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

pub fn outcome(status: StatusCode, oo: &OperationOutcome) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .body(oo.to_json().to_string())
}

pub fn error(status: StatusCode, code: IssueType, msg: impl Into<String>) -> HttpResponse {
    outcome(status, &OperationOutcome::single(Issue::error(code, msg)))
}

/// `Last-Modified` from a stored `meta.lastUpdated`.
pub fn http_date(last_updated: &str) -> Option<String> {
    let t = vellum_ledger::parse_stamp(last_updated)?;
    let st: std::time::SystemTime = t.into();
    Some(httpdate::fmt_http_date(st))
}

/// The FHIR base URL (`…/fhir`) as clients should see it: the configured
/// `public_base_url`, else the address the listener is bound to. Never the
/// request's `Host` or `Forwarded` headers, which any client can set (a
/// `Location` pointing at another site).
pub fn fhir_base(req: &HttpRequest, configured: Option<&str>) -> String {
    match configured {
        Some(base) => format!("{base}/fhir"),
        None => {
            let config = req.app_config();
            let scheme = if config.secure() { "https" } else { "http" };
            format!("{scheme}://{}/fhir", config.local_addr())
        }
    }
}

/// A stored entry, returned byte for byte with its ledger receipt headers.
pub fn stored_resource(
    status: StatusCode,
    entry_seq: i64,
    chain_hash: &[u8],
    body: String,
    last_updated: &str,
) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    r.content_type(FHIR_JSON)
        .insert_header((header::ETAG, "W/\"1\""))
        .insert_header(("X-Vellum-Seq", entry_seq.to_string()))
        .insert_header(("X-Vellum-Chain-Hash", hex::encode(chain_hash)));
    if let Some(d) = http_date(last_updated) {
        r.insert_header((header::LAST_MODIFIED, d));
    }
    r.body(body)
}

pub fn stored_entry(e: StoredEntry) -> HttpResponse {
    stored_resource(
        StatusCode::OK,
        e.seq,
        &e.chain_hash,
        e.body,
        &e.last_updated,
    )
}

/// The request's declared `Content-Length`, when present and numeric (lets
/// a handler refuse an oversized body before reading it).
pub fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}
