//! `/ai/v1`: plain JSON for AI engines and viewers that do not speak FHIR.
//! Each POST validates its input into domain types (400 naming the field),
//! checks what it refers to (registered model version, stored inference:
//! 422 and nothing stored otherwise), builds the profiled AuditEvent,
//! validates it like any FHIR create and appends it through the ledger.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::body::read_body;
use super::response;
use super::trace_context::TraceParent;
use super::AppState;
use crate::fhir::create::Rejection;
use crate::intake::trace::TraceParentValue;
use crate::intake::{IntakeError, Stored, Submission};
use crate::radiology::build::{self, Registration};
use crate::radiology::lookup::{self, InferenceLookupError};
use crate::radiology::types::{Instant, Token};
use crate::radiology::{event_key, input, model_key};
use vellum_ledger::{AppendError, Committed};

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("ai_openapi.json");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/ai/v1")
            .route("/openapi.json", web::get().to(openapi))
            .route("/models", web::post().to(post_model))
            .route("/models", web::get().to(get_models))
            .route("/models/{name}/versions", web::get().to(get_versions))
            .route("/inferences", web::post().to(post_inference))
            .route("/overrides", web::post().to(post_override))
            .route("/renderings", web::post().to(post_rendering))
            .route("/guard-events", web::post().to(post_guard_event))
            .default_service(web::to(|| async {
                problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "no such AI API route",
                    None,
                )
            })),
    );
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// An error answer: `{"error", "message", "field", "pointer"}`.
fn problem(status: StatusCode, code: &str, message: &str, field: Option<&Field>) -> HttpResponse {
    let mut v = json!({ "error": code, "message": message });
    if let Some(f) = field {
        v["field"] = json!(f.path);
        v["pointer"] = json!(f.pointer);
    }
    HttpResponse::build(status)
        .content_type("application/json")
        .body(v.to_string())
}

/// Where in the input a problem is: `findings[0].confidence` and
/// `/findings/0/confidence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub path: String,
    pub pointer: String,
}

impl Field {
    fn new(segments: &[String]) -> Field {
        let mut path = String::new();
        let mut pointer = String::new();
        for s in segments {
            pointer.push('/');
            pointer.push_str(&s.replace('~', "~0").replace('/', "~1"));
            if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
                path.push_str(&format!("[{s}]"));
            } else {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(s);
            }
        }
        Field { path, pointer }
    }

    fn named(name: &str) -> Field {
        Field::new(&[name.to_string()])
    }
}

/// Parses `body` into `T`; the error names the field.
pub fn parse_input<T: DeserializeOwned>(body: &[u8]) -> Result<T, (String, Option<Field>)> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let mut segments: Vec<String> = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            let inner = e.into_inner();
            let msg = inner.to_string();
            // serde names unknown/missing fields in the message; the path
            // stops at their parent object.
            for prefix in ["unknown field `", "missing field `"] {
                if let Some(name) = msg.strip_prefix(prefix).and_then(|r| r.split('`').next()) {
                    if segments.last().map(String::as_str) != Some(name) {
                        segments.push(name.to_string());
                    }
                }
            }
            let field = (!segments.is_empty()).then(|| Field::new(&segments));
            let message = match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    format!("request body is not JSON: {msg}")
                }
                _ => strip_position(&msg),
            };
            return Err((message, field));
        }
    };
    if de.end().is_err() {
        return Err(("trailing characters after the JSON object".into(), None));
    }
    Ok(value)
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A parsed AI API request, with who sent it and its raw bytes (a retry
/// must repeat them to be answered with the first receipt).
struct Input<T> {
    value: T,
    sender: Option<String>,
    raw: web::Bytes,
    trace: Option<TraceParentValue>,
}

async fn read_input<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Input<T>, HttpResponse> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !ct
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send application/json",
            None,
        ));
    }
    let body = read_body(
        payload,
        state.max_body_bytes,
        state.limits.http_body_timeout,
        req,
    )
    .await?
    .freeze();
    let value = parse_input(&body).map_err(|(msg, field)| {
        problem(StatusCode::BAD_REQUEST, "invalid", &msg, field.as_ref())
    })?;
    Ok(Input {
        value,
        sender: super::authn::principal(req).map(|p| p.subject),
        raw: body,
        trace: TraceParent::for_event(req),
    })
}

/// Validates the built event like any FHIR create and appends it.
/// Submits a built event through the intake path. The event carries its
/// own study digest (src/radiology), so DICOM enrichment is skipped.
async fn append<T>(
    state: &AppState,
    input: &Input<T>,
    event: String,
    key: String,
) -> Result<Committed, HttpResponse> {
    let mut submission = Submission::fhir(event)
        .with_key(key)
        // Canonical, so a retry may differ in whitespace and key order.
        .from_request(&vellum_json::canonicalize(&input.raw).unwrap_or_else(|_| input.raw.to_vec()))
        .without_enrichment()
        .with_trace(input.trace.clone());
    if let Some(sender) = &input.sender {
        submission = submission.from_sender(sender.clone());
    }
    match state.intake.submit(submission).await {
        Ok(Stored::Committed(c)) => Ok(c),
        // No If-None-Exist on this path; treated as an internal error.
        Ok(Stored::Existing(_)) => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store",
            "the event could not be stored",
            None,
        )),
        Err(IntakeError::Rejected(Rejection::Malformed(issues)))
        | Err(IntakeError::Rejected(Rejection::Invalid(issues))) => {
            // The input passed its own checks, so this is vellum's mapping:
            // answer with the OperationOutcome, log where (never what).
            let at: Vec<&str> = issues
                .iter()
                .filter_map(|i| i.expression.as_deref())
                .collect();
            tracing::error!(at = ?at, "ai: built AuditEvent failed validation");
            Err(response::outcome(
                StatusCode::UNPROCESSABLE_ENTITY,
                &crate::fhir::OperationOutcome::new(issues),
            ))
        }
        Err(IntakeError::Conflict { existing }) => Err(problem(
            StatusCode::CONFLICT,
            "conflict",
            &format!(
                "this id was already used by the same sender for a different request, \
                 stored as AuditEvent/{}; nothing was stored",
                existing.id
            ),
            None,
        )),
        Err(IntakeError::Append(AppendError::Overloaded)) | Err(IntakeError::Busy) => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the ledger is overloaded; retry later",
            None,
        )),
        Err(e) => {
            tracing::error!(error = %e, "ai: append failed");
            Err(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "the event could not be stored",
                None,
            ))
        }
    }
}

/// 201 (or 200 for a repeated event id) with the receipt.
fn receipt(c: &Committed) -> HttpResponse {
    let location = format!("/fhir/AuditEvent/{}", c.receipt.id);
    let status = if c.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header((header::LOCATION, location.clone()))
        .insert_header(("X-Vellum-Seq", c.receipt.seq.to_string()))
        .insert_header(("X-Vellum-Chain-Hash", c.receipt.chain_hash_hex()))
        .body(
            json!({
                "id": c.receipt.id,
                "seq": c.receipt.seq,
                "chain_hash": c.receipt.chain_hash_hex(),
                "location": location,
                "created": c.created,
            })
            .to_string(),
        )
}

fn store_error(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "ai: store read failed");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "store",
        "the store could not be read; retry later",
        None,
    )
}

async fn post_model(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let input: Input<input::Model> = match read_input(&req, payload, &state).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let x = &input.value;
    let event = build::deployment(x, Instant::now());
    match append(
        &state,
        &input,
        event,
        model_key(x.name.as_str(), x.version.as_str()),
    )
    .await
    {
        Ok(c) => receipt(&c),
        Err(r) => r,
    }
}

fn version_json(r: &Registration) -> Value {
    json!({
        "version": r.version,
        "deployed_at": r.deployed_at,
        "event_id": r.event_id,
        "provider": r.provider,
        "endpoint": r.endpoint,
        "training_date": r.training_date,
        "validation_ref": r.validation_ref,
    })
}

async fn get_models(state: web::Data<AppState>) -> HttpResponse {
    let regs = match lookup::registrations(&state.ledger).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let mut names: Vec<&str> = regs.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let models: Vec<Value> = names
        .iter()
        .map(|n| {
            let versions: Vec<&Registration> = sorted_versions(&regs, n);
            json!({
                "name": n,
                "current_version": versions.last().map(|r| r.version.clone()),
                "versions": versions.iter().map(|r| version_json(r)).collect::<Vec<_>>(),
            })
        })
        .collect();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json!({ "models": models }).to_string())
}

/// A model's versions by deployment time (ties: ledger order).
fn sorted_versions<'a>(regs: &'a [Registration], name: &str) -> Vec<&'a Registration> {
    let mut v: Vec<&Registration> = regs.iter().filter(|r| r.name == name).collect();
    v.sort_by(|a, b| a.deployed_at.cmp(&b.deployed_at));
    v
}

async fn get_versions(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let name = path.into_inner();
    if Token::parse(&name).is_err() {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid",
            "not a model name",
            Some(&Field::named("name")),
        );
    }
    let regs = match lookup::registrations(&state.ledger).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let versions = sorted_versions(&regs, &name);
    if versions.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "no version of this model is registered",
            None,
        );
    }
    HttpResponse::Ok().content_type("application/json").body(
        json!({
            "name": name,
            "versions": versions.iter().map(|r| version_json(r)).collect::<Vec<_>>(),
        })
        .to_string(),
    )
}

async fn post_inference(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let input: Input<input::Inference> = match read_input(&req, payload, &state).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let x = &input.value;
    let reg = match lookup::registration(
        &state.ledger,
        x.model.name.as_str(),
        x.model.version.as_str(),
        input.sender.as_deref(),
    )
    .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unregistered-model",
                "this model version is not registered (POST /ai/v1/models first)",
                Some(&Field::new(&["model".into(), "version".into()])),
            )
        }
        Err(e) => return store_error(e),
    };
    // vellum's own digest when a DICOM source is configured; else the
    // engine's digest is recorded as unverified.
    let ours = match &state.dicom {
        Some(service) => {
            service
                .study_digest_within_budget(x.study.uid.as_str())
                .await
        }
        None => None,
    };
    let mut event = build::inference(x, &reg, ours.as_ref(), &state.privacy, Instant::now());
    if state.dicom.is_some() && ours.is_none() {
        // Sources configured, digest not there yet: the digest worker
        // completes it with a follow-up event (docs/dicom.md).
        if let Some(marked) = crate::dicom::enrich::mark_pending(
            event.as_bytes(),
            x.study.uid.as_str(),
            "study not found in the configured sources, or not hashed within the budget",
        )
        .and_then(|b| String::from_utf8(b).ok())
        {
            event = marked;
        }
    }
    match append(
        &state,
        &input,
        event,
        event_key("inference", x.event_id.as_str()),
    )
    .await
    {
        Ok(c) => receipt(&c),
        Err(r) => r,
    }
}

async fn referenced_inference(
    state: &AppState,
    id: &str,
) -> Result<build::InferenceInfo, HttpResponse> {
    lookup::inference(&state.ledger, id)
        .await
        .map_err(|e| match e {
            InferenceLookupError::Store(e) => store_error(e),
            e => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-inference",
                &e.to_string(),
                Some(&Field::named("inference_id")),
            ),
        })
}

async fn post_override(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let input: Input<input::Override> = match read_input(&req, payload, &state).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let x = &input.value;
    let inf = match referenced_inference(&state, x.inference_id.as_str()).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let event = build::override_event(x, &inf, &state.privacy, Instant::now());
    match append(
        &state,
        &input,
        event,
        event_key("override", x.event_id.as_str()),
    )
    .await
    {
        Ok(c) => receipt(&c),
        Err(r) => r,
    }
}

async fn post_rendering(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let input: Input<input::Rendering> = match read_input(&req, payload, &state).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let x = &input.value;
    let inf = match referenced_inference(&state, x.inference_id.as_str()).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let event = build::rendering(x, &inf, Instant::now());
    match append(
        &state,
        &input,
        event,
        event_key("rendering", x.event_id.as_str()),
    )
    .await
    {
        Ok(c) => receipt(&c),
        Err(r) => r,
    }
}

/// A guard's finding (PHI in an output, a prompt-injection attempt): the
/// events the detection rules count.
async fn post_guard_event(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let input: Input<input::GuardEvent> = match read_input(&req, payload, &state).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let x = &input.value;
    let event = build::guard_event(x, Instant::now());
    match append(
        &state,
        &input,
        event,
        event_key("guard", x.event_id.as_str()),
    )
    .await
    {
        Ok(c) => receipt(&c),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let (msg, f) =
            parse_input::<input::Finding>(br#"{"code":"x","confidence":"1.5"}"#).unwrap_err();
        assert_eq!(f.unwrap().pointer, "/confidence", "{msg}");
        let (_, f) = parse_input::<input::Finding>(br#"{"code":"x","colour":1}"#).unwrap_err();
        assert_eq!(f.unwrap().path, "colour");
        let (_, f) =
            parse_input::<input::Study>(br#"{"uid":"1.2","priors":["1.2","1..3"]}"#).unwrap_err();
        let f = f.unwrap();
        assert_eq!(
            (f.path.as_str(), f.pointer.as_str()),
            ("priors[1]", "/priors/1")
        );
    }
}
