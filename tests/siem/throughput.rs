//! The feed's throughput to rsyslog over TLS against the same run's ingest
//! rate (docs/performance.md). A measurement, not a check: run it alone,
//! `cargo test --test siem -- --ignored --nocapture feed_throughput`.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use vellum::config::Settings;
use vellum_testkit::tls::Pki;
use vellum_testkit::*;

use crate::rsyslog::Rsyslog;
use crate::{assert_feed_complete, stored_entries, wait_until};

const EVENTS: u64 = 5000;
const CLIENTS: u64 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run alone with --ignored --nocapture"]
async fn feed_throughput_to_rsyslog_over_tls() {
    if !crate::rsyslog::available() {
        return;
    }
    let db = TestDb::new(Backend::Sqlite).await;
    // Ingest first, with no feed: the ingest rate of this machine and build.
    let ingest = spawn_app(&db.url).await;
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        let base = ingest.base.clone();
        clients.spawn(async move {
            let client = authed_client();
            for n in (c..EVENTS).step_by(CLIENTS as usize) {
                let r = client
                    .post(format!("{base}/fhir/AuditEvent"))
                    .header("Content-Type", "application/fhir+json")
                    .body(sample_event(n).to_string())
                    .send()
                    .await
                    .expect("POST");
                assert_eq!(r.status(), 201);
            }
        });
    }
    while let Some(r) = clients.join_next().await {
        r.expect("client");
    }
    let ingest_s = started.elapsed().as_secs_f64();

    // Then a second instance on the same database exports the backlog.
    let pki = Pki::new();
    let port = free_port();
    let rsyslog = Rsyslog::start(port, Some(&pki)).await;
    let mut raw = raw_settings_for(&db.url);
    raw.export.syslog_tls_addr = format!("localhost:{port}");
    raw.export.tls_ca = Some(pki.path("ca.pem"));
    raw.export.tls_client_cert = Some(pki.path("client.pem"));
    raw.export.tls_client_key = Some(pki.path("client.key"));
    let started = Instant::now();
    let _exporter = spawn_app_with(Settings::validate(raw).expect("settings")).await;
    let head = EVENTS as i64;
    wait_until(
        "rsyslog received the backlog",
        Duration::from_secs(600),
        || async { rsyslog.last_seq() == Some(head) },
    )
    .await;
    let export_s = started.elapsed().as_secs_f64();
    assert_feed_complete(&rsyslog.received(), &stored_entries(&db.url).await);
    let bytes = std::fs::metadata(rsyslog.file())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "ingest: {EVENTS} events in {ingest_s:.2} s = {:.0} events/s ({CLIENTS} HTTP clients); \
         feed to rsyslog over TLS: {EVENTS} events in {export_s:.2} s = {:.0} events/s \
         ({:.1} MB written by rsyslog)",
        EVENTS as f64 / ingest_s,
        EVENTS as f64 / export_s,
        bytes as f64 / 1e6
    );
}
