//! Health, readiness and the chain verification endpoint.

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::ledger::verify::verify;
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/admin/verify", web::get().to(admin_verify));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.ledger.store().ready().await {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("store not ready")
    }
}

/// 200 with the verdict when the chain holds, 409 with it when it does not.
async fn admin_verify(state: web::Data<AppState>) -> HttpResponse {
    match verify(state.ledger.store()).await {
        Ok(v) if v.ok() => HttpResponse::Ok().json(v),
        Ok(v) => HttpResponse::Conflict().json(v),
        Err(e) => {
            tracing::error!(error = %e, "verify failed to read the store");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"error": "store unavailable"}))
        }
    }
}
