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
/// this server's key), the Merkle tree, the configured witnesses' stored
/// cosignatures and the stored time seals hold; 409 with it when not.
async fn admin_verify(state: web::Data<AppState>) -> HttpResponse {
    let key = state.signer.as_ref().map(|s| s.verifier());
    let metrics = crate::metrics::global();
    let unavailable = |e: &dyn std::fmt::Display| {
        metrics.store_error("verify");
        tracing::error!(error = %e, "verify failed to read the store");
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": "store unavailable"}))
    };
    let v = match state.ledger.verify_all(key.as_ref()).await {
        Ok(v) => v,
        Err(e) => return unavailable(&e),
    };
    let cosigned =
        match crate::evidence::verify_cosignatures(&state.ledger, &state.witness_vkeys).await {
            Ok(c) => c,
            Err(e) => return unavailable(&e),
        };
    let seals =
        match crate::time_seal::verify_stored(&state.ledger, state.tsa_trust.as_deref()).await {
            Ok(s) => s,
            Err(e) => return unavailable(&e),
        };
    let ok = v.ok() && cosigned.problem.is_none() && seals.problem.is_none();
    metrics.verified(ok, v.entries.max(0) as u64);
    let mut body = serde_json::to_value(&v).unwrap_or_default();
    if let Some(o) = body.as_object_mut() {
        o.insert(
            "cosignatures".into(),
            serde_json::to_value(&cosigned).unwrap_or_default(),
        );
        o.insert(
            "time_seals".into(),
            serde_json::to_value(&seals).unwrap_or_default(),
        );
    }
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Conflict().json(body)
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
