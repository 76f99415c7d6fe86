//! Every store behaviour the ledger relies on, run against SQLite and
//! PostgreSQL as separate test cases (`backend_tests!`), through the
//! ledger's own API: append, reads, idempotency keys, search, follow-ups,
//! verify, and the database's refusal to change what is stored.

use vellum_ledger::store::followups::FollowupKind;
use vellum_ledger::store::search::{
    Condition, RowMatch, SearchQuery, Selectivity, SortKey, SystemMatch,
};
use vellum_ledger::store::{AnyStore, IndexRow, Store};
use vellum_ledger::testing::{Backend, TestDb};
use vellum_ledger::{backend_tests, DatabaseUrl, Draft, Ledger, WriterSettings, STAMP_PLACEHOLDER};

const FOLLOWUP: FollowupKind = FollowupKind {
    param: "_todo",
    key_prefix: "done:",
};

async fn ledger(db: &TestDb) -> (Ledger, AnyStore) {
    let url = DatabaseUrl::parse(&db.url).expect("database url");
    let store = AnyStore::connect(&url, None).await.expect("connect");
    store.migrate().await.expect("migrate");
    (
        Ledger::start(store.clone(), WriterSettings::default()),
        store,
    )
}

/// A canonical body with the lastUpdated placeholder, and its index rows.
fn draft(n: u32, tag: &str) -> Draft {
    let id = format!("00000000-0000-4000-8000-{n:012}");
    let body = format!(
        r#"{{"id":"{id}","meta":{{"lastUpdated":"{STAMP_PLACEHOLDER}"}},"n":{n},"tag":"{tag}"}}"#
    );
    let at = body.find(STAMP_PLACEHOLDER).expect("placeholder");
    let rows = vec![
        IndexRow {
            param: "tag".into(),
            val: Some(tag.into()),
            ..Default::default()
        },
        IndexRow {
            param: FOLLOWUP.param.into(),
            val: Some(format!("v{n}")),
            ..Default::default()
        },
    ];
    Draft::with_index(id, body.into_bytes(), at, rows).expect("draft")
}

fn tag_query(tag: &str, head: i64) -> SearchQuery {
    SearchQuery {
        conditions: vec![Condition::Has {
            param: "tag".into(),
            any: vec![RowMatch::Value {
                val: tag.into(),
                sys: SystemMatch::Any,
            }],
            negate: false,
            selectivity: Selectivity::Narrow,
        }],
        sort: SortKey::Seq,
        descending: false,
        head,
        cursor: None,
        limit: 100,
    }
}

backend_tests! {
    async fn append_then_read_back(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, _) = ledger(&db).await;
        assert_eq!(ledger.head().await.expect("head").seq, 0);
        let a = ledger.append(draft(1, "a")).await.expect("append");
        let b = ledger.append(draft(2, "b")).await.expect("append");
        assert_eq!((a.receipt.seq, b.receipt.seq), (1, 2));
        assert!(a.created && b.created);
        let head = ledger.head().await.expect("head");
        assert_eq!(head.seq, 2);
        assert_eq!(head.chain_hash, b.receipt.chain_hash);
        let stored = ledger.read(&a.receipt.id).await.expect("read").expect("stored");
        assert_eq!(stored.body, a.body);
        assert!(!stored.body.contains(STAMP_PLACEHOLDER), "the writer stamps lastUpdated");
        assert_eq!(stored.last_updated, a.last_updated);
        let after = ledger.entries_after(1, 10).await.expect("after");
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
        assert!(ledger.read("no-such-id").await.expect("read").is_none());
        assert!(ledger.ready().await);
        assert_eq!(ledger.backend_name(), match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        });
    }

    async fn a_key_names_one_entry(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, _) = ledger(&db).await;
        let first = ledger.append(draft(1, "a").with_key("k:1")).await.expect("append");
        let again = ledger.append(draft(2, "a").with_key("k:1")).await.expect("append");
        assert!(first.created);
        assert!(!again.created, "the key already names an entry");
        assert_eq!(again.receipt, first.receipt);
        // Two drafts with one key in one transaction: one entry.
        let both = ledger
            .append_all(vec![draft(3, "a").with_key("k:3"), draft(4, "a").with_key("k:3")])
            .await
            .expect("append_all");
        assert_eq!(both[0].receipt, both[1].receipt);
        assert_eq!(ledger.head().await.expect("head").seq, 2);
        let by_key = ledger.read_by_key("k:3").await.expect("by key").expect("stored");
        assert_eq!(by_key.id, both[0].receipt.id);
        let listed = ledger.read_by_key_prefix("k:").await.expect("prefix");
        assert_eq!(
            listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            vec!["k:1", "k:3"]
        );
    }

    async fn search_and_count_use_the_index_rows(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, _) = ledger(&db).await;
        for (n, tag) in [(1, "x"), (2, "y"), (3, "x")] {
            ledger.append(draft(n, tag)).await.expect("append");
        }
        let head = ledger.head().await.expect("head").seq;
        let hits = ledger.search(&tag_query("x", head)).await.expect("search");
        assert_eq!(hits.iter().map(|h| h.entry.seq).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(ledger.count(&tag_query("x", head)).await.expect("count"), 2);
        assert_eq!(ledger.count(&tag_query("z", head)).await.expect("count"), 0);
        // Pinned to a head: later entries are not seen.
        assert_eq!(ledger.count(&tag_query("x", 2)).await.expect("count"), 1);
    }

    async fn followups_are_outstanding_until_their_key_is_stored(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, _) = ledger(&db).await;
        let a = ledger.append(draft(1, "a")).await.expect("append");
        ledger.append(draft(2, "a")).await.expect("append");
        let pending = ledger.pending_followups(&FOLLOWUP, 0, 10).await.expect("pending");
        assert_eq!(pending.len(), 2);
        assert_eq!((pending[0].seq, pending[0].value.as_str()), (1, "v1"));
        assert_eq!(pending[0].event_id, a.receipt.id);
        assert_eq!(ledger.pending_count(&FOLLOWUP).await.expect("count"), 2);
        ledger
            .append(draft(3, "b").with_key(FOLLOWUP.key(&a.receipt.id, "v1")))
            .await
            .expect("append");
        let pending = ledger.pending_followups(&FOLLOWUP, 0, 10).await.expect("pending");
        // Entry 3 marks its own value; entry 1 is done.
        assert_eq!(pending.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(ledger.followup_count(&FOLLOWUP).await.expect("count"), 1);
        assert_eq!(ledger.pending_followups(&FOLLOWUP, 3, 10).await.expect("pending").len(), 1);
    }

    async fn verify_holds_and_migrate_is_idempotent(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = ledger(&db).await;
        for n in 1..=5 {
            ledger.append(draft(n, "a")).await.expect("append");
        }
        store.migrate().await.expect("second migrate");
        let verdict = ledger.verify().await.expect("verify");
        assert!(verdict.ok(), "{verdict:?}");
    }

    async fn the_database_refuses_update_and_delete(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = ledger(&db).await;
        ledger.append(draft(1, "a")).await.expect("append");
        let refused = match &store {
            AnyStore::Sqlite(s) => (
                sqlx::query("UPDATE entry SET body = '{}' WHERE seq = 1").execute(s.pool()).await.is_err(),
                sqlx::query("DELETE FROM entry WHERE seq = 1").execute(s.pool()).await.is_err(),
            ),
            AnyStore::Postgres(s) => (
                sqlx::query("UPDATE entry SET body = '{}' WHERE seq = 1").execute(s.pool()).await.is_err(),
                sqlx::query("DELETE FROM entry WHERE seq = 1").execute(s.pool()).await.is_err(),
            ),
        };
        assert_eq!(refused, (true, true));
        assert!(ledger.verify().await.expect("verify").ok());
    }
}
