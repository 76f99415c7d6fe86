//! JSON Lines over HTTPS to the test's collector: a collector outage (503s)
//! at the start, then a kill -9 of the real `vellum serve` process while a
//! batch is in flight. After the restart the unacknowledged batch is sent
//! again and every event arrives, with no gap.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vellum_testkit::tls::Pki;
use vellum_testkit::*;

use crate::collector::Collector;
use crate::{assert_feed_complete, metric, metrics, stored_entries, wait_until};

/// The collector answers its first 3 requests 503 (an outage), then
/// acknowledges two batches, then holds the third one unanswered.
const OUTAGE_REQUESTS: usize = 3;
const HELD_REQUEST: usize = OUTAGE_REQUESTS + 3;
const BATCH: usize = 10;

async fn post_events(base: &str, range: std::ops::Range<u64>) {
    let client = authed_client();
    for n in range {
        let r = client
            .post(format!("{base}/fhir/AuditEvent"))
            .header("Content-Type", "application/fhir+json")
            .body(sample_event(n).to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 201);
    }
}

backend_tests! {
    async fn http_feed_resends_the_unacknowledged_batch_after_kill_9(backend) {
        let db = TestDb::new(backend).await;
        let pki = Pki::new();
        let collector = Collector::start(&pki, OUTAGE_REQUESTS, HELD_REQUEST).await;
        let secrets = tempfile::tempdir().unwrap();
        let token_file = secrets.path().join("hec-token");
        std::fs::write(&token_file, "Splunk 11111111-2222-3333-4444-555555555555\n").unwrap();
        let token_file = token_file.display().to_string();
        let batch = BATCH.to_string();
        let env = [
            ("VELLUM_EXPORT_HTTP_URL", collector.url.as_str()),
            ("VELLUM_EXPORT_HTTP_HEADER_VALUE_FILE", token_file.as_str()),
            ("VELLUM_EXPORT_TLS_CA", &pki.path("ca.pem")),
            ("VELLUM_EXPORT_BATCH_MAX_EVENTS", batch.as_str()),
            ("VELLUM_EXPORT_POLL_MS", "50"),
            ("VELLUM_EXPORT_RETRY_MAX_MS", "200"),
        ];
        let mut server = spawn_server_process(&db.url, &env);
        server.wait_ready().await;
        post_events(&server.base, 0..100).await;
        let held = collector.held().await;
        // Batches hold what was committed when they were read: their sizes
        // vary, their order does not.
        let acked_before = collector.acked();
        let last_acked = acked_before.last().map(|r| r.seq).expect("two batches acknowledged");
        assert_eq!(held.first().map(|r| r.seq), Some(last_acked + 1));
        let text = metrics(&server.base).await;
        assert!(metric(&text, "vellum_export_errors_total{destination=\"http\"}") >= OUTAGE_REQUESTS as u64, "{text}");
        assert_eq!(metric(&text, "vellum_export_acknowledged_seq{destination=\"http\"}"), last_acked as u64, "{text}");

        kill(Pid::from_raw(server.child.id() as i32), Signal::SIGKILL).unwrap();
        server.child.wait().unwrap();
        collector.release();

        let mut server = spawn_server_process(&db.url, &env);
        server.wait_ready().await;
        post_events(&server.base, 100..130).await;
        let stored = stored_entries(&db.url).await;
        let head = stored.last().map_or(0, |e| e.seq);
        assert_eq!(head, 130);
        wait_until("the collector acknowledged every event", Duration::from_secs(60), || async {
            collector.acked().iter().any(|r| r.seq == head)
        })
        .await;
        let acked = collector.acked();
        assert_feed_complete(&acked, &stored);
        // The restarted process resumed right after the last acknowledged
        // seq: the held batch was sent again, first.
        assert_eq!(acked.get(acked_before.len()).map(|r| r.seq), Some(last_acked + 1));
        for r in &held {
            assert!(acked[acked_before.len()..].contains(r), "seq {} resent", r.seq);
        }
        // Every request carried the collector's token from the _FILE secret.
        let tokens = collector.tokens();
        assert!(tokens.len() > HELD_REQUEST, "{}", collector.requests());
        assert!(tokens
            .iter()
            .all(|t| t.as_deref() == Some("Splunk 11111111-2222-3333-4444-555555555555")));
        wait_until("lag is back to 0", Duration::from_secs(30), || async {
            let text = metrics(&server.base).await;
            metric(&text, "vellum_export_lag_events{destination=\"http\"}") == 0
                && metric(&text, "vellum_export_acknowledged_seq{destination=\"http\"}") == head as u64
        })
        .await;
    }
}
