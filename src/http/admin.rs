//! Health, readiness, the chain verification endpoint and `/metrics`.

use actix_web::{web, HttpResponse};

use super::{AppState, VerifyState};
use crate::fhir::search_index::PIXEL_DIGEST_FOLLOWUP;
use crate::metrics::Snapshot;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/admin/verify", web::get().to(admin_verify))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// 200 only when the store answers, is migrated and the start-up
/// verification held; 503 with the reason otherwise.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let unavailable = |why: String| {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(why)
    };
    if !state.ledger.ready().await {
        return unavailable("store not ready".into());
    }
    match state.startup_verify.get() {
        VerifyState::Held => HttpResponse::Ok().content_type("text/plain").body("ready"),
        VerifyState::Running => unavailable("verifying the ledger".into()),
        VerifyState::Tampered { seq } => unavailable(format!(
            "ledger verification failed at seq {seq}: run `vellum verify`"
        )),
        VerifyState::Unreadable => {
            unavailable("ledger verification could not read the store".into())
        }
    }
}

/// 200 with the verdict when the chain, the stored checkpoints (signed by
/// this server's key) and the Merkle tree hold; 409 with it when not.
async fn admin_verify(state: web::Data<AppState>) -> HttpResponse {
    let key = state.signer.as_ref().map(|s| s.verifier());
    let metrics = crate::metrics::global();
    match state.ledger.verify_all(key.as_ref()).await {
        Ok(v) => {
            metrics.verified(v.ok(), v.entries.max(0) as u64);
            if v.ok() {
                HttpResponse::Ok().json(v)
            } else {
                HttpResponse::Conflict().json(v)
            }
        }
        Err(e) => {
            metrics.store_error("verify");
            tracing::error!(error = %e, "verify failed to read the store");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"error": "store unavailable"}))
        }
    }
}

/// OpenMetrics text. The ledger figures come from the database, so they
/// agree across instances and survive restarts; the rest are this
/// process's since it started.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let store = &state.ledger;
    let (head, pending, followups) = match (
        store.head().await,
        store.pending_count(&PIXEL_DIGEST_FOLLOWUP).await,
        store.followup_count(&PIXEL_DIGEST_FOLLOWUP).await,
    ) {
        (Ok(h), Ok(p), Ok(f)) => (h.seq, p, f),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            crate::metrics::global().store_error("read");
            tracing::error!(error = %e, "metrics: store unavailable");
            return HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("store unavailable");
        }
    };
    let syslog = crate::syslog::counters();
    let (depth, capacity) = store.queue_depth();
    let snapshot = Snapshot {
        ledger_entries: head.max(0) as u64,
        pending_digests: pending.max(0) as u64,
        followups: followups.max(0) as u64,
        digest_mismatches: crate::dicom::enrich::mismatches(),
        syslog_received: syslog.received,
        syslog_parse_failures: syslog.parse_failures,
        syslog_udp_dropped: syslog.udp_dropped,
        syslog_lost: syslog.lost,
        writer_queue_depth: depth as u64,
        writer_queue_capacity: capacity as u64,
    };
    match crate::metrics::global().encode(snapshot) {
        Ok(body) => HttpResponse::Ok()
            .content_type(crate::metrics::CONTENT_TYPE)
            .body(body),
        Err(_) => HttpResponse::InternalServerError()
            .content_type("text/plain")
            .body("metrics could not be encoded"),
    }
}
