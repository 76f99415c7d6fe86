//! Counts and times every HTTP request by route template and status, and
//! writes the access log line. The outermost middleware: it assigns the
//! request id (returned as `X-Request-Id`) that the request span and the
//! access log share. Never logs the query string, path parameters or
//! bodies: search parameters carry patient identifiers.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

use super::trace_context::TraceParent;

/// The id of one request, in its extensions for the request span.
#[derive(Clone, Copy)]
pub struct RequestId(pub uuid::Uuid);

/// The route template of a request, or `unmatched` (so scans of unknown
/// paths cannot create a series each).
pub fn route_of(req: &actix_web::HttpRequest) -> String {
    req.match_pattern()
        .unwrap_or_else(|| "unmatched".to_string())
}

/// The method as a label: the standard ones, else `other`.
fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4();
    req.extensions_mut().insert(RequestId(id));
    let trace = TraceParent::from_headers(req.headers());
    if let Some(t) = trace {
        req.extensions_mut().insert(t);
    }
    let method = method_label(req.method());
    let route = route_of(req.request());
    let result = next.call(req).await;
    let took = started.elapsed();
    let status = match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    crate::metrics::global().http_request(method, &route, status, took);
    // The authenticated caller (a configured subject: no PHI).
    let subject = result.as_ref().ok().and_then(|res| {
        res.request()
            .extensions()
            .get::<crate::auth::Principal>()
            .map(|p| p.subject.clone())
    });
    let trace_id = trace.as_ref().map(TraceParent::trace_id_hex);
    tracing::info!(
        target: "vellum::access",
        method,
        route = %route,
        status,
        duration_ms = took.as_secs_f64() * 1000.0,
        request_id = %id,
        subject = subject.as_deref().map(tracing::field::display),
        trace_id = trace_id.as_deref().map(tracing::field::display),
        "request"
    );
    result.map(|mut res| {
        if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
            res.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), v);
        }
        res
    })
}
