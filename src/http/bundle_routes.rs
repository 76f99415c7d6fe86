//! `POST /fhir` with a `batch` or `transaction` Bundle (R4 §3.1.0.11; IHE
//! ITI-20 feeds batches of AuditEvents this way).
//!
//! Entries may create AuditEvents (`POST AuditEvent`, with `ifNoneExist`)
//! or read them (`GET AuditEvent/<id>`). A transaction commits all its
//! creates in one ledger transaction or none; a batch answers per entry.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::authn::AccessRecord;
use super::body::read_body;
use super::format::{render, request_format, response_format, to_json_body};
use super::intake_response::{append_failed, condition_failed};
use super::response::{error, fhir_base, outcome};
use super::trace_context::TraceParent;
use super::AppState;
use crate::auth::policy::Access;
use crate::auth::{Principal, Role};
use crate::fhir::bundle::{response_bundle, ResponseEntry};
use crate::fhir::create::Rejection;
use crate::fhir::{Issue, IssueType, OperationOutcome};
use crate::intake::trace::TraceParentValue;
use crate::intake::{IntakeError, Prepared, Submission};
use vellum_json::{self as canonical, Json, ParseErrorKind};
use vellum_ledger::store::StoredEntry;
use vellum_ledger::{Committed, Draft};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Batch,
    Transaction,
}

/// What one request entry asks for, once checked.
enum Planned {
    Create(Box<Draft>),
    /// `ifNoneExist` matched an existing entry.
    Existing(StoredEntry),
    Read(String),
    /// Refused before touching the ledger.
    Failed(StatusCode, OperationOutcome),
}

pub async fn bundle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (in_format, out_format) = match (request_format(&req), response_format(&req)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    // A Bundle carries many events: allow 16 single-event bodies' worth.
    let limit = state.max_body_bytes.saturating_mul(16);
    let body = match read_body(payload, limit, state.limits.http_body_timeout, &req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let json = match to_json_body(in_format, body.freeze(), state.limits).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    // Parsed on the blocking pool: a Bundle may be many megabytes.
    let json_limits = state.limits.json;
    let parsed = web::block(move || {
        let root = canonical::parse_with(&json, json_limits);
        (json, root)
    })
    .await;
    let (json, root) = match parsed {
        Ok((json, Ok(root))) => (json, root),
        Ok((_, Err(e))) => {
            let code = match e.kind {
                ParseErrorKind::TooDeep(_) | ParseErrorKind::TooManyKeys(_) => IssueType::TooLong,
                _ => IssueType::Invalid,
            };
            return error(
                StatusCode::BAD_REQUEST,
                code,
                format!("request body is not acceptable JSON: {}", e.kind),
            );
        }
        Err(_) => return super::format::busy(),
    };
    if root.get("resourceType").and_then(Json::as_str) != Some("Bundle") {
        return invalid(
            "resourceType",
            "POST to the base takes a Bundle of type batch or transaction",
        );
    }
    let kind = match root.get("type").and_then(Json::as_str) {
        Some("batch") => Kind::Batch,
        Some("transaction") => Kind::Transaction,
        Some(t) => {
            return invalid(
                "Bundle.type",
                &format!("Bundle.type {t} cannot be processed; send batch or transaction"),
            )
        }
        None => return invalid("Bundle.type", "Bundle.type is required"),
    };
    let entries = root.get("entry").and_then(Json::as_array).unwrap_or(&[]);
    let max = state.limits.bundle_max_entries;
    if entries.len() > max {
        return outcome(
            StatusCode::PAYLOAD_TOO_LARGE,
            &OperationOutcome::single(
                Issue::error(
                    IssueType::TooCostly,
                    format!(
                        "the Bundle has {} entries; the limit is {max} (limits.bundle_max_entries)",
                        entries.len()
                    ),
                )
                .at("Bundle.entry"),
            ),
        );
    }
    // At most `bundle_concurrency` entries are validated at once, in order:
    // one large Bundle must not take every blocking thread or the memory of
    // all its entries' work at the same time.
    let concurrency = state.limits.bundle_concurrency;
    let principal = super::authn::principal(&req);
    let trace = TraceParent::for_event(&req);
    let planned: Vec<Planned> = futures_util::stream::iter(entries.iter().enumerate())
        .map(|(i, entry)| plan_entry(i, entry, &json, &state, principal.as_ref(), trace.as_ref()))
        .buffered(concurrency)
        .collect()
        .await;
    let base = fhir_base(&req, state.public_base_url.as_deref());
    let reads: Vec<String> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Read(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let now = vellum_ledger::stamp(time::OffsetDateTime::now_utc());
    let id = uuid::Uuid::new_v4().to_string();
    let response = match kind {
        Kind::Transaction => {
            if let Some((status, oo)) = planned.iter().find_map(|p| match p {
                Planned::Failed(s, oo) => Some((*s, oo.clone())),
                _ => None,
            }) {
                // All or nothing: the first refusal answers for the whole.
                return outcome(status, &oo);
            }
            match transaction(planned, &state, &base).await {
                Ok(entries) => response_bundle("transaction-response", &id, &now, &entries),
                Err(r) => return r,
            }
        }
        Kind::Batch => {
            let entries = batch(planned, &state, &base).await;
            response_bundle("batch-response", &id, &now, &entries)
        }
    };
    let mut res = render(&req, out_format, HttpResponse::Ok().finish(), response);
    if !reads.is_empty() {
        let record = read_record(&state, reads).await;
        res.extensions_mut().insert(record);
    }
    res
}

/// The access record of a Bundle's read entries (the gate appends it like
/// any read's).
async fn read_record(state: &AppState, ids: Vec<String>) -> AccessRecord {
    let mut bodies = Vec::new();
    for id in &ids {
        if let Ok(Some(e)) = state.ledger.read(id).await {
            bodies.push(e.body);
        }
    }
    AccessRecord {
        access: Some(Access::Read),
        data: ids,
        ..AccessRecord::of_bodies(bodies.iter().map(String::as_str))
    }
}

fn invalid(expression: &str, msg: &str) -> HttpResponse {
    outcome(
        StatusCode::BAD_REQUEST,
        &OperationOutcome::single(Issue::error(IssueType::Invalid, msg).at(expression)),
    )
}

fn failed(status: StatusCode, code: IssueType, at: String, msg: String) -> Planned {
    Planned::Failed(
        status,
        OperationOutcome::single(Issue::error(code, msg).at(at)),
    )
}

async fn plan_entry(
    i: usize,
    entry: &Json,
    src: &[u8],
    state: &AppState,
    principal: Option<&Principal>,
    trace: Option<&TraceParentValue>,
) -> Planned {
    let at = |p: &str| format!("Bundle.entry[{i}].{p}");
    let may = |role: Role| principal.is_some_and(|p| p.has(role));
    let forbidden = |what: &str| {
        failed(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            at("request"),
            format!(
                "{what} needs the {} role",
                if what == "a read" {
                    "auditor"
                } else {
                    "source"
                }
            ),
        )
    };
    let Some(request) = entry.get("request") else {
        return failed(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            at("request"),
            "entry.request is required in a batch or transaction".into(),
        );
    };
    let method = request.get("method").and_then(Json::as_str).unwrap_or("");
    let url = request.get("url").and_then(Json::as_str).unwrap_or("");
    let path = url.split('?').next().unwrap_or("").trim_start_matches('/');
    let path = path.rsplit_once("/fhir/").map_or(path, |(_, p)| p);
    match method {
        "POST" if path == "AuditEvent" && !may(Role::Source) => forbidden("a create"),
        "GET" if !may(Role::Auditor) => forbidden("a read"),
        "POST" if path == "AuditEvent" => {
            let Some(resource) = entry.get("resource") else {
                return failed(StatusCode::BAD_REQUEST, IssueType::Required, at("resource"), "a POST entry needs a resource".into());
            };
            // The resource's own bytes, so errors and canonical form are as
            // for a single create.
            let mut submission =
                Submission::fhir(&src[resource.start..resource.end]).with_trace(trace.cloned());
            if let Some(cond) = request.get("ifNoneExist").and_then(Json::as_str) {
                submission = submission.if_none_exist(cond.as_bytes());
            }
            if let Some(p) = principal {
                submission = submission.from_sender(p.subject.clone());
            }
            match state.intake.prepare(submission).await {
                Ok(Prepared::Draft(draft)) => Planned::Create(draft),
                Ok(Prepared::Existing(e)) => Planned::Existing(e),
                Err(IntakeError::Rejected(r)) => rejected_entry(i, r),
                Err(IntakeError::Condition(c)) => {
                    let status = condition_failed(&c).status();
                    failed(status, IssueType::Processing, at("request.ifNoneExist"), "ifNoneExist could not be evaluated (see the If-None-Exist rules in docs/fhir-api.md)".into())
                }
                Err(_) => failed(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, at("resource"), "the server is busy; retry this entry".into()),
            }
        }
        "GET" => {
            let mut parts = path.split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("AuditEvent"), Some(id), None, None, None)
                | (Some("AuditEvent"), Some(id), Some("_history"), Some("1"), None)
                    if !id.is_empty() =>
                {
                    Planned::Read(id.to_string())
                }
                _ => failed(StatusCode::BAD_REQUEST, IssueType::NotSupported, at("request.url"), format!("GET {url} is not supported in a Bundle; read AuditEvent/<id> or search at /fhir/AuditEvent")),
            }
        }
        "PUT" | "PATCH" | "DELETE" => failed(StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported, at("request.method"), format!("{method} is not allowed; vellum's audit log is insert-only")),
        _ => failed(StatusCode::BAD_REQUEST, IssueType::NotSupported, at("request"), format!("{method} {url} is not supported; entries create AuditEvents (POST AuditEvent) or read them")),
    }
}

/// Re-roots a resource's issues under its Bundle entry.
fn rejected_entry(i: usize, r: Rejection) -> Planned {
    let (status, issues) = match r {
        Rejection::Malformed(v) => (StatusCode::BAD_REQUEST, v),
        Rejection::Invalid(v) => (StatusCode::UNPROCESSABLE_ENTITY, v),
    };
    let issues = issues
        .into_iter()
        .map(|mut issue| {
            issue.expression = Some(match issue.expression.take() {
                Some(e) => format!(
                    "Bundle.entry[{i}].resource.{}",
                    e.strip_prefix("AuditEvent.").unwrap_or(&e)
                ),
                None => format!("Bundle.entry[{i}].resource"),
            });
            issue
        })
        .collect();
    Planned::Failed(status, OperationOutcome::new(issues))
}

fn created_entry(base: &str, c: Committed) -> ResponseEntry {
    let status = if c.created { "201 Created" } else { "200 OK" };
    ResponseEntry {
        status: status.into(),
        location: Some(format!("AuditEvent/{}/_history/1", c.receipt.id)),
        etag: Some("W/\"1\"".into()),
        last_modified: Some(c.last_updated.clone()),
        full_url: Some(format!("{base}/AuditEvent/{}", c.receipt.id)),
        resource: Some(c.body),
        outcome: None,
    }
}

fn stored_response(base: &str, e: StoredEntry) -> ResponseEntry {
    ResponseEntry {
        status: "200 OK".into(),
        location: Some(format!("AuditEvent/{}/_history/1", e.id)),
        etag: Some("W/\"1\"".into()),
        last_modified: Some(e.last_updated.clone()),
        full_url: Some(format!("{base}/AuditEvent/{}", e.id)),
        resource: Some(e.body),
        outcome: None,
    }
}

fn failed_response(status: StatusCode, oo: OperationOutcome) -> ResponseEntry {
    ResponseEntry {
        status: format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
        location: None,
        etag: None,
        last_modified: None,
        full_url: None,
        resource: None,
        outcome: Some(oo),
    }
}

async fn read_entry(base: &str, id: &str, state: &AppState) -> ResponseEntry {
    match state.ledger.read(id).await {
        Ok(Some(e)) => stored_response(base, e),
        Ok(None) => failed_response(
            StatusCode::NOT_FOUND,
            OperationOutcome::single(Issue::error(
                IssueType::NotFound,
                format!("AuditEvent/{id} is not known"),
            )),
        ),
        Err(e) => {
            tracing::error!(error = %e, "bundle read failed");
            failed_response(
                StatusCode::SERVICE_UNAVAILABLE,
                OperationOutcome::single(Issue::error(
                    IssueType::Transient,
                    "the store is unavailable",
                )),
            )
        }
    }
}

/// All creates in one ledger transaction; reads after them (R4 processing
/// order: writes before reads).
async fn transaction(
    planned: Vec<Planned>,
    state: &AppState,
    base: &str,
) -> Result<Vec<ResponseEntry>, HttpResponse> {
    let drafts: Vec<Draft> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Create(d) => Some((**d).clone()),
            _ => None,
        })
        .collect();
    let committed = state
        .intake
        .commit_all(drafts)
        .await
        .map_err(append_failed)?;
    let mut committed = committed.into_iter();
    let mut out = Vec::with_capacity(planned.len());
    for p in planned {
        out.push(match p {
            Planned::Create(_) => match committed.next() {
                Some(c) => created_entry(base, c),
                None => failed_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    OperationOutcome::single(Issue::error(
                        IssueType::Exception,
                        "commit result missing",
                    )),
                ),
            },
            Planned::Existing(e) => stored_response(base, e),
            Planned::Read(id) => read_entry(base, &id, state).await,
            Planned::Failed(s, oo) => failed_response(s, oo),
        });
    }
    Ok(out)
}

/// Each entry on its own, at most `bundle_concurrency` at once (so one
/// batch cannot fill the writer's queue and crowd out other clients); the
/// creates still share group commits.
async fn batch(planned: Vec<Planned>, state: &AppState, base: &str) -> Vec<ResponseEntry> {
    let concurrency = state.limits.bundle_concurrency;
    let futures = planned.into_iter().map(|p| async move {
        match p {
            Planned::Create(d) => match state.intake.commit(*d).await {
                Ok(c) => created_entry(base, c),
                Err(e) => {
                    let r = append_failed(e);
                    failed_response(
                        r.status(),
                        OperationOutcome::single(Issue::error(
                            IssueType::Transient,
                            "not stored; retry this entry",
                        )),
                    )
                }
            },
            Planned::Existing(e) => stored_response(base, e),
            Planned::Read(id) => read_entry(base, &id, state).await,
            Planned::Failed(s, oo) => failed_response(s, oo),
        }
    });
    futures_util::stream::iter(futures)
        .buffered(concurrency)
        .collect()
        .await
}
