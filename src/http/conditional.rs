//! Conditional create (`If-None-Exist`, R4 §3.1.0.8): a client that retries
//! after a timeout gets the entry it already created instead of a second.
//!
//! Two layers: a search for an existing match (covers events stored before,
//! by any way in), and an idempotency key derived from the normalised
//! criteria, decided inside the write transaction (covers two retries racing
//! each other, which a search alone cannot).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::response::{error, outcome};
use crate::fhir::{search, IssueType, OperationOutcome};
use crate::store::{AnyStore, Store, StoredEntry};

pub enum Found {
    /// Nothing matches: create, under this idempotency key.
    None(String),
    /// Exactly one entry matches.
    One(StoredEntry),
}

/// The criteria as `name=value` pairs: `If-None-Exist` carries a query
/// string, optionally prefixed with `AuditEvent?`.
fn criteria(header: &[u8]) -> Vec<(String, String)> {
    let q = match header.iter().position(|b| *b == b'?') {
        Some(i) => &header[i + 1..],
        None => header,
    };
    form_urlencoded::parse(q)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub async fn existing(header: &[u8], store: &AnyStore) -> Result<Found, HttpResponse> {
    let mut pairs = criteria(header);
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    // Strict: an ignored criterion would match far more than the client meant.
    let mut sr = search::parse(&pairs, true, now).map_err(|mut issues| {
        for i in &mut issues {
            i.diagnostics = format!("If-None-Exist: {}", i.diagnostics);
        }
        outcome(StatusCode::BAD_REQUEST, &OperationOutcome::new(issues))
    })?;
    if sr.query.conditions.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            "If-None-Exist names no search criteria",
        ));
    }
    sr.query.limit = 2;
    sr.query.cursor = None;
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "conditional create lookup failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            "the store is unavailable",
        )
    };
    sr.query.head = store.head().await.map_err(unavailable)?.seq;
    let mut hits = store.search(&sr.query).await.map_err(unavailable)?;
    match hits.len() {
        0 => {
            pairs.sort();
            let mut key = form_urlencoded::Serializer::new(String::from("if-none-exist:"));
            for (k, v) in &pairs {
                key.append_pair(k, v);
            }
            Ok(Found::None(key.finish()))
        }
        1 => Ok(Found::One(hits.remove(0).entry)),
        _ => Err(error(
            StatusCode::PRECONDITION_FAILED,
            IssueType::Processing,
            "If-None-Exist matches more than one stored AuditEvent",
        )),
    }
}
