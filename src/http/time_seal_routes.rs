//! `GET /admin/checkpoints/{size}/timestamps`: the RFC 3161 tokens that seal
//! the checkpoint of `size` entries, each as base64 of its DER, in the order
//! they were obtained.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/admin/checkpoints/{size}/timestamps",
        web::get().to(timestamps),
    );
}

fn error(status: actix_web::http::StatusCode, msg: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": msg }))
}

async fn timestamps(state: web::Data<AppState>, size: web::Path<i64>) -> HttpResponse {
    let size = *size;
    let (checkpoint, seals) = match (
        state.ledger.stored_checkpoint(Some(size)).await,
        state.ledger.time_seals(Some(size)).await,
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "time seals: store unavailable");
            return error(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable",
            );
        }
    };
    if checkpoint.is_none() {
        return error(actix_web::http::StatusCode::NOT_FOUND, "no such checkpoint");
    }
    let list: Vec<_> = seals
        .iter()
        .map(|s| {
            serde_json::json!({
                "tsa": s.tsa,
                "gen_time": s.gen_time,
                "token": B64.encode(&s.token),
            })
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({
        "tree_size": size,
        "timestamps": list,
    }))
}
