//! The request span: method, route template, status and latency, and a
//! request id. Never the query string or path parameters: search
//! parameters carry patient identifiers (no PHI in operational logs). A
//! W3C `traceparent` header puts the caller's trace and span ids on it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

use super::metrics_middleware::RequestId;
use super::trace_context::TraceParent;

pub struct PhiFreeSpan;

impl RootSpanBuilder for PhiFreeSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let ext = request.extensions();
        let request_id = ext
            .get::<RequestId>()
            .map_or_else(uuid::Uuid::new_v4, |r| r.0);
        let trace = ext.get::<TraceParent>();
        let trace_id = trace.map(TraceParent::trace_id_hex);
        let parent_span_id = trace.map(TraceParent::parent_id_hex);
        tracing::info_span!(
            "http",
            method = %request.method(),
            route = %route,
            request_id = %request_id,
            trace_id = trace_id.as_deref().map(tracing::field::display),
            parent_span_id = parent_span_id.as_deref().map(tracing::field::display),
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
