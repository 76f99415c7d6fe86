//! Figures that are read at scrape time rather than recorded as they
//! happen: the ledger's own counts (from the database, so they agree across
//! instances and survive restarts), the writer queue, and counters other
//! modules keep.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The scrape-time figures, gathered by the `/metrics` handler.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    /// The chain head's seq.
    pub ledger_entries: u64,
    pub pending_digests: u64,
    pub followups: u64,
    pub digest_mismatches: u64,
    pub syslog_received: u64,
    pub syslog_parse_failures: u64,
    pub syslog_udp_dropped: u64,
    pub syslog_lost: u64,
    /// Appends waiting for the writer.
    pub writer_queue_depth: u64,
    pub writer_queue_capacity: u64,
}

#[derive(Debug, Default)]
pub(super) struct SnapshotCollector(Mutex<Snapshot>);

impl SnapshotCollector {
    pub(super) fn set(&self, s: Snapshot) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        counter(
            &mut e,
            "vellum_ledger_entries",
            "Entries in the ledger (the chain head's seq; from the database).",
            s.ledger_entries,
        )?;
        gauge(
            &mut e,
            "vellum_dicom_pending_digests",
            "Study pixel digests still pending (no follow-up event yet).",
            s.pending_digests,
        )?;
        counter(
            &mut e,
            "vellum_dicom_followups",
            "Follow-up pixel-digest events in the ledger.",
            s.followups,
        )?;
        counter(&mut e, "vellum_dicom_digest_mismatches", "Sender-supplied pixel digests that differed from vellum's, since this process started.", s.digest_mismatches)?;
        counter(
            &mut e,
            "vellum_syslog_messages_received",
            "ATNA syslog messages received (TCP, TLS and UDP), since this process started.",
            s.syslog_received,
        )?;
        counter(
            &mut e,
            "vellum_syslog_parse_failures",
            "ATNA syslog messages stored as parse-failure events.",
            s.syslog_parse_failures,
        )?;
        counter(
            &mut e,
            "vellum_syslog_udp_dropped",
            "ATNA syslog UDP datagrams dropped because too many were being stored at once.",
            s.syslog_udp_dropped,
        )?;
        counter(
            &mut e,
            "vellum_syslog_lost",
            "ATNA syslog messages received but not stored before shutdown.",
            s.syslog_lost,
        )?;
        gauge(
            &mut e,
            "vellum_writer_queue_depth",
            "Appends waiting for the single writer.",
            s.writer_queue_depth,
        )?;
        gauge(
            &mut e,
            "vellum_writer_queue_capacity",
            "Appends that may wait before callers are told to retry (writer_queue).",
            s.writer_queue_capacity,
        )?;
        Ok(())
    }
}
