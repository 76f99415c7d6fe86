//! `/fhir`: create, read, vread, metadata; 405 for everything that would
//! change a stored event.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::response::{self, error, outcome, stored_entry, stored_resource, FHIR_JSON};
use super::AppState;
use crate::fhir::create::{prepare_audit_event, Rejection};
use crate::fhir::{Issue, IssueType, OperationOutcome};
use crate::ledger::AppendError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/fhir")
            .route("/metadata", web::get().to(metadata))
            .service(
                web::resource("/AuditEvent")
                    .route(web::post().to(create))
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
    let base = response::fhir_base(&req, state.public_base_url.as_deref());
    let now = crate::ledger::stamp(time::OffsetDateTime::now_utc());
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(crate::fhir::capability::capability_statement(&base, &now).to_string())
}

/// Reads the body up to the configured limit; 413 beyond it.
async fn read_body(
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
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
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

/// JSON media types vellum accepts on input (XML arrives with the REST issue).
fn is_json_content_type(req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(()); // FHIR clients occasionally omit it; the body decides.
    };
    let ct = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(
        ct.as_str(),
        "application/fhir+json" | "application/json" | "application/json+fhir"
    ) {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!("Content-Type {ct} is not supported; send application/fhir+json"),
        )))
    }
}

async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if let Err(r) = is_json_content_type(&req) {
        return *r;
    }
    let body = match read_body(payload, state.max_body_bytes, &req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // Issue 4: pixel digests of referenced DICOM studies (no-op without sources).
    let body = super::dicom_routes::enrich_body(&req, body).await;
    let draft = match prepare_audit_event(&body) {
        Ok(d) => d,
        Err(Rejection::Malformed(issues)) => {
            return outcome(StatusCode::BAD_REQUEST, &OperationOutcome::new(issues))
        }
        Err(Rejection::Invalid(issues)) => {
            return outcome(
                StatusCode::UNPROCESSABLE_ENTITY,
                &OperationOutcome::new(issues),
            )
        }
    };
    match state.ledger.append(draft).await {
        Ok(c) => {
            let location = format!(
                "{}/AuditEvent/{}/_history/1",
                response::fhir_base(&req, state.public_base_url.as_deref()),
                c.receipt.id
            );
            let mut r = stored_resource(
                StatusCode::CREATED,
                c.receipt.seq,
                &c.receipt.chain_hash,
                c.body,
                &c.last_updated,
            );
            r.headers_mut().insert(
                header::LOCATION,
                header::HeaderValue::from_str(&location)
                    .unwrap_or(header::HeaderValue::from_static("/")),
            );
            r
        }
        Err(AppendError::Overloaded) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the ledger is busy; retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        Err(e) => error(
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

async fn read(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let id = path.into_inner();
    fetch(&id, &state).await
}

async fn vread(path: web::Path<(String, String)>, state: web::Data<AppState>) -> HttpResponse {
    let (id, vid) = path.into_inner();
    if vid != "1" {
        // Entries never change: version 1 is the only one there is.
        return error(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("AuditEvent/{id} has no version {vid}; stored events only have version 1"),
        );
    }
    fetch(&id, &state).await
}

async fn fetch(id: &str, state: &AppState) -> HttpResponse {
    if !crate::fhir::validate::is_id(id) {
        return not_found(id);
    }
    match state.ledger.read(id).await {
        Ok(Some(e)) => stored_entry(e),
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
