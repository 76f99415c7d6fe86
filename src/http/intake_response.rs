//! The HTTP edge of the intake path: what a refused or failed submission
//! answers (status, OperationOutcome, `Retry-After`).

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

use super::response::{error, outcome};
use crate::fhir::create::Rejection;
use crate::fhir::{IssueType, OperationOutcome};
use crate::intake::conditional::ConditionError;
use crate::intake::IntakeError;
use vellum_ledger::AppendError;

/// The response to a submission that was not stored.
pub(crate) fn intake_failed(e: IntakeError) -> HttpResponse {
    match e {
        IntakeError::Rejected(r) => rejected(&r),
        IntakeError::Condition(c) => condition_failed(&c),
        IntakeError::Append(e) => append_failed(e),
        IntakeError::Busy => super::format::busy(),
        IntakeError::Conflict { existing } => conflict(&existing.id),
    }
}

/// 409: the key was already used for a different request by this sender.
pub(crate) fn conflict(existing_id: &str) -> HttpResponse {
    error(
        StatusCode::CONFLICT,
        IssueType::Conflict,
        format!(
            "this request's key was already used by the same sender for a different request, \
             stored as AuditEvent/{existing_id}; nothing was stored"
        ),
    )
}

/// `If-None-Exist` that could not be decided: 400, 412 or 503.
pub(crate) fn condition_failed(c: &ConditionError) -> HttpResponse {
    let status = match c {
        ConditionError::Invalid(_) => StatusCode::BAD_REQUEST,
        ConditionError::Ambiguous => StatusCode::PRECONDITION_FAILED,
        ConditionError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    outcome(status, &OperationOutcome::new(c.issues()))
}

/// The response to a refused resource: 400 (not FHIR) or 422 (breaks rules).
pub(crate) fn rejected(rejection: &Rejection) -> HttpResponse {
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
pub(crate) fn append_failed(e: AppendError) -> HttpResponse {
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
