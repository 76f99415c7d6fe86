//! `/fhir`: create, read, vread, metadata; 405 for everything that would
//! change a stored event.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::conditional;
use super::format::{query_param, render, request_format, response_format, to_json_body};
use super::response::{self, error, outcome, stored_entry, stored_resource};
use super::AppState;
use crate::fhir::create::{prepare_audit_event_with, Rejection};
use crate::fhir::{Issue, IssueType, OperationOutcome};
use crate::ledger::AppendError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/fhir")
            .route("/metadata", web::get().to(metadata))
            .service(
                web::resource("")
                    .route(web::post().to(super::bundle_routes::bundle))
                    .route(web::route().to(not_allowed_on_system)),
            )
            .service(
                web::resource("/")
                    .route(web::post().to(super::bundle_routes::bundle))
                    .route(web::route().to(not_allowed_on_system)),
            )
            .service(
                web::resource("/AuditEvent")
                    .route(web::post().to(create))
                    .route(web::get().to(super::search_routes::search_get))
                    .route(web::route().to(not_allowed_on_type)),
            )
            .service(
                web::resource("/AuditEvent/_search")
                    .route(web::post().to(super::search_routes::search_post))
                    .route(web::get().to(super::search_routes::search_get))
                    .route(web::route().to(not_allowed_on_type)),
            )
            .service(
                web::resource("/AuditEvent/{id}")
                    .route(web::get().to(read))
                    .route(web::route().to(not_allowed_on_instance)),
            )
            .service(
                web::resource("/AuditEvent/{id}/_history/{vid}")
                    .route(web::get().to(vread))
                    .route(web::route().to(not_allowed_on_instance)),
            )
            .default_service(web::to(unknown_route)),
    );
}

async fn metadata(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let format = match response_format(&req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match query_param(&req, "mode").as_deref() {
        None | Some("full") => {}
        Some(mode) => {
            return error(
                StatusCode::BAD_REQUEST,
                IssueType::NotSupported,
                format!(
                "mode={mode} is not supported; vellum has no terminology service (mode=full is)"
            ),
            )
        }
    }
    let base = response::fhir_base(&req, state.public_base_url.as_deref());
    let now = crate::ledger::stamp(time::OffsetDateTime::now_utc());
    let json = crate::fhir::capability::capability_statement(&base, &now).to_string();
    render(&req, format, HttpResponse::Ok().finish(), json)
}

/// Reads the body up to the configured limit; 413 beyond it.
pub(super) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    req: &HttpRequest,
) -> Result<web::BytesMut, HttpResponse> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = super::response::declared_length(req);
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                IssueType::Invalid,
                format!("could not read the request body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (in_format, out_format) = match (request_format(&req), response_format(&req)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let body = match read_body(payload, state.max_body_bytes, &req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let json = match to_json_body(in_format, body.freeze(), state.limits).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    // Issue 4: pixel digests of referenced DICOM studies (no-op without sources).
    let json = crate::dicom::enrich::enrich_event(state.dicom.as_deref(), json).await;
    let mut draft = match prepare_off_worker(json, state.limits).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Some(cond) = req.headers().get("If-None-Exist") {
        match conditional::existing(cond.as_bytes(), state.ledger.store()).await {
            Ok(conditional::Found::None(key)) => draft = draft.with_key(key),
            Ok(conditional::Found::One(entry)) => {
                // A retry (or a duplicate): the entry that already matches.
                let json = entry.body.clone();
                return render(&req, out_format, stored_entry(entry), json);
            }
            Err(r) => return r,
        }
    }
    match state.ledger.append(draft).await {
        Ok(c) => {
            let location = format!(
                "{}/AuditEvent/{}/_history/1",
                response::fhir_base(&req, state.public_base_url.as_deref()),
                c.receipt.id
            );
            let status = if c.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let json = c.body.clone();
            let mut r = stored_resource(
                status,
                c.receipt.seq,
                &c.receipt.chain_hash,
                c.body,
                &c.last_updated,
            );
            if c.created {
                r.headers_mut().insert(
                    header::LOCATION,
                    header::HeaderValue::from_str(&location)
                        .unwrap_or(header::HeaderValue::from_static("/")),
                );
            }
            render(&req, out_format, r, json)
        }
        Err(e) => append_failed(e),
    }
}

/// Parses, checks and prepares an AuditEvent on the blocking pool: the
/// parse is linear in the body but a body may be megabytes, and an HTTP
/// worker must stay free for other requests (and `/healthz`).
pub(super) async fn prepare_off_worker(
    json: Vec<u8>,
    limits: crate::config::LimitSettings,
) -> Result<crate::ledger::Draft, HttpResponse> {
    match web::block(move || prepare_audit_event_with(&json, limits.json)).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(rejection)) => Err(rejected(&rejection)),
        Err(_) => Err(super::format::busy()),
    }
}

/// The response to a refused resource: 400 (not FHIR) or 422 (breaks rules).
pub(super) fn rejected(rejection: &Rejection) -> HttpResponse {
    match rejection {
        Rejection::Malformed(issues) => outcome(
            StatusCode::BAD_REQUEST,
            &OperationOutcome::new(issues.clone()),
        ),
        Rejection::Invalid(issues) => outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            &OperationOutcome::new(issues.clone()),
        ),
    }
}

/// The response when the ledger could not commit.
pub(super) fn append_failed(e: AppendError) -> HttpResponse {
    match e {
        AppendError::Overloaded => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the ledger is busy; retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        e => error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            format!("not stored: {e}"),
        ),
    }
}

fn not_found(id: &str) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        format!("AuditEvent/{id} is not known"),
    )
}

async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = path.into_inner();
    fetch(&req, &id, &state).await
}

async fn vread(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (id, vid) = path.into_inner();
    if vid != "1" {
        // Entries never change: version 1 is the only one there is.
        return error(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("AuditEvent/{id} has no version {vid}; stored events only have version 1"),
        );
    }
    fetch(&req, &id, &state).await
}

async fn fetch(req: &HttpRequest, id: &str, state: &AppState) -> HttpResponse {
    let format = match response_format(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !crate::fhir::validate::is_id(id) {
        return not_found(id);
    }
    match state.ledger.read(id).await {
        Ok(Some(e)) => {
            let json = e.body.clone();
            render(req, format, stored_entry(e), json)
        }
        Ok(None) => not_found(id),
        Err(e) => {
            tracing::error!(error = %e, "read failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the store is unavailable",
            )
        }
    }
}

fn method_not_allowed(req: &HttpRequest, allow: &'static str) -> HttpResponse {
    let what = match req.method().as_str() {
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "this interaction",
    };
    let mut r = outcome(
        StatusCode::METHOD_NOT_ALLOWED,
        &OperationOutcome::single(Issue::error(
            IssueType::NotSupported,
            format!(
                "{} {}: {what} is not allowed; vellum's audit log is insert-only",
                req.method(),
                req.path()
            ),
        )),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

async fn not_allowed_on_type(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "GET, POST")
}

async fn not_allowed_on_system(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "POST")
}

async fn not_allowed_on_instance(req: HttpRequest) -> HttpResponse {
    method_not_allowed(&req, "GET")
}

async fn unknown_route(req: HttpRequest) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        IssueType::NotSupported,
        format!(
            "{} {} is not supported; see /fhir/metadata",
            req.method(),
            req.path()
        ),
    )
}
