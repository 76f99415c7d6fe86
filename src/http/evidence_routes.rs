//! Checkpoints and proofs: `POST /admin/checkpoints`,
//! `GET /admin/checkpoints/latest`, `GET /admin/checkpoints/{size}`,
//! `GET /admin/proof/inclusion?seq=S&size=N`,
//! `GET /admin/proof/consistency?from=M&to=N`; and, as a witness of other
//! logs, `POST /witness/add-checkpoint` (C2SP tlog-witness).

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

use super::AppState;

const NOTE: &str = "text/plain; charset=utf-8";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/checkpoints", web::post().to(make_checkpoint))
        .route("/admin/checkpoints/latest", web::get().to(latest))
        .route("/admin/checkpoints/{size}", web::get().to(by_size))
        .route("/admin/proof/inclusion", web::get().to(inclusion))
        .route("/admin/proof/consistency", web::get().to(consistency))
        .route("/witness/add-checkpoint", web::post().to(add_checkpoint));
}

/// Largest `add-checkpoint` body: 63 proof lines and a checkpoint with a
/// few signatures fit many times over.
const MAX_WITNESS_BODY: usize = 64 * 1024;

async fn add_checkpoint(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    use crate::witness::Refusal;
    use actix_web::http::StatusCode;
    let text = |status: StatusCode, msg: String| {
        HttpResponse::build(status)
            .content_type(NOTE)
            .body(format!("{msg}\n"))
    };
    let Some(witness) = &state.witness else {
        return text(
            StatusCode::NOT_FOUND,
            "this vellum witnesses no log (witness.key_file)".into(),
        );
    };
    let body = match super::body::read_body(
        payload,
        MAX_WITNESS_BODY,
        state.limits.http_body_timeout,
        &req,
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the body is not UTF-8".into());
    };
    match witness.add_checkpoint(&state.ledger, body).await {
        Ok(line) => HttpResponse::Ok().content_type(NOTE).body(line),
        Err(Refusal::StaleOld(size)) => HttpResponse::Conflict()
            .content_type("text/x.tlog.size")
            .body(format!("{size}\n")),
        Err(Refusal::Store(e)) => unavailable(e),
        Err(e) => {
            let status = match e {
                Refusal::Malformed(_) | Refusal::OldTooLarge => StatusCode::BAD_REQUEST,
                Refusal::UnknownOrigin => StatusCode::NOT_FOUND,
                Refusal::NotSigned => StatusCode::FORBIDDEN,
                Refusal::Fork => StatusCode::CONFLICT,
                Refusal::BadProof => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(status = status.as_u16(), reason = %e, "witness: refused a checkpoint");
            text(status, e.to_string())
        }
    }
}

fn error(status: actix_web::http::StatusCode, msg: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": msg }))
}

fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "evidence: store unavailable");
    error(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "store unavailable",
    )
}

async fn make_checkpoint(state: web::Data<AppState>) -> HttpResponse {
    let Some(signer) = &state.signer else {
        return error(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "no checkpoint signing key is configured (signing_key_file)",
        );
    };
    match state.ledger.checkpoint(signer).await {
        Ok(note) => HttpResponse::Created().content_type(NOTE).body(note),
        Err(e) => unavailable(e),
    }
}

/// The newest checkpoint with its witnesses' cosignature lines.
async fn latest(state: web::Data<AppState>) -> HttpResponse {
    note_response(state.ledger.cosigned_checkpoint(None).await)
}

async fn by_size(state: web::Data<AppState>, size: web::Path<i64>) -> HttpResponse {
    note_response(state.ledger.cosigned_checkpoint(Some(*size)).await)
}

fn note_response(
    found: Result<Option<vellum_ledger::store::StoredCheckpoint>, vellum_ledger::store::StoreError>,
) -> HttpResponse {
    match found {
        Ok(Some(c)) => HttpResponse::Ok().content_type(NOTE).body(c.note),
        Ok(None) => error(actix_web::http::StatusCode::NOT_FOUND, "no such checkpoint"),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct InclusionQuery {
    seq: u64,
    /// Defaults to the current head.
    size: Option<u64>,
}

async fn inclusion(
    state: web::Data<AppState>,
    q: Result<web::Query<InclusionQuery>, actix_web::Error>,
) -> HttpResponse {
    let Ok(q) = q else {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "seq (and optionally size) must be positive integers",
        );
    };
    let size = match q.size {
        Some(n) => n,
        None => match state.ledger.head().await {
            Ok(h) => h.seq as u64,
            Err(e) => return unavailable(e),
        },
    };
    match state.ledger.inclusion_proof(q.seq, size).await {
        Ok(Some(p)) => HttpResponse::Ok().json(serde_json::json!({
            "leaf_index": p.leaf_index,
            "tree_size": p.tree_size,
            "leaf_hash": B64.encode(p.leaf_hash),
            "proof": p.proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        })),
        Ok(None) => error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "need 1 <= seq <= size <= the number of entries",
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn consistency(
    state: web::Data<AppState>,
    q: Result<web::Query<ConsistencyQuery>, actix_web::Error>,
) -> HttpResponse {
    let Ok(q) = q else {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "from and to must be non-negative integers",
        );
    };
    match state.ledger.consistency_proof(q.from, q.to).await {
        Ok(Some(p)) => HttpResponse::Ok().json(serde_json::json!({
            "first": q.from,
            "second": q.to,
            "proof": p.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        })),
        Ok(None) => error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "need from <= to <= the number of entries",
        ),
        Err(e) => unavailable(e),
    }
}
