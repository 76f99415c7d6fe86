//! A retried append carrying the same idempotency key (MLLP MSH-10, a
//! conditional create) returns the first entry and stores nothing new.

use vellum::config::WriterSettings;
use vellum::fhir::create::prepare_audit_event;
use vellum::ledger::Ledger;
use vellum::store::{AnyStore, Store};
use vellum_testkit::*;

async fn ledger_on(db: &TestDb) -> Ledger {
    let store = AnyStore::connect(&vellum::config::DatabaseUrl::parse(&db.url).unwrap(), None)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Ledger::start(store, WriterSettings::default())
}

fn draft(n: u64) -> vellum::ledger::Draft {
    prepare_audit_event(sample_event(n).to_string().as_bytes()).unwrap()
}

backend_tests! {
    async fn a_retry_with_the_same_key_returns_the_first_entry(backend) {
        let db = TestDb::new(backend).await;
        let ledger = ledger_on(&db).await;
        let first = ledger
            .append(draft(1).with_key("mllp:RIS|MSG0001"))
            .await
            .unwrap();
        assert!(first.created);
        let retry = ledger
            .append(draft(1).with_key("mllp:RIS|MSG0001"))
            .await
            .unwrap();
        assert!(!retry.created, "{backend:?}");
        assert_eq!(retry.receipt, first.receipt);
        assert_eq!(retry.body, first.body);
        let other = ledger
            .append(draft(2).with_key("mllp:RIS|MSG0002"))
            .await
            .unwrap();
        assert!(other.created);
        assert_eq!(
            other.receipt.seq, 2,
            "{backend:?}: the retry must not have used a seq"
        );
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(
            (code, verdict["entries"].as_i64()),
            (0, Some(2)),
            "{verdict}"
        );
    }
}

backend_tests! {
    async fn concurrent_duplicates_store_one_entry(backend) {
        let db = TestDb::new(backend).await;
        let ledger = ledger_on(&db).await;
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let l = ledger.clone();
                // 40 appends, 4 distinct keys: whatever the batching, 4 entries.
                tokio::spawn(async move {
                    l.append(draft(i).with_key(format!("k{}", i % 4)))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert_eq!(
            results.iter().filter(|c| c.created).count(),
            4,
            "{backend:?}"
        );
        for i in 0..40 {
            let same_key: Vec<_> = (0..40)
                .filter(|j| j % 4 == i % 4)
                .map(|j| &results[j].receipt)
                .collect();
            assert!(
                same_key.windows(2).all(|w| w[0] == w[1]),
                "{backend:?}: key k{} maps to one entry",
                i % 4
            );
        }
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(
            (code, verdict["entries"].as_i64()),
            (0, Some(4)),
            "{verdict}"
        );
    }
}
