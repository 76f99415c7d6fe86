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

/// Runs `sql` as the database owner, who can drop the insert-only triggers.
async fn as_owner(backend: Backend, url: &str, sql: &[&str]) {
    use sqlx::{AssertSqlSafe, Connection};
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            for s in sql {
                sqlx::query(AssertSqlSafe(s.to_string()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            for s in sql {
                sqlx::query(AssertSqlSafe(s.to_string()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }
}

backend_tests! {
    async fn verify_finds_a_deleted_or_added_key_row_from_the_bodies(backend) {
        use vellum::intake::{Intake, Submission};
        use vellum::ledger::verify::{verify_all, ProblemKind};
        let db = TestDb::new(backend).await;
        let store = AnyStore::connect(&vellum::config::DatabaseUrl::parse(&db.url).unwrap(), None)
            .await
            .unwrap()
            .with_indexer(vellum::fhir::search_index::derive_rows)
            .with_keyer(vellum::intake::keys::expected_key);
        store.migrate().await.unwrap();
        let ledger = Ledger::start(store.clone(), WriterSettings::default());
        let intake = Intake::new(ledger, None, vellum::ledger::canonical::Limits::INTERNAL);
        for n in 1..=5u64 {
            let s = Submission::fhir(sample_event(n).to_string()).with_key(format!("mllp:RIS|MSG{n}"));
            intake.submit(s).await.unwrap();
        }
        // A request digest follows the stem the body records.
        let s = Submission::fhir(sample_event(6).to_string())
            .with_key("ai-inference:e6")
            .from_request(b"the request");
        intake.submit(s).await.unwrap();
        intake.submit(Submission::fhir(sample_event(7).to_string())).await.unwrap();
        let v = verify_all(&store, None).await.unwrap();
        assert!(v.ok(), "{backend:?}: {:?}", v.problem);
        assert_eq!(v.entries, 7);

        // The owner deletes entry 3's key: a retry of its message would now
        // be stored a second time.
        let drop = match backend {
            Backend::Sqlite => "DROP TRIGGER entry_key_no_delete",
            Backend::Postgres => "DROP TRIGGER entry_key_no_update_delete ON entry_key",
        };
        as_owner(backend, &db.url, &[drop, "DELETE FROM entry_key WHERE seq = 3"]).await;
        let v = verify_all(&store, None).await.unwrap();
        let p = v.problem.expect("a deleted key row is found");
        assert_eq!((p.seq, p.kind), (3, ProblemKind::KeyMismatch), "{backend:?}: {}", p.detail);
        assert!(p.detail.contains("1 missing, 0 extra"), "{}", p.detail);
        assert!(!p.detail.contains("MSG3"), "keys are not printed: {}", p.detail);

        // Put back, it verifies again; a second key for entry 6 is extra.
        as_owner(backend, &db.url, &["INSERT INTO entry_key (key, seq) VALUES ('mllp:RIS|MSG3', 3)"]).await;
        assert!(verify_all(&store, None).await.unwrap().ok(), "{backend:?}");
        as_owner(backend, &db.url, &["INSERT INTO entry_key (key, seq) VALUES ('ai-inference:e6-other', 6)"]).await;
        let p = verify_all(&store, None).await.unwrap().problem.expect("an extra key is found");
        assert_eq!((p.seq, p.kind), (6, ProblemKind::KeyMismatch), "{backend:?}: {}", p.detail);
        assert!(p.detail.contains("0 missing, 1 extra"), "{}", p.detail);
    }
}
