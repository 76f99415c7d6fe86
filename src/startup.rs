//! Start-up: wires configuration, store, ledger, DICOM sources, listeners
//! and workers into one bound, not yet running [`Application`].

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web;

use crate::config::Settings;
use crate::dicom::service::DicomService;
use crate::digest_worker::DigestWorker;
use crate::http::{AppState, StartupVerify, VerifyState};
use crate::intake::Intake;
use crate::mllp::MllpListener;
use crate::syslog::{SyslogListener, UdpListener};
use vellum_ledger::store::{AnyStore, Store, StoreError};
use vellum_ledger::Ledger;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("dicom: {0}")]
    Dicom(String),
    #[error("checkpoint signing key: {0}")]
    Evidence(#[from] crate::evidence::EvidenceError),
    #[error("time seals (tsa_urls, tsa_ca_file): {0}")]
    TimeSeal(#[from] crate::time_seal::TimeSealError),
    #[error("authentication: {0}")]
    Auth(String),
    #[error("{0}")]
    HttpTls(std::io::Error),
    #[error("SIEM feed ([export]): {0}")]
    Export(#[from] crate::siem::DeliveryError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which listener (and the setting that names its address).
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet running server (zero2prod's `Application`): tests bind
/// port 0 and read the port back.
pub struct Application {
    port: u16,
    server: Server,
    ledger: Ledger,
    /// Every MLLP listener, in configuration order.
    mllp: Vec<MllpListener>,
    /// Completes pending pixel digests (None: no DICOM source, or off).
    digest_worker: Option<DigestWorker>,
    /// Makes checkpoints on schedule (None: no signing key).
    checkpointer: Option<tokio::task::JoinHandle<()>>,
    /// The scheduled drift check (None: `[reports] drift_check` off).
    drift_check: Option<tokio::task::JoinHandle<()>>,
    /// Keeps the reports' dataset near the head (None: refreshed on request
    /// only).
    report_cache_warmer: Option<tokio::task::JoinHandle<()>>,
    /// Seals new checkpoints with RFC 3161 tokens (None: no TSA configured).
    sealer: Option<tokio::task::JoinHandle<()>>,
    /// The ATNA syslog listeners (`[syslog]`; all off by default).
    syslog: SyslogListeners,
    /// Publishes new checkpoints (directory, command, witnesses).
    publisher: Option<tokio::task::JoinHandle<()>>,
    /// The SIEM feed's exporters, one per `[export]` destination.
    exporters: Vec<tokio::task::JoinHandle<()>>,
    /// The detection rules (None: `[detection] enabled` off).
    detection: Option<tokio::task::JoinHandle<()>>,
}

/// Every credential the HTTP gate accepts: the configured tokens, the token
/// file, the development token, client certificates and JWTs (whose key set
/// is loaded here). With no token and no JWT key set, the first start mints an
/// admin token, keeps only its hash in the token file and prints the token
/// once (on stderr, never through the logs).
async fn access_control(
    settings: &Settings,
) -> Result<crate::http::authn::AccessControl, StartError> {
    use crate::auth::{token_file, Authenticator};
    let auth = &settings.auth;
    let mut tokens = auth.tokens.clone();
    if let Some(path) = &auth.token_file {
        for grant in token_file::read(path).map_err(|e| StartError::Auth(e.to_string()))? {
            tokens.add(grant);
        }
    }
    // A site with an identity provider needs no first-start token.
    if tokens.is_empty() && auth.dev_token.is_none() && auth.jwt.is_none() {
        let Some(path) = &auth.token_file else {
            return Err(StartError::Auth(
                "no credentials are configured: set auth.tokens (VELLUM_AUTH_TOKENS) or \
                 auth.token_file (VELLUM_AUTH_TOKEN_FILE); `vellum token create` makes one"
                    .into(),
            ));
        };
        match token_file::create_first_admin(path).map_err(|e| StartError::Auth(e.to_string()))? {
            Some((token, grant)) => {
                eprintln!(
                    "\nvellum: first start — an admin token was created. It is shown only now;\n\
                     only its SHA-256 is kept (in {}).\n\n    {token}\n\n\
                     Use it as `Authorization: Bearer <token>`; make tokens for your systems\n\
                     with `vellum token create`.\n",
                    path.display()
                );
                tokens.add(grant);
            }
            // Another process created it first: its grant is in the file.
            None => {
                for grant in token_file::read(path).map_err(|e| StartError::Auth(e.to_string()))? {
                    tokens.add(grant);
                }
            }
        }
    }
    let dev = auth.dev_token.as_ref().map(|t| t.expose().as_str());
    if dev.is_some() {
        tracing::warn!(
            "VELLUM_DEV_TOKEN is set: a token with every role is accepted (local use only)"
        );
    }
    if !auth.record_reads {
        tracing::warn!("auth.record_reads is off: reads of the audit log are NOT recorded");
    }
    let mut authenticator = Authenticator::new(tokens, dev).with_clients(auth.clients.clone());
    if let Some(jwt) = &auth.jwt {
        let verifier = crate::auth::jwt::JwtVerifier::start(jwt.clone())
            .await
            .map_err(|e| StartError::Auth(format!("auth.jwks_file / auth.jwks_url: {e}")))?;
        verifier.spawn_refresh();
        authenticator = authenticator.with_jwt(verifier);
    }
    Ok(crate::http::authn::AccessControl::new(
        authenticator,
        auth.metrics_public,
        auth.record_reads,
    ))
}

/// The `[syslog]` listeners that are on.
#[derive(Default)]
struct SyslogListeners {
    tcp: Option<SyslogListener>,
    tls: Option<SyslogListener>,
    udp: Option<UdpListener>,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let store = AnyStore::connect(&settings.database_url, settings.database_role.as_deref())
            .await?
            .with_indexer(crate::fhir::search_index::derive_rows)
            .with_keyer(crate::intake::keys::expected_key)
            .with_summarizer(crate::radiology::summary::of_tape);
        if settings.migrate_on_start {
            store.migrate().await?;
            // A server that may migrate but not grant (not the tables'
            // owner) still starts; `vellum migrate` as the owner grants.
            if let Err(e) = store
                .grant_writer_role(&settings.database_writer_role)
                .await
            {
                tracing::warn!(error = %e, role = %settings.database_writer_role,
                    "could not grant the writer role; run `vellum migrate` as the tables' owner");
            }
        }
        let ledger = Ledger::start_observed(
            store,
            settings.writer,
            Arc::new(crate::metrics::WriterMetrics),
        );
        let signer = crate::evidence::signer_for(&settings.evidence, &settings.database_url, true)?
            .map(Arc::new);
        if signer.is_none() {
            tracing::warn!("no checkpoint signing key (signing_key_file): no checkpoints are made");
        }
        let checkpointer = signer
            .clone()
            .map(|s| crate::evidence::spawn_checkpointer(ledger.clone(), s, &settings.evidence));
        let publisher = crate::checkpoint_publisher::spawn(
            ledger.clone(),
            settings.publish.clone(),
            &settings.witness,
        );
        let witness = match &settings.witness.key_file {
            Some(path) => {
                let w = crate::witness::Witness::new(
                    crate::evidence::read_cosigner(path)?,
                    settings.witness.logs.clone(),
                );
                tracing::info!(
                    vkey = %w.vkey(),
                    logs = settings.witness.logs.len(),
                    "witnessing other logs"
                );
                Some(Arc::new(w))
            }
            None => None,
        };
        let sealer = crate::time_seal::Sealer::from_settings(&settings.evidence)?
            .map(|s| crate::time_seal::spawn_sealer(ledger.clone(), Arc::new(s)));
        let dicom_service = Arc::new(
            DicomService::new(&settings.dicom).map_err(|e| StartError::Dicom(e.to_string()))?,
        );
        // Without a source the create paths skip the DICOM step entirely.
        let dicom_sources = dicom_service.has_sources().then(|| dicom_service.clone());
        let mllp = bind_mllp(settings, &ledger, dicom_sources.clone()).await?;
        let syslog = bind_syslog(settings, &ledger, dicom_sources.clone()).await?;
        let bind_error = |source| StartError::Bind {
            what: "HTTP (http_addr)",
            addr: settings.http_addr,
            source,
        };
        let listener = TcpListener::bind(settings.http_addr).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let intake = Intake::new(ledger.clone(), dicom_sources.clone(), settings.limits.json);
        let startup_verify = Arc::new(StartupVerify::default());
        spawn_startup_verify(ledger.clone(), signer.clone(), startup_verify.clone());
        let report_cache = Arc::new(crate::reports::cache::ReportCache::new(ledger.clone()));
        let report_cache_warmer = (settings.reports.cache_refresh_seconds > 0).then(|| {
            tokio::spawn(crate::reports::cache::keep_warm(
                report_cache.clone(),
                std::time::Duration::from_secs(settings.reports.cache_refresh_seconds),
            ))
        });
        let state = web::Data::new(AppState {
            ledger: ledger.clone(),
            intake: intake.clone(),
            max_body_bytes: settings.max_body_bytes,
            limits: settings.limits,
            public_base_url: settings.public_base_url.clone(),
            privacy: settings.privacy.clone(),
            dicom: dicom_sources,
            reports: settings.reports,
            report_cache: report_cache.clone(),
            startup_verify,
            signer,
            witness,
            access: access_control(settings).await?,
            bulk_exports: Arc::new(crate::bulk_export::BulkExports::new(
                ledger.clone(),
                crate::bulk_export::jobs_dir(&settings.bulk_export, &settings.database_url),
                settings.bulk_export.max_jobs,
            )),
            witness_vkeys: settings
                .witness
                .targets
                .iter()
                .map(|t| t.vkey.clone())
                .collect(),
            tsa_trust: match &settings.evidence.tsa_ca_file {
                Some(path) => Some(Arc::new(crate::time_seal::read_trust(path)?)),
                None => None,
            },
            detection: Arc::new(settings.detection.clone()),
        });
        let drift_check = settings.reports.drift_check.then(|| {
            tokio::spawn(crate::reports::drift_check::run(
                report_cache.clone(),
                intake.clone(),
                crate::reports::drift::DriftRule::of(&settings.reports),
                std::time::Duration::from_secs(settings.reports.drift_check_seconds),
            ))
        });
        let detection_intake = intake.clone();
        let digest_worker = DigestWorker::new(intake, dicom_service.clone());
        let tls = match &settings.http_tls {
            Some(files) => {
                let (acceptor, reloader) =
                    crate::http::tls::acceptor(files).map_err(StartError::HttpTls)?;
                tokio::spawn(crate::http::tls::reload_on_sighup(reloader));
                Some(acceptor)
            }
            None => None,
        };
        let server = crate::http::server(listener, state, web::Data::from(dicom_service), tls)
            .map_err(bind_error)?;
        // Last: nothing after this can fail and leave them running.
        let exporters = crate::siem::spawn_all(&ledger, &settings.export)?;
        let detection = settings.detection.enabled.then(|| {
            let e = crate::detection::Evaluator::new(
                ledger.clone(),
                detection_intake,
                Arc::new(settings.detection.clone()),
            );
            tokio::spawn(e.run())
        });
        Ok(Application {
            port,
            server,
            ledger,
            mllp,
            digest_worker,
            syslog,
            checkpointer,
            drift_check,
            report_cache_warmer,
            publisher,
            exporters,
            sealer,
            detection,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first MLLP listener's bound port, when MLLP is on.
    pub fn mllp_port(&self) -> Option<u16> {
        self.mllp.first().map(|m| m.local_addr().port())
    }

    /// Every MLLP listener's bound port, in configuration order (plain
    /// `mllp_addr` listeners, then `mllp_tls_addr` ones).
    pub fn mllp_ports(&self) -> Vec<u16> {
        self.mllp.iter().map(|m| m.local_addr().port()).collect()
    }

    /// The bound syslog ports (TCP, TLS, UDP), when on.
    pub fn syslog_ports(&self) -> (Option<u16>, Option<u16>, Option<u16>) {
        let s = &self.syslog;
        (
            s.tcp.as_ref().map(|l| l.local_addr().port()),
            s.tls.as_ref().map(|l| l.local_addr().port()),
            s.udp.as_ref().map(|l| l.local_addr().port()),
        )
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Serves until SIGTERM/SIGINT (graceful: in-flight requests finish, so
    /// every acknowledged append has committed). The MLLP listener stops
    /// accepting on the signal (or when the HTTP server ends) and finishes
    /// the messages it has received before this returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            ledger,
            mllp,
            digest_worker,
            syslog,
            checkpointer,
            drift_check,
            report_cache_warmer,
            publisher,
            exporters,
            sealer,
            detection,
            ..
        } = self;
        drop(ledger);
        // The worker stops after the server (its append in flight commits).
        let (worker_stop, worker_rx) = tokio::sync::watch::channel(false);
        let worker = digest_worker.map(|w| tokio::spawn(w.run(worker_rx)));
        let result = serve(server, mllp, syslog).await;
        for task in [checkpointer, sealer, report_cache_warmer]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        if let Some(d) = drift_check {
            d.abort();
        }
        if let Some(p) = publisher {
            p.abort();
        }
        // An unacknowledged batch is sent again after the next start.
        for e in exporters {
            e.abort();
        }
        if let Some(d) = detection {
            d.abort();
        }
        let _ = worker_stop.send(true);
        if let Some(w) = worker {
            let _ = w.await;
        }
        result
    }
}

/// Recomputes the whole ledger once at start-up, in the background: the
/// listeners serve meanwhile, but `/readyz` answers 503 until it held, and
/// for good when it found tampering (also logged at ERROR and in
/// `vellum_verify_last_ok`).
fn spawn_startup_verify(
    ledger: Ledger,
    signer: Option<Arc<vellum_ledger::note::NoteSigner>>,
    state: Arc<StartupVerify>,
) {
    tokio::spawn(async move {
        let key = signer.as_ref().map(|s| s.verifier());
        let started = std::time::Instant::now();
        let metrics = crate::metrics::global();
        match ledger.verify_all(key.as_ref()).await {
            Ok(v) => {
                metrics.verified(v.ok(), v.entries.max(0) as u64);
                match &v.problem {
                    None => {
                        tracing::info!(
                            entries = v.entries,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "start-up verification held"
                        );
                        state.set(VerifyState::Held);
                    }
                    Some(p) => {
                        tracing::error!(
                            seq = p.seq,
                            "start-up verification FAILED: the ledger was altered; /readyz answers 503"
                        );
                        state.set(VerifyState::Tampered { seq: p.seq });
                    }
                }
            }
            Err(e) => {
                metrics.store_error("verify");
                tracing::error!(error = %e, "start-up verification could not read the store");
                state.set(VerifyState::Unreadable);
            }
        }
    });
}

/// Binds every configured MLLP listener. One ledger for all of them (so
/// MSH-10 dedupe spans them); each has its own connection limit.
async fn bind_mllp(
    settings: &Settings,
    ledger: &Ledger,
    dicom: Option<Arc<DicomService>>,
) -> Result<Vec<MllpListener>, StartError> {
    let mut mllp = Vec::with_capacity(settings.mllp_listeners.len());
    for spec in &settings.mllp_listeners {
        let mut listener_settings = settings.mllp.clone();
        if !spec.tls {
            listener_settings.tls = None;
        }
        let addr = spec.addr;
        mllp.push(
            MllpListener::bind(addr, ledger.clone(), listener_settings)
                .await
                .map_err(|source| StartError::Bind {
                    what: if spec.tls {
                        "MLLP over TLS (mllp_tls_addr)"
                    } else {
                        "MLLP (mllp_addr)"
                    },
                    addr,
                    source,
                })?
                .with_dicom(dicom.clone())
                .with_clients(&settings.auth.clients),
        );
    }
    Ok(mllp)
}

/// Binds the `[syslog]` listeners that are on (one ledger, as MLLP).
async fn bind_syslog(
    settings: &Settings,
    ledger: &Ledger,
    dicom: Option<Arc<DicomService>>,
) -> Result<SyslogListeners, StartError> {
    let s = &settings.syslog;
    let intake = Intake::new(ledger.clone(), dicom, vellum_json::Limits::INTERNAL);
    let bind_error = |what, addr| move |source| StartError::Bind { what, addr, source };
    let mut out = SyslogListeners::default();
    for (addr, tls) in [(s.addr, false), (s.tls_addr, true)] {
        if let Some(addr) = addr {
            let l = SyslogListener::bind(addr, tls, intake.clone(), s.clone())
                .await
                .map_err(bind_error(
                    if tls {
                        "syslog over TLS (syslog.tls_addr)"
                    } else {
                        "syslog over TCP (syslog.addr)"
                    },
                    addr,
                ))?
                .with_clients(&settings.auth.clients);
            if tls {
                out.tls = Some(l);
            } else {
                out.tcp = Some(l);
            }
        }
    }
    if let Some(addr) = s.udp_addr {
        out.udp = Some(
            UdpListener::bind(addr, intake, s.clone())
                .await
                .map_err(bind_error("syslog over UDP (syslog.udp_addr)", addr))?,
        );
    }
    Ok(out)
}

/// Runs the HTTP server, the MLLP and the syslog listeners until stopped.
async fn serve(
    server: Server,
    mllp: Vec<MllpListener>,
    syslog: SyslogListeners,
) -> std::io::Result<()> {
    let no_syslog = syslog.tcp.is_none() && syslog.tls.is_none() && syslog.udp.is_none();
    if mllp.is_empty() && no_syslog {
        return server.await;
    }
    // One stop signal for every listener: the termination signal or the
    // HTTP server ending.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_task = tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            termination_signal().await;
            let _ = stop_tx.send(true);
        }
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut mllp_tasks: Vec<_> = mllp
        .into_iter()
        .map(|listener| tokio::spawn(listener.run(stopped(stop_rx.clone()))))
        .collect();
    for l in [syslog.tcp, syslog.tls].into_iter().flatten() {
        mllp_tasks.push(tokio::spawn(l.run(stopped(stop_rx.clone()))));
    }
    if let Some(l) = syslog.udp {
        mllp_tasks.push(tokio::spawn(l.run(stopped(stop_rx.clone()))));
    }
    let result = server.await;
    let _ = stop_tx.send(true);
    for task in mllp_tasks {
        let _ = task.await;
    }
    signal_task.abort();
    result
}

/// SIGTERM or SIGINT (the signals actix-web stops on).
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
