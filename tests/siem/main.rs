//! The SIEM feed (docs/siem.md) against real receivers: Debian's rsyslog
//! over TCP and over mutual TLS, and an HTTPS JSON Lines collector run by
//! the test; receiver outages and a kill -9 of vellum in between. Every
//! committed event must arrive at least once, with no gap in `seq`, each
//! record's chain hash equal to the stored one and recomputable from the
//! bodies received — on both backends.

mod collector;
mod http_feed;
mod progress;
mod replay;
mod rsyslog;
mod rules;
mod syslog_feed;
mod throughput;
mod tls_refusals;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vellum::config::DatabaseUrl;
use vellum::ledger::hash;
use vellum::store::{AnyStore, Store, StoredEntry};

/// One record as a receiver got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub seq: i64,
    /// Hex chain hash, as sent.
    pub chain: String,
    /// The event, byte for byte as sent.
    pub body: String,
}

/// Every stored entry, in seq order (read as `vellum verify` does).
pub async fn stored_entries(db_url: &str) -> Vec<StoredEntry> {
    let url = DatabaseUrl::parse(db_url).expect("database url");
    let store = AnyStore::connect(&url, None).await.expect("open store");
    store
        .entries_after(0, 1_000_000)
        .await
        .expect("read entries")
}

/// Polls `done` until it holds; panics after `limit` (a hang guard, not a
/// performance threshold).
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The feed check a SIEM does (docs/siem.md): every stored seq arrived; the
/// stream never jumps forward past a seq not yet received (a resend after a
/// crash may go back); each record's body and chain hash are the stored
/// ones; and the chain recomputed from the received bodies alone,
/// `chain(n) = SHA-256(chain(n-1) ‖ u64_be(n) ‖ SHA-256(body))`, gives every
/// received chain hash.
pub fn assert_feed_complete(received: &[Received], stored: &[StoredEntry]) {
    assert!(!stored.is_empty());
    let mut highest = 0i64;
    for r in received {
        assert!(
            r.seq <= highest + 1,
            "the feed jumped from seq {highest} to {}: a gap",
            r.seq
        );
        highest = highest.max(r.seq);
    }
    let by_seq: BTreeMap<i64, &Received> = received.iter().map(|r| (r.seq, r)).collect();
    let mut prev = hash::GENESIS;
    for e in stored {
        let r = by_seq
            .get(&e.seq)
            .unwrap_or_else(|| panic!("seq {} was never delivered", e.seq));
        assert_eq!(
            r.body, e.body,
            "seq {}: body differs from the stored one",
            e.seq
        );
        assert_eq!(
            r.chain,
            hex::encode(&e.chain_hash),
            "seq {}: chain hash",
            e.seq
        );
        let body_hash = hash::body_sha256(r.body.as_bytes());
        prev = hash::chain_hash(&prev, r.seq as u64, &body_hash);
        assert_eq!(
            hex::encode(prev),
            r.chain,
            "seq {}: chain does not recompute",
            e.seq
        );
    }
    for r in received {
        assert_eq!(
            by_seq.get(&r.seq).map(|x| (&x.chain, &x.body)),
            Some((&r.chain, &r.body)),
            "seq {} was delivered twice with different content",
            r.seq
        );
    }
}

/// The value of one metric sample in `/metrics` text, 0 when absent.
pub fn metric(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `/metrics` of the server at `base`.
pub async fn metrics(base: &str) -> String {
    vellum_testkit::authed_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}
