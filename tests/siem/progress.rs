//! The feed's positions are insert-only rows, like the ledger: a repeat is
//! kept once, and the database refuses UPDATE and DELETE even to its owner.

use vellum::config::DatabaseUrl;
use vellum::ledger::{Ledger, WriterSettings};
use vellum::store::{AnyStore, Store};
use vellum_testkit::*;

backend_tests! {
    async fn export_progress_is_insert_only(backend) {
        let db = TestDb::new(backend).await;
        let url = DatabaseUrl::parse(&db.url).expect("database url");
        let store = AnyStore::connect(&url, None).await.expect("open store");
        store.migrate().await.expect("migrate");
        let ledger = Ledger::start(store.clone(), WriterSettings::default());
        assert_eq!(ledger.export_position("http").await.unwrap(), 0);
        ledger.record_export_position("http", 5).await.unwrap();
        // A batch acknowledged again after a crash: kept once.
        ledger.record_export_position("http", 5).await.unwrap();
        ledger.record_export_position("syslog-tls", 9).await.unwrap();
        assert_eq!(ledger.export_position("http").await.unwrap(), 5);
        assert_eq!(ledger.export_position("syslog-tls").await.unwrap(), 9);
        for sql in [
            "UPDATE export_progress SET acked_seq = 1",
            "DELETE FROM export_progress",
        ] {
            let refused = match &store {
                AnyStore::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.is_err(),
                AnyStore::Postgres(s) => sqlx::query(sql).execute(s.pool()).await.is_err(),
            };
            assert!(refused, "{sql} was not refused");
        }
        assert_eq!(ledger.export_position("http").await.unwrap(), 5);
        assert_eq!(ledger.export_position("syslog-tls").await.unwrap(), 9);
    }
}
