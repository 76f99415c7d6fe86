//! The request span: method, route template, status and latency, and a
//! request id. Never the query string or path parameters: search
//! parameters carry patient identifiers (no PHI in operational logs).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::Error;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

pub struct PhiFreeSpan;

impl RootSpanBuilder for PhiFreeSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        tracing::info_span!(
            "http",
            method = %request.method(),
            route = %route,
            request_id = %uuid::Uuid::new_v4(),
            status = tracing::field::Empty,
            exception.message = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(r) = outcome {
            span.record("status", r.status().as_u16());
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
