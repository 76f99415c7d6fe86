//! RFC 5424 syslog to rsyslog, over TCP (the receiver starts only after
//! events were committed: an outage at start) and over mutual TLS.

use std::time::Duration;

use vellum::config::Settings;
use vellum_testkit::tls::Pki;
use vellum_testkit::*;

use crate::rsyslog::Rsyslog;
use crate::{assert_feed_complete, metric, metrics, stored_entries, wait_until};

// `/metrics` belongs to the process, which every test of this file shares:
// checks on it are ones concurrent tests cannot make false (counters that
// only grow, positions every test reaches at the end).

/// Settings that make the feed small-batched and quick to retry, so a test
/// crosses many batches and retries.
fn feed_settings(db_url: &str, tweak: impl FnOnce(&mut vellum::config::RawSettings)) -> Settings {
    let mut raw = raw_settings_for(db_url);
    raw.export.batch_max_events = 7;
    raw.export.poll_ms = 50;
    raw.export.retry_max_ms = 200;
    tweak(&mut raw);
    Settings::validate(raw).expect("valid settings")
}

async fn post_events(app: &TestApp, range: std::ops::Range<u64>) {
    for n in range {
        assert_eq!(app.post_event(&sample_event(n)).await.status(), 201);
    }
}

/// Waits until `rsyslog` holds every stored seq, then checks the feed.
async fn assert_delivered(rsyslog: &Rsyslog, db_url: &str) {
    let stored = stored_entries(db_url).await;
    let head = stored.last().map_or(0, |e| e.seq);
    wait_until(
        "rsyslog received every event",
        Duration::from_secs(60),
        || async { rsyslog.received().iter().any(|r| r.seq == head) },
    )
    .await;
    assert_feed_complete(&rsyslog.received(), &stored);
}

backend_tests! {
    async fn syslog_tcp_feed_delivers_everything_after_a_receiver_outage(backend) {
        if !crate::rsyslog::available() {
            return;
        }
        let db = TestDb::new(backend).await;
        let port = free_port();
        let app = spawn_app_with(feed_settings(&db.url, |raw| {
            raw.export.syslog_addr = format!("127.0.0.1:{port}");
        }))
        .await;
        // Nobody listens yet: ingestion goes on, deliveries fail and retry.
        post_events(&app, 0..30).await;
        wait_until("a failed delivery is counted", Duration::from_secs(30), || async {
            metric(&metrics(&app.base).await, "vellum_export_errors_total{destination=\"syslog-tcp\"}") > 0
        })
        .await;
        let rsyslog = Rsyslog::start(port, None).await;
        post_events(&app, 30..60).await;
        assert_delivered(&rsyslog, &db.url).await;
        // MSGID is the profile's short name, or "-" for an unprofiled event.
        assert!(rsyslog.msgids().iter().all(|m| m == "-" || m.chars().all(|c| c.is_ascii_graphic())));
        wait_until("lag is back to 0", Duration::from_secs(30), || async {
            let text = metrics(&app.base).await;
            metric(&text, "vellum_export_lag_events{destination=\"syslog-tcp\"}") == 0
                && metric(&text, "vellum_export_acknowledged_seq{destination=\"syslog-tcp\"}") == 60
        })
        .await;
        let sent = metric(&metrics(&app.base).await, "vellum_export_sent_events_total{destination=\"syslog-tcp\"}");
        assert!(sent >= 60, "sent {sent}");
    }

    async fn syslog_tls_feed_uses_mutual_tls_and_delivers_in_order(backend) {
        if !crate::rsyslog::available() {
            return;
        }
        let db = TestDb::new(backend).await;
        let pki = Pki::new();
        let port = free_port();
        let rsyslog = Rsyslog::start(port, Some(&pki)).await;
        let app = spawn_app_with(feed_settings(&db.url, |raw| {
            raw.export.syslog_tls_addr = format!("localhost:{port}");
            raw.export.tls_ca = Some(pki.path("ca.pem"));
            raw.export.tls_client_cert = Some(pki.path("client.pem"));
            raw.export.tls_client_key = Some(pki.path("client.key"));
        }))
        .await;
        post_events(&app, 0..50).await;
        assert_delivered(&rsyslog, &db.url).await;
    }

    async fn syslog_tls_feed_sends_nothing_to_a_receiver_it_cannot_verify(backend) {
        if !crate::rsyslog::available() {
            return;
        }
        let db = TestDb::new(backend).await;
        // The receiver's certificate comes from another CA than the one
        // vellum trusts.
        let (receiver_pki, trusted_pki) = (Pki::new(), Pki::new());
        let port = free_port();
        let rsyslog = Rsyslog::start(port, Some(&receiver_pki)).await;
        let app = spawn_app_with(feed_settings(&db.url, |raw| {
            raw.export.syslog_tls_addr = format!("localhost:{port}");
            raw.export.tls_ca = Some(trusted_pki.path("ca.pem"));
            raw.export.tls_client_cert = Some(trusted_pki.path("client.pem"));
            raw.export.tls_client_key = Some(trusted_pki.path("client.key"));
        }))
        .await;
        post_events(&app, 0..5).await;
        wait_until("failed handshakes are counted", Duration::from_secs(30), || async {
            metric(&metrics(&app.base).await, "vellum_export_errors_total{destination=\"syslog-tls\"}") >= 2
        })
        .await;
        assert!(rsyslog.received().is_empty());
    }
}
