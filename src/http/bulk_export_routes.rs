//! FHIR Bulk Data `$export` of AuditEvent (Bulk Data Access IG v2, async
//! pattern): kick-off `GET /fhir/$export` or `/fhir/AuditEvent/$export`
//! with `Prefer: respond-async` → 202 and a status URL; the status URL
//! answers 202 with `X-Progress` while the job runs, then 200 with the
//! manifest, and `DELETE` cancels the job and removes its file; the file is
//! `GET /fhir/$export-file/{job}/AuditEvent.ndjson`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;

use super::format::query_param;
use super::response::{error, fhir_base};
use super::AppState;
use crate::bulk_export::{BulkExportError, JobState, OUTPUT_FILE};
use crate::fhir::IssueType;

const NDJSON: &str = "application/fhir+ndjson";
/// Output formats the IG lets a client name for NDJSON.
const NDJSON_NAMES: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];
/// Kick-off parameters vellum understands; any other is refused (400), as
/// the IG asks of a server that does not support it.
const KNOWN_PARAMS: &[&str] = &["_outputFormat", "_type", "_since"];

/// Routes for the `/fhir` scope; registered before `/AuditEvent/{id}`.
pub fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/$export", web::get().to(kick_off))
        .route("/AuditEvent/$export", web::get().to(kick_off))
        .route("/$export-status/{job}", web::get().to(status))
        .route("/$export-status/{job}", web::delete().to(delete))
        .route("/$export-file/{job}/{file}", web::get().to(download))
}

fn bad_request(msg: impl Into<String>) -> HttpResponse {
    error(StatusCode::BAD_REQUEST, IssueType::Invalid, msg)
}

async fn kick_off(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let prefer = req
        .headers()
        .get_all("Prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    if !prefer {
        return bad_request("$export needs the header Prefer: respond-async");
    }
    for (k, _) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if !KNOWN_PARAMS.contains(&k.as_ref()) {
            return bad_request(format!(
                "$export parameter {k} is not supported (supported: _outputFormat, _type, _since)"
            ));
        }
    }
    if let Some(f) = query_param(&req, "_outputFormat") {
        if !NDJSON_NAMES.contains(&f.as_str()) {
            return bad_request("_outputFormat must be application/fhir+ndjson");
        }
    }
    if let Some(t) = query_param(&req, "_type") {
        if t.split(',').any(|t| t.trim() != "AuditEvent") {
            return bad_request("_type: this server holds only AuditEvent resources");
        }
    }
    let since = match query_param(&req, "_since") {
        None => None,
        Some(s) => {
            match time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339) {
                Ok(t) => Some(t),
                Err(_) => {
                    return bad_request("_since must be a FHIR instant (e.g. 2026-01-31T12:00:00Z)")
                }
            }
        }
    };
    let base = fhir_base(&req, state.public_base_url.as_deref());
    let request = match req.uri().path_and_query() {
        Some(pq) => format!("{}{}", base.trim_end_matches("/fhir"), pq.as_str()),
        None => format!("{base}/$export"),
    };
    match state.bulk_exports.kick_off(request, since).await {
        Ok(job) => HttpResponse::Accepted()
            .insert_header((
                header::CONTENT_LOCATION,
                format!("{base}/$export-status/{}", job.id),
            ))
            .finish(),
        Err(e @ BulkExportError::TooMany(_)) => {
            let mut res = error(
                StatusCode::TOO_MANY_REQUESTS,
                IssueType::Throttled,
                e.to_string(),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "bulk export kick-off failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the export could not be started",
            )
        }
    }
}

fn no_job() -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        "no such export job (finished jobs are kept for 24 hours)",
    )
}

async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
    job: web::Path<String>,
) -> HttpResponse {
    let Some(job) = state.bulk_exports.get(&job) else {
        return no_job();
    };
    match job.state() {
        JobState::Running => HttpResponse::Accepted()
            .insert_header(("X-Progress", job.progress()))
            .insert_header((header::RETRY_AFTER, "1"))
            .finish(),
        JobState::Failed(why) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, why)
        }
        JobState::Done => {
            let base = fhir_base(&req, state.public_base_url.as_deref());
            HttpResponse::Ok()
                .insert_header(header::ContentType::json())
                .insert_header((header::EXPIRES, expires()))
                .body(
                    serde_json::json!({
                        "transactionTime": job.transaction_time,
                        "request": job.request,
                        "requiresAccessToken": true,
                        "output": [{
                            "type": "AuditEvent",
                            "url": format!("{base}/$export-file/{}/{OUTPUT_FILE}", job.id),
                            "count": job.count(),
                        }],
                        "error": [],
                    })
                    .to_string(),
                )
        }
    }
}

/// When a finished job's files are removed, as an HTTP date.
fn expires() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + crate::bulk_export::KEEP_FINISHED)
}

async fn delete(state: web::Data<AppState>, job: web::Path<String>) -> HttpResponse {
    if state.bulk_exports.delete(&job) {
        HttpResponse::Accepted().finish()
    } else {
        no_job()
    }
}

async fn download(state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (job, file) = path.into_inner();
    let Some(path) = state
        .bulk_exports
        .get(&job)
        .filter(|_| file == OUTPUT_FILE)
        .and_then(|j| j.output())
    else {
        return no_job();
    };
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return no_job(),
    };
    // Read in chunks: an export may be larger than memory.
    let body = stream::unfold(Some(f), |f| async move {
        use tokio::io::AsyncReadExt;
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(web::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    HttpResponse::Ok().content_type(NDJSON).streaming(body)
}
