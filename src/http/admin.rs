//! Health, readiness, the chain verification endpoint and `/metrics`.

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::fhir::search_index::PIXEL_DIGEST_FOLLOWUP;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/admin/verify", web::get().to(admin_verify))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.ledger.ready().await {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("store not ready")
    }
}

/// 200 with the verdict when the chain, the stored checkpoints (signed by
/// this server's key) and the Merkle tree hold; 409 with it when not.
async fn admin_verify(state: web::Data<AppState>) -> HttpResponse {
    let key = state.signer.as_ref().map(|s| s.verifier());
    match state.ledger.verify_all(key.as_ref()).await {
        Ok(v) if v.ok() => HttpResponse::Ok().json(v),
        Ok(v) => HttpResponse::Conflict().json(v),
        Err(e) => {
            tracing::error!(error = %e, "verify failed to read the store");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"error": "store unavailable"}))
        }
    }
}

/// Prometheus text exposition (format 0.0.4). The ledger figures come from
/// the database, so they agree across instances and survive restarts; the
/// mismatch counter is this process's.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let store = &state.ledger;
    let (head, pending, followups) = match (
        store.head().await,
        store.pending_count(&PIXEL_DIGEST_FOLLOWUP).await,
        store.followup_count(&PIXEL_DIGEST_FOLLOWUP).await,
    ) {
        (Ok(h), Ok(p), Ok(f)) => (h.seq, p, f),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::error!(error = %e, "metrics: store unavailable");
            return HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("store unavailable");
        }
    };
    let body = render_metrics(&[
        (
            "vellum_ledger_entries_total",
            "counter",
            "Entries appended to the ledger (the chain head's seq).",
            head.max(0) as u64,
        ),
        (
            "vellum_dicom_digest_mismatches_total",
            "counter",
            "Sender-supplied pixel digests that differed from vellum's, since this process started.",
            crate::dicom::enrich::mismatches(),
        ),
        (
            "vellum_syslog_messages_received_total",
            "counter",
            "ATNA syslog messages received (TCP, TLS and UDP), since this process started.",
            crate::syslog::counters().received,
        ),
        (
            "vellum_syslog_parse_failures_total",
            "counter",
            "ATNA syslog messages stored as parse-failure events (not a readable DICOM audit message).",
            crate::syslog::counters().parse_failures,
        ),
        (
            "vellum_syslog_udp_dropped_total",
            "counter",
            "ATNA syslog UDP datagrams dropped because too many were being stored at once.",
            crate::syslog::counters().udp_dropped,
        ),
        (
            "vellum_syslog_lost_total",
            "counter",
            "ATNA syslog messages received but not stored before shutdown (the store refused them).",
            crate::syslog::counters().lost,
        ),
        (
            "vellum_dicom_pending_digests",
            "gauge",
            "Study pixel digests still pending (no follow-up event yet).",
            pending.max(0) as u64,
        ),
        (
            "vellum_dicom_followups_total",
            "counter",
            "Follow-up pixel-digest events in the ledger.",
            followups.max(0) as u64,
        ),
    ]);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

fn render_metrics(metrics: &[(&str, &str, &str, u64)]) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in metrics {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_are_in_prometheus_text_format() {
        let t = super::render_metrics(&[("vellum_x_total", "counter", "X.", 3)]);
        assert_eq!(
            t,
            "# HELP vellum_x_total X.\n# TYPE vellum_x_total counter\nvellum_x_total 3\n"
        );
    }
}
