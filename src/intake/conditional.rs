//! Conditional create (`If-None-Exist`, R4 §3.1.0.8): a client that retries
//! after a timeout gets the entry it already created instead of a second.
//!
//! Two layers: a search for an existing match (covers events stored before,
//! by any way in), and an idempotency key derived from the normalised
//! criteria, decided inside the write transaction (covers two retries racing
//! each other, which a search alone cannot).

use crate::fhir::{search, Issue, IssueType};
use vellum_ledger::store::StoredEntry;
use vellum_ledger::Ledger;

/// Why the criteria could not decide: each edge maps it (HTTP 400, 412 or
/// 503 with an OperationOutcome; a Bundle entry's response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("If-None-Exist is not a valid search")]
    Invalid(Vec<Issue>),
    #[error("If-None-Exist matches more than one stored AuditEvent")]
    Ambiguous,
    #[error("the store is unavailable")]
    Unavailable,
}

impl ConditionError {
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            ConditionError::Invalid(issues) => issues.clone(),
            ConditionError::Ambiguous => {
                vec![Issue::error(IssueType::Processing, self.to_string())]
            }
            ConditionError::Unavailable => {
                vec![Issue::error(IssueType::Transient, self.to_string())]
            }
        }
    }
}

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

pub async fn existing(header: &[u8], ledger: &Ledger) -> Result<Found, ConditionError> {
    let mut pairs = criteria(header);
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    // Strict: an ignored criterion would match far more than the client meant.
    let mut sr = search::parse(&pairs, true, now).map_err(|mut issues| {
        for i in &mut issues {
            i.diagnostics = format!("If-None-Exist: {}", i.diagnostics);
        }
        ConditionError::Invalid(issues)
    })?;
    if sr.query.conditions.is_empty() {
        return Err(ConditionError::Invalid(vec![Issue::error(
            IssueType::Invalid,
            "If-None-Exist names no search criteria",
        )]));
    }
    sr.query.limit = 2;
    sr.query.cursor = None;
    let unavailable = |e: vellum_ledger::store::StoreError| {
        tracing::error!(error = %e, "conditional create lookup failed");
        ConditionError::Unavailable
    };
    sr.query.head = ledger.head().await.map_err(unavailable)?.seq;
    let mut hits = ledger.search(&sr.query).await.map_err(unavailable)?;
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
        _ => Err(ConditionError::Ambiguous),
    }
}
