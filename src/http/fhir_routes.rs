//! `/fhir`: create, read, vread, metadata; 405 for everything that would
//! change a stored event.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::authn::{self, AccessRecord};
use super::body::read_body;
use super::format::{query_param, render, request_format, response_format, to_json_body};
use super::intake_response::intake_failed;
use super::response::{self, error, outcome, stored_entry, stored_resource};
use super::trace_context::TraceParent;
use super::AppState;
use crate::fhir::{Issue, IssueType, OperationOutcome};
use crate::intake::{Stored, Submission};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::bulk_export_routes::routes(web::scope("/fhir"))
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
    let now = vellum_ledger::stamp(time::OffsetDateTime::now_utc());
    let json = crate::fhir::capability::capability_statement(&base, &now).to_string();
    render(&req, format, HttpResponse::Ok().finish(), json)
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
    let body = match read_body(
        payload,
        state.max_body_bytes,
        state.limits.http_body_timeout,
        &req,
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let json = match to_json_body(in_format, body.freeze(), state.limits).await {
        Ok(j) => j,
        Err(r) => return r,
    };
    let mut submission = Submission::fhir(json).with_trace(TraceParent::for_event(&req));
    if let Some(cond) = req.headers().get("If-None-Exist") {
        submission = submission.if_none_exist(cond.as_bytes());
    }
    if let Some(p) = authn::principal(&req) {
        submission = submission.from_sender(p.subject);
    }
    match state.intake.submit(submission).await {
        Ok(Stored::Existing(entry)) => {
            // A retry (or a duplicate): the entry that already matches.
            let json = entry.body.clone();
            render(&req, out_format, stored_entry(entry), json)
        }
        Ok(Stored::Committed(c)) => {
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
        Err(e) => intake_failed(e),
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
    let found = match authn::principal(req) {
        // A clinician sees only events naming them as an agent: the
        // restriction is part of the query, so another event's existence
        // is not even revealed (404, not 403).
        Some(p) if p.reads_only_own_events() => {
            super::visibility::read_own(&state.ledger, id, &p.subject).await
        }
        _ => state.ledger.read(id).await,
    };
    match found {
        Ok(Some(e)) => {
            let record = AccessRecord {
                data: vec![e.id.clone()],
                ..AccessRecord::of_bodies([e.body.as_str()])
            };
            let json = e.body.clone();
            let mut res = render(req, format, stored_entry(e), json);
            res.extensions_mut().insert(record);
            res
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
