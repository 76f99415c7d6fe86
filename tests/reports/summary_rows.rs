//! Summary rows: written beside every AI event in the same transaction,
//! insert-only, checked by `vellum verify`, and rebuilt from the entries
//! when they are missing — on both backends, with raw SQL as the owner.

use serde_json::Value;
use sqlx::Connection;
use vellum_testkit::*;

const AI_PROFILES: [&str; 4] = [
    "radiology-ai-inference",
    "radiology-ai-override",
    "radiology-ai-rendering",
    "ai-model-deployment",
];

/// A raw connection to the test database (the tables' owner).
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn open(db: &TestDb) -> Raw {
        match db.sqlite_path() {
            Some(path) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                Raw::Sqlite(sqlx::SqliteConnection::connect_with(&opts).await.unwrap())
            }
            None => Raw::Postgres(sqlx::PgConnection::connect(&db.url).await.unwrap()),
        }
    }

    async fn exec(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(c) => sqlx::query(sql).execute(c).await.map(|r| r.rows_affected()),
            Raw::Postgres(c) => sqlx::query(sql).execute(c).await.map(|r| r.rows_affected()),
        }
    }

    async fn scalar(&mut self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
            Raw::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
        }
    }

    /// As the owner: lets the tests below tamper with the rows.
    async fn drop_triggers(&mut self) {
        for t in ["summary_event", "summary_finding", "summary_backfill"] {
            let sqls = match self {
                Raw::Sqlite(_) => vec![
                    format!("DROP TRIGGER {t}_no_update"),
                    format!("DROP TRIGGER {t}_no_delete"),
                ],
                Raw::Postgres(_) => vec![format!("DROP TRIGGER {t}_no_update_delete ON {t}")],
            };
            for sql in sqls {
                self.exec(&sql).await.unwrap();
            }
        }
    }
}

fn profile(v: &Value) -> &str {
    v["meta"]["profile"][0]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("")
}

async fn overrides(app: &TestApp) -> Value {
    let r: Value = app
        .client
        .get(format!(
            "{}/reports/overrides?group_by=model_version,finding",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["rows"].clone()
}

backend_tests! {
    async fn every_ai_event_has_its_summary_row_and_the_rows_are_insert_only(backend) {
        let db = TestDb::new(backend).await;
        vellum::demo::run_configured(&settings_for(&db.url), 300, 5).await.unwrap();
        let raw = crate::recount::load(&db.url).await;
        let ai: Vec<&Value> = raw
            .entries
            .iter()
            .map(|(_, v)| v)
            .filter(|v| AI_PROFILES.contains(&profile(v)))
            .collect();
        let findings: usize = ai
            .iter()
            .filter(|v| profile(v) == "radiology-ai-inference")
            .flat_map(|v| v["entity"].as_array().unwrap())
            .flat_map(|e| e["detail"].as_array().into_iter().flatten())
            .filter(|d| d["type"] == "finding")
            .count();
        assert!(ai.len() >= 300 && findings > 100, "{} {findings}", ai.len());
        let mut sql = Raw::open(&db).await;
        assert_eq!(sql.scalar("SELECT count(*) FROM summary_event").await, ai.len() as i64);
        assert_eq!(sql.scalar("SELECT count(*) FROM summary_finding").await, findings as i64);
        assert_eq!(
            sql.scalar("SELECT count(*) FROM summary_event WHERE kind = 'inference'").await,
            raw.inferences.len() as i64
        );
        for refused in [
            "UPDATE summary_event SET action = 'accept'",
            "DELETE FROM summary_event",
            "UPDATE summary_finding SET code = 'RID0'",
            "DELETE FROM summary_finding",
            "DELETE FROM summary_backfill",
        ] {
            let e = sql.exec(refused).await.expect_err(refused);
            assert!(e.to_string().contains("insert-only"), "{refused}: {e}");
        }
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
    }

    async fn verify_names_the_first_altered_or_missing_summary_row(backend) {
        let db = TestDb::new(backend).await;
        vellum::demo::run_configured(&settings_for(&db.url), 200, 6).await.unwrap();
        let mut sql = Raw::open(&db).await;
        sql.drop_triggers().await;
        let altered = sql
            .scalar("SELECT seq FROM summary_event WHERE kind = 'override' ORDER BY seq LIMIT 1 OFFSET 5")
            .await;
        let n = sql
            .exec(&format!(
                "UPDATE summary_event SET tta_ms = COALESCE(tta_ms, 0) + 1 WHERE seq = {altered}"
            ))
            .await
            .unwrap();
        assert_eq!(n, 1);
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 1, "{verdict}");
        assert_eq!(verdict["problem"]["kind"], "summary_mismatch", "{verdict}");
        assert_eq!(verdict["problem"]["seq"], altered, "{verdict}");
        // An earlier inference's rows removed: reported first, as missing.
        let removed = sql
            .scalar(&format!(
                "SELECT seq FROM summary_event WHERE kind = 'inference' AND seq < {altered} ORDER BY seq LIMIT 1 OFFSET 1"
            ))
            .await;
        sql.exec(&format!("DELETE FROM summary_finding WHERE seq = {removed}")).await.unwrap();
        sql.exec(&format!("DELETE FROM summary_event WHERE seq = {removed}")).await.unwrap();
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 1, "{verdict}");
        assert_eq!(verdict["problem"]["seq"], removed, "{verdict}");
        let detail = verdict["problem"]["detail"].as_str().unwrap();
        assert!(detail.contains("missing"), "{detail}");
    }

    async fn summary_rows_missing_after_an_upgrade_are_rebuilt_at_the_next_start(backend) {
        let db = TestDb::new(backend).await;
        vellum::demo::run_configured(&settings_for(&db.url), 300, 7).await.unwrap();
        let before = overrides(&spawn_app(&db.url).await).await;
        assert!(before.as_array().is_some_and(|r| r.len() > 5), "{before}");
        // A store as an older vellum left it: entries, no summary rows.
        let mut sql = Raw::open(&db).await;
        sql.drop_triggers().await;
        sql.exec("DELETE FROM summary_finding").await.unwrap();
        assert!(sql.exec("DELETE FROM summary_event").await.unwrap() > 300);
        sql.exec("DELETE FROM summary_backfill").await.unwrap();
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 1, "{verdict}");
        assert_eq!(verdict["problem"]["kind"], "summary_mismatch", "{verdict}");
        // The next start derives them again from the bodies.
        let after = overrides(&spawn_app(&db.url).await).await;
        assert_eq!(after, before);
        assert_eq!(sql.scalar("SELECT count(*) FROM summary_backfill").await, 1);
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
    }
}
