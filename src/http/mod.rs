//! The actix-web application: FHIR routes, admin, health. Built from
//! state that `crate::startup` has already opened.

mod admin;
mod ai_routes;
mod atna_routes;
pub mod authn;
mod body;
mod bulk_export_routes;
mod bundle_routes;
mod detection_routes;
mod dicom_routes;
mod evidence_routes;
mod fhir_routes;
mod format;
mod intake_response;
mod metrics_middleware;
mod peer_cap;
mod readiness;
mod report_routes;
mod request_span;
mod response;
mod search_routes;
mod time_seal_routes;
pub mod tls;
mod trace_context;
mod visibility;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use crate::dicom::service::DicomService;
use vellum_ledger::Ledger;

pub use readiness::{StartupVerify, VerifyState};

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub ledger: Ledger,
    /// The one submit path (validate → enrich → key → append).
    pub intake: crate::intake::Intake,
    pub max_body_bytes: usize,
    /// `[limits]`: bounds on request bodies.
    pub limits: crate::config::LimitSettings,
    pub public_base_url: Option<String>,
    pub privacy: crate::config::PrivacySettings,
    /// The study sources for event enrichment; `None` without a source, so
    /// the create paths then skip the DICOM step entirely.
    pub dicom: Option<std::sync::Arc<crate::dicom::service::DicomService>>,
    /// `[reports]`: QA report settings.
    pub reports: crate::config::ReportSettings,
    /// The reports' in-memory dataset, refreshed before each report.
    pub report_cache: std::sync::Arc<crate::reports::cache::ReportCache>,
    /// The start-up verification's outcome; `/readyz` is 200 only once it held.
    pub startup_verify: std::sync::Arc<StartupVerify>,
    /// Signs checkpoints; `None` when no key is configured.
    pub signer: Option<std::sync::Arc<vellum_ledger::note::NoteSigner>>,
    /// vellum as a witness of other logs; `None` without `witness.key_file`.
    pub witness: Option<std::sync::Arc<crate::witness::Witness>>,
    /// Who may call what; the gate in front of every route.
    pub access: authn::AccessControl,
    /// FHIR `$export` jobs.
    pub bulk_exports: std::sync::Arc<crate::bulk_export::BulkExports>,
    /// The configured witnesses' keys: `/admin/verify` checks the stored
    /// cosignatures with them.
    pub witness_vkeys: Vec<vellum_ledger::cosignature::CosignerVerifier>,
    /// The configured TSA certificates: `/admin/verify` checks the stored
    /// time seals against them (against their checkpoints only without).
    pub tsa_trust: Option<std::sync::Arc<openssl::x509::store::X509Store>>,
    /// `[detection]`: the rules `/reports/detections` recomputes.
    pub detection: std::sync::Arc<crate::config::DetectionSettings>,
}

/// The HTTP server on an already bound `listener`, serving `state`, over
/// TLS when `tls` is given (see [`tls::acceptor`]). It runs once awaited
/// (or spawned).
pub fn server(
    listener: TcpListener,
    state: web::Data<AppState>,
    dicom: web::Data<DicomService>,
    tls: Option<openssl::ssl::SslAcceptorBuilder>,
) -> std::io::Result<Server> {
    let limits = state.limits;
    // actix counts connections per worker thread.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let per_worker = limits.http_max_connections.div_ceil(workers).max(1);
    let peers = crate::peers::PeerCounts::default();
    let per_peer = limits.http_max_connections_per_peer;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(authn::gate))
            .wrap(tracing_actix_web::TracingLogger::<request_span::PhiFreeSpan>::new())
            // Outermost: assigns the request id the span above reads.
            .wrap(actix_web::middleware::from_fn(metrics_middleware::record))
            .wrap(actix_web::middleware::from_fn(peer_cap::refuse_over_cap))
            .app_data(state.clone())
            .configure(fhir_routes::configure)
            .configure(admin::configure)
            .configure(evidence_routes::configure)
            .configure(time_seal_routes::configure)
            .configure(ai_routes::configure)
            .configure(atna_routes::configure)
            .configure(report_routes::configure)
            .configure(detection_routes::configure)
            .app_data(dicom.clone())
            .configure(dicom_routes::configure)
    })
    .workers(workers)
    .max_connections(per_worker)
    // One hook per connection: the per-peer slot, and the client
    // certificate of a TLS connection.
    .on_connect(move |conn, data| {
        peer_cap::on_connect(&peers, per_peer, conn, data);
        tls::capture_peer_certificate(conn, data);
    })
    .client_request_timeout(limits.http_header_timeout);
    let server = match tls {
        Some(acceptor) => server.listen_openssl(listener, acceptor)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
