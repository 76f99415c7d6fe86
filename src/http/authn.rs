//! The gate in front of every route: authenticate the caller, check the
//! role the access policy (`crate::auth::policy`) asks for, and — for calls
//! that read the audit log — append the `audit-log-access` events before
//! the response leaves. A read whose access record cannot be committed is
//! answered 503: nothing is read unrecorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use serde_json::Value;

use super::response::{error, fhir_base};
use super::AppState;
use crate::auth::policy::{self, Access, Requirement};
use crate::auth::{AuthError, Authenticator, Principal};
use crate::fhir::access_event::{self, AccessFacts, Accessor, Denial};
use crate::fhir::IssueType;
use crate::intake::{Intake, Prepared, Submission};

/// What a handler read, left in its response's extensions for the gate.
/// Without one, an audited call is recorded from its request alone.
#[derive(Debug, Clone, Default)]
pub struct AccessRecord {
    /// What kind of access, when the endpoint's rule does not say (a Bundle
    /// with read entries).
    pub access: Option<Access>,
    /// The request as received, when the path and query do not hold all of
    /// it (a POST `_search` form body).
    pub request: Option<Vec<u8>>,
    /// Ids of the AuditEvents returned by a read.
    pub data: Vec<String>,
    /// The `what` of each distinct patient in what was returned.
    pub patients: Vec<Value>,
}

impl AccessRecord {
    /// The record of returned event bodies: their patients.
    pub fn of_bodies<'a>(bodies: impl IntoIterator<Item = &'a str>) -> Self {
        AccessRecord {
            patients: access_event::patients_in(bodies),
            ..AccessRecord::default()
        }
    }
}

/// Security alerts appended per second at most: a flood of bad requests
/// must not turn into a flood of writes. The excess is counted.
const ALERTS_PER_SECOND: u64 = 100;

/// Authentication state shared by the workers.
pub struct AccessControl {
    pub authenticator: Authenticator,
    pub metrics_public: bool,
    /// `auth.record_reads`: append access events for reads.
    pub record_reads: bool,
    window: Mutex<(Instant, u64)>,
    /// Alerts not appended because of the rate bound.
    pub alerts_suppressed: AtomicU64,
}

impl AccessControl {
    pub fn new(authenticator: Authenticator, metrics_public: bool, record_reads: bool) -> Self {
        AccessControl {
            authenticator,
            metrics_public,
            record_reads,
            window: Mutex::new((Instant::now(), 0)),
            alerts_suppressed: AtomicU64::new(0),
        }
    }

    fn alert_allowed(&self) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0);
        }
        w.1 += 1;
        w.1 <= ALERTS_PER_SECOND
    }
}

/// The principal the gate let in (handlers behind the gate always find it).
pub fn principal(req: &actix_web::HttpRequest) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

fn now() -> String {
    vellum_ledger::stamp(time::OffsetDateTime::now_utc())
}

fn request_line(req: &ServiceRequest) -> String {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |pq| pq.as_str().to_string());
    format!("{} {}", req.method(), target)
}

pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let access = &state.access;
    let rule = policy::requirement(req.method().as_str(), req.path(), access.metrics_public);
    if rule.need == Requirement::Public {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let client = req.peer_addr().map(|a| a.ip().to_string());
    let server = fhir_base(req.request(), state.public_base_url.as_deref());
    let line = request_line(&req);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    // Without an Authorization header, a verified client certificate.
    let peer = req.conn_data::<super::tls::PeerCertificate>();
    let authenticated = match (&authorization, peer) {
        (None, Some(cert)) => access.authenticator.authenticate_certificate(&cert.0),
        _ => {
            access
                .authenticator
                .authenticate_request(authorization.as_deref())
                .await
        }
    };
    let principal = match authenticated {
        Ok(p) => p,
        Err(e) => {
            alert(
                &state,
                Denial::Authentication,
                None,
                client.as_deref(),
                &server,
                &line,
            );
            let res = unauthorized(e, req.path());
            return Ok(req.into_response(res));
        }
    };
    if !rule.need.allows(principal.roles) {
        alert(
            &state,
            Denial::Authorization,
            Some(&principal.subject),
            client.as_deref(),
            &server,
            &line,
        );
        let res = error(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            format!(
                "{} may not {} {}: it needs another role",
                principal.subject,
                req.method(),
                req.path()
            ),
        );
        return Ok(req.into_response(res));
    }
    req.extensions_mut().insert(principal.clone());
    let res = next.call(req).await?.map_into_boxed_body();
    if !res.status().is_success() || !access.record_reads {
        return Ok(res);
    }
    let record = res.response().extensions().get::<AccessRecord>().cloned();
    let Some(kind) = rule.access.or(record.as_ref().and_then(|r| r.access)) else {
        return Ok(res);
    };
    let record = record.unwrap_or_default();
    let request = record.request.unwrap_or_else(|| line.into_bytes());
    let who = Accessor {
        subject: &principal.subject,
        roles: principal.roles,
        client_addr: client,
        server: &server,
        recorded: &now(),
    };
    let facts = AccessFacts {
        access: kind,
        request: &request,
        data: &record.data,
        patients: &record.patients,
    };
    let events = access_event::access_events(&who, &facts);
    match record_access(&state.intake, events).await {
        Ok(()) => Ok(res),
        Err(why) => {
            tracing::error!(error = %why, access = kind.code(), "access record not committed; read refused");
            let (req, _) = res.into_parts();
            let refused = error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the access could not be recorded in the audit log; nothing was returned",
            );
            Ok(ServiceResponse::new(req, refused))
        }
    }
}

/// Appends the access events in one transaction of the group commit.
async fn record_access(intake: &Intake, events: Vec<String>) -> Result<(), String> {
    let mut drafts = Vec::with_capacity(events.len());
    for body in events {
        match intake.prepare(Submission::mapped(body)).await {
            Ok(Prepared::Draft(d)) => drafts.push(*d),
            Ok(Prepared::Existing(_)) => {}
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    intake
        .commit_all(drafts)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A security alert for a refused request, appended in the background
/// (the refusal does not wait for it), at most [`ALERTS_PER_SECOND`].
fn alert(
    state: &web::Data<AppState>,
    denial: Denial,
    subject: Option<&str>,
    client: Option<&str>,
    server: &str,
    line: &str,
) {
    if !state.access.alert_allowed() {
        state
            .access
            .alerts_suppressed
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    let body = access_event::security_alert(denial, subject, client, server, line, &now());
    let intake = state.intake.clone();
    tokio::spawn(async move {
        if let Err(e) = intake.submit(Submission::mapped(body)).await {
            tracing::warn!(error = ?e, "security alert not recorded");
        }
    });
}

fn unauthorized(e: AuthError, path: &str) -> HttpResponse {
    let mut challenge = String::from("Bearer realm=\"vellum\"");
    if e != AuthError::Missing {
        challenge.push_str(", error=\"invalid_token\"");
    }
    // Which check failed (fixed texts, never the token).
    if let Some(why) = e.failed_check() {
        challenge.push_str(&format!(", error_description=\"{why}\""));
    }
    let mut res = error(
        StatusCode::UNAUTHORIZED,
        IssueType::Login,
        format!("{e}: send `Authorization: Bearer <token>`"),
    );
    let headers = res.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&challenge) {
        headers.append(header::WWW_AUTHENTICATE, v);
    }
    // A browser opening the QA page asks for the token as a password.
    if path.starts_with("/ui") || path.starts_with("/reports") {
        headers.append(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"vellum\", charset=\"UTF-8\""),
        );
    }
    res
}
