//! Reading a request body within the configured size limit.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::response::error;
use crate::fhir::IssueType;

/// The whole body, or 413 as soon as it exceeds `limit` (checked against
/// `Content-Length` first, then while reading), or 408 when it has not
/// arrived within `deadline` (a client trickling a body must not hold a
/// connection and a worker indefinitely).
pub(crate) async fn read_body(
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
    req: &HttpRequest,
) -> Result<web::BytesMut, HttpResponse> {
    match tokio::time::timeout(deadline, read_within(payload, limit, req)).await {
        Ok(read) => read,
        Err(_) => {
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                IssueType::Transient,
                format!(
                    "the request body did not arrive within {} ms (limits.http_body_timeout_ms)",
                    deadline.as_millis()
                ),
            );
            r.headers_mut().insert(
                actix_web::http::header::CONNECTION,
                actix_web::http::header::HeaderValue::from_static("close"),
            );
            Err(r)
        }
    }
}

async fn read_within(
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
