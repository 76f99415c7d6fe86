//! Checkpoints and proofs: `POST /admin/checkpoints`,
//! `GET /admin/checkpoints/latest`, `GET /admin/checkpoints/{size}`,
//! `GET /admin/proof/inclusion?seq=S&size=N`,
//! `GET /admin/proof/consistency?from=M&to=N`.

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
        .route("/admin/proof/consistency", web::get().to(consistency));
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

async fn latest(state: web::Data<AppState>) -> HttpResponse {
    note_response(state.ledger.stored_checkpoint(None).await)
}

async fn by_size(state: web::Data<AppState>, size: web::Path<i64>) -> HttpResponse {
    note_response(state.ledger.stored_checkpoint(Some(*size)).await)
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
