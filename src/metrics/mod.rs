//! The process's Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! One registry per process: the edges (HTTP middleware, MLLP, the digest
//! code, the writer observer) record into [`global()`]; figures that live in
//! the database (entries, pending digests) are read by the handler at scrape
//! time and passed in as a [`Snapshot`]. Labels carry only vocabulary vellum
//! defines (route templates, message types, ACK codes): never identifiers.

mod process;
mod snapshot;

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use snapshot::Snapshot;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/fhir/AuditEvent/{id}`), never the path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MllpLabels {
    /// MSH-9 message code and trigger (`ORU^R01`), or `unknown`.
    pub message_type: String,
    /// MSA-1: AA, AE or AR.
    pub ack_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `mllp` or `syslog`.
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabels {
    pub ack_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// What failed: `append` (the writer's commit), `read`, `search`, `verify`.
    pub operation: String,
}

/// A model version and site (`*`: all sites) of the drift check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    pub model: String,
    pub version: String,
    pub site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    /// Where a checkpoint went: `dir`, `command` or `witness`.
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    /// A SIEM feed destination: `syslog-tcp`, `syslog-tls` or `http`.
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// A detection rule (`phi-read-volume`, `auth-failures`, …).
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SealLabels {
    /// `sealed`, `unreachable`, `refused`, `invalid` or `store_error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub commit: String,
}

/// Latency buckets from 0.5 ms to ≈ 33 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// Every metric vellum records while running.
pub struct Metrics {
    registry: Registry,
    snapshot: std::sync::Arc<snapshot::SnapshotCollector>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub mllp_messages: Family<MllpLabels, Counter>,
    pub mllp_ack_duration: Family<AckLabels, Histogram, fn() -> Histogram>,
    pub client_certificates_refused: Family<ListenerLabels, Counter>,
    pub writer_batch_events: Histogram,
    pub writer_commit_duration: Histogram,
    pub store_errors: Family<OperationLabels, Counter>,
    pub search_duration: Histogram,
    pub dicom_digest_bytes: Counter,
    pub dicom_digest_duration: Histogram,
    pub verify_last_ok: Gauge,
    pub verify_last_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub verify_last_entries: Gauge,
    /// Windows in drift at the last drift check.
    pub drift_windows: Family<DriftLabels, Gauge>,
    pub drift_alerts_appended: Counter,
    pub checkpoint_publish_failures: Family<PublishLabels, Counter>,
    pub witness_cosignatures: Counter,
    pub export_sent: Family<DestinationLabels, Counter>,
    pub export_errors: Family<DestinationLabels, Counter>,
    pub export_acknowledged: Family<DestinationLabels, Gauge>,
    pub export_lag: Family<DestinationLabels, Gauge>,
    pub time_seals: Family<SealLabels, Counter>,
    pub detection_alerts: Family<RuleLabels, Counter>,
    pub detection_lag: Gauge,
    pub detection_replayed: Gauge,
    pub tls_refusals_unrecorded: Family<ListenerLabels, Counter>,
    /// Serialises scrapes: the snapshot is set, then encoded.
    scrape: Mutex<()>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            snapshot: Default::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            mllp_messages: Family::default(),
            mllp_ack_duration: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            client_certificates_refused: Family::default(),
            writer_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            writer_commit_duration: seconds_histogram(),
            store_errors: Family::default(),
            search_duration: seconds_histogram(),
            dicom_digest_bytes: Counter::default(),
            dicom_digest_duration: seconds_histogram(),
            verify_last_ok: Gauge::default(),
            verify_last_time: Gauge::default(),
            verify_last_entries: Gauge::default(),
            drift_windows: Family::default(),
            drift_alerts_appended: Counter::default(),
            checkpoint_publish_failures: Family::default(),
            witness_cosignatures: Counter::default(),
            export_sent: Family::default(),
            export_errors: Family::default(),
            export_acknowledged: Family::default(),
            export_lag: Family::default(),
            time_seals: Family::default(),
            detection_alerts: Family::default(),
            detection_lag: Gauge::default(),
            detection_replayed: Gauge::default(),
            tls_refusals_unrecorded: Family::default(),
            scrape: Mutex::new(()),
        };
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                commit: option_env!("BUILD_GIT_COMMIT").unwrap_or("unknown").into(),
            })
            .set(1);
        registry.register(
            "vellum_build_info",
            "The running build: version and git commit (value always 1).",
            build,
        );
        registry.register(
            "vellum_http_requests",
            "HTTP requests answered, by method, route template and status.",
            m.http_requests.clone(),
        );
        registry.register(
            "vellum_http_request_duration_seconds",
            "HTTP request latency (until the response head), by method and route template.",
            m.http_duration.clone(),
        );
        registry.register(
            "vellum_mllp_messages",
            "HL7 v2 messages acknowledged over MLLP, by message type and ACK code.",
            m.mllp_messages.clone(),
        );
        registry.register(
            "vellum_client_certificates_refused",
            "MLLP and syslog TLS connections whose client certificate was refused (none, not signed by the client CA, not in auth.clients, or without the source role).",
            m.client_certificates_refused.clone(),
        );
        registry.register(
            "vellum_mllp_ack_duration_seconds",
            "Time from a whole MLLP frame received to its ACK written, by ACK code.",
            m.mllp_ack_duration.clone(),
        );
        registry.register(
            "vellum_writer_batch_events",
            "Events committed per writer transaction (group commit batch size).",
            m.writer_batch_events.clone(),
        );
        registry.register(
            "vellum_writer_commit_duration_seconds",
            "Duration of one writer batch: chain, insert and commit.",
            m.writer_commit_duration.clone(),
        );
        registry.register(
            "vellum_store_errors",
            "Store operations that failed, by operation.",
            m.store_errors.clone(),
        );
        registry.register(
            "vellum_search_duration_seconds",
            "AuditEvent search latency in the store (page and count).",
            m.search_duration.clone(),
        );
        registry.register(
            "vellum_dicom_digest_bytes",
            "Pixel-data bytes hashed for DICOM digests.",
            m.dicom_digest_bytes.clone(),
        );
        registry.register(
            "vellum_dicom_digest_duration_seconds",
            "Time to compute one study pixel digest (all its instances).",
            m.dicom_digest_duration.clone(),
        );
        registry.register(
            "vellum_verify_last_ok",
            "1 when the last full verification (start-up or /admin/verify) held, 0 when it found tampering or has not run.",
            m.verify_last_ok.clone(),
        );
        registry.register(
            "vellum_verify_last_timestamp_seconds",
            "Unix time the last full verification finished (0: none yet).",
            m.verify_last_time.clone(),
        );
        registry.register(
            "vellum_verify_last_entries",
            "Entries the last full verification checked.",
            m.verify_last_entries.clone(),
        );
        registry.register(
            "vellum_drift_alert_windows",
            "Windows whose override rate drifted from the baseline, per model, version and site (* = all sites), at the last drift check.",
            m.drift_windows.clone(),
        );
        registry.register(
            "vellum_drift_alerts_appended",
            "Drift alert events appended by the scheduled drift check.",
            m.drift_alerts_appended.clone(),
        );
        registry.register(
            "vellum_checkpoint_publish_failures",
            "New checkpoints that could not be written to evidence.checkpoint_dir, handed to evidence.checkpoint_command, or cosigned by a witness, by target.",
            m.checkpoint_publish_failures.clone(),
        );
        registry.register(
            "vellum_witness_cosignatures",
            "Witness cosignatures of this log's checkpoints verified and stored.",
            m.witness_cosignatures.clone(),
        );
        registry.register(
            "vellum_export_sent_events",
            "Events a SIEM feed destination acknowledged, by destination (a batch sent again after a crash counts again).",
            m.export_sent.clone(),
        );
        registry.register(
            "vellum_export_errors",
            "Failed SIEM feed deliveries (each is retried), by destination.",
            m.export_errors.clone(),
        );
        registry.register(
            "vellum_export_acknowledged_seq",
            "The highest seq a SIEM feed destination acknowledged.",
            m.export_acknowledged.clone(),
        );
        registry.register(
            "vellum_export_lag_events",
            "Committed entries a SIEM feed destination has not acknowledged yet (head seq - acknowledged seq).",
            m.export_lag.clone(),
        );
        registry.register(
            "vellum_time_seals",
            "RFC 3161 time-seal requests for checkpoints, by outcome (sealed or why not).",
            m.time_seals.clone(),
        );
        registry.register(
            "vellum_detection_alerts",
            "Security alerts appended by the detection rules, by rule.",
            m.detection_alerts.clone(),
        );
        registry.register(
            "vellum_detection_lag_events",
            "Committed entries the detection rules have not evaluated yet (head seq - evaluated seq).",
            m.detection_lag.clone(),
        );
        registry.register(
            "vellum_detection_replayed_entries",
            "Entries the detection rules read again at their last start to rebuild their windows.",
            m.detection_replayed.clone(),
        );
        registry.register(
            "vellum_tls_refusals_unrecorded",
            "Refused TLS client certificates not recorded in the ledger (over the rate limit), by listener.",
            m.tls_refusals_unrecorded.clone(),
        );
        registry.register_collector(Box::new(m.snapshot.clone()));
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every metric, with `snapshot` as the
    /// database-derived figures.
    pub fn encode(&self, snapshot: Snapshot) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.snapshot.set(snapshot);
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.into(),
                route: route.into(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.into(),
                route: route.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// A connection whose client certificate may not send, on `listener`.
    pub fn client_certificate_refused(&self, listener: &str) {
        self.client_certificates_refused
            .get_or_create(&ListenerLabels {
                listener: listener.into(),
            })
            .inc();
    }

    pub fn mllp_ack(&self, message_type: &str, ack_code: &str, took: Duration) {
        self.mllp_messages
            .get_or_create(&MllpLabels {
                message_type: message_type.into(),
                ack_code: ack_code.into(),
            })
            .inc();
        self.mllp_ack_duration
            .get_or_create(&AckLabels {
                ack_code: ack_code.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn store_error(&self, operation: &str) {
        self.store_errors
            .get_or_create(&OperationLabels {
                operation: operation.into(),
            })
            .inc();
    }

    /// A checkpoint that `target` (`dir`, `command`, `witness`) did not take.
    pub fn publish_failed(&self, target: &str) {
        self.checkpoint_publish_failures
            .get_or_create(&PublishLabels {
                target: target.into(),
            })
            .inc();
    }

    /// A SIEM feed destination's acknowledged position against the head.
    pub fn export_position(&self, destination: &str, acknowledged: i64, head: i64) {
        let l = DestinationLabels {
            destination: destination.into(),
        };
        self.export_acknowledged.get_or_create(&l).set(acknowledged);
        self.export_lag
            .get_or_create(&l)
            .set(head.saturating_sub(acknowledged).max(0));
    }

    /// The detection rules evaluated up to `evaluated` with the head at `head`.
    pub fn detection_position(&self, evaluated: i64, head: i64) {
        self.detection_lag
            .set(head.saturating_sub(evaluated).max(0));
    }

    /// Entries read again at the detection rules' start.
    pub fn detection_replayed(&self, entries: u64) {
        self.detection_replayed
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// A refused client certificate not recorded (rate limit).
    pub fn tls_refusal_unrecorded(&self, listener: &str) {
        self.tls_refusals_unrecorded
            .get_or_create(&ListenerLabels {
                listener: listener.into(),
            })
            .inc();
    }

    /// One security alert appended by `rule`.
    pub fn detection_alert(&self, rule: &str) {
        self.detection_alerts
            .get_or_create(&RuleLabels { rule: rule.into() })
            .inc();
    }

    pub fn export_sent(&self, destination: &str, events: u64) {
        self.export_sent
            .get_or_create(&DestinationLabels {
                destination: destination.into(),
            })
            .inc_by(events);
    }

    pub fn export_error(&self, destination: &str) {
        self.export_errors
            .get_or_create(&DestinationLabels {
                destination: destination.into(),
            })
            .inc();
    }

    /// Records one time-seal request's outcome.
    pub fn time_seal(&self, outcome: &str) {
        self.time_seals
            .get_or_create(&SealLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records a finished full verification.
    pub fn verified(&self, ok: bool, entries: u64) {
        self.verify_last_ok.set(i64::from(ok));
        self.verify_last_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.verify_last_time.set(now);
    }
}

/// The ledger's writer reports its batches into [`global()`] through this.
pub struct WriterMetrics;

impl vellum_ledger::WriterObserver for WriterMetrics {
    fn batch_committed(&self, events: usize, took: Duration) {
        let m = global();
        m.writer_batch_events.observe(events as f64);
        m.writer_commit_duration.observe(took.as_secs_f64());
    }

    fn batch_failed(&self, _events: usize) {
        global().store_error("append");
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_routes_and_build() {
        let m = Metrics::new();
        m.http_request(
            "GET",
            "/fhir/AuditEvent/{id}",
            200,
            Duration::from_millis(3),
        );
        m.mllp_ack("ORU^R01", "AA", Duration::from_millis(2));
        let text = m.encode(Snapshot::default()).unwrap();
        assert!(text.contains(
            r#"vellum_http_requests_total{method="GET",route="/fhir/AuditEvent/{id}",status="200"} 1"#
        ), "{text}");
        assert!(
            text.contains(r#"vellum_mllp_messages_total{message_type="ORU^R01",ack_code="AA"} 1"#),
            "{text}"
        );
        assert!(text.contains("vellum_build_info{version=\""), "{text}");
        assert!(
            text.contains("# TYPE vellum_ledger_entries counter"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
