//! The ledger is insert-only at the database layer (docs/operations.md): triggers
//! refuse UPDATE, DELETE (and on PostgreSQL TRUNCATE) of entries and any
//! INSERT that does not extend the chain by exactly one, even for the owner;
//! on PostgreSQL the `vellum_writer` role the server runs as lacks UPDATE,
//! DELETE and TRUNCATE altogether. Every refusal must leave the chain intact.

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, Executor, Row};
use vellum::ledger::hash;
use vellum::store::{PostgresStore, Store};
use vellum_testkit::*;

/// One stored row, as the database holds it.
type Row7 = (i64, String, String, Vec<u8>, Vec<u8>, Vec<u8>, String);

const SELECT_ALL: &str = "SELECT seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated \
                          FROM entry ORDER BY seq";

/// A raw connection pool to the test database, as its owner.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Raw {
    async fn open(db: &TestDb) -> Raw {
        match db.backend {
            Backend::Sqlite => {
                // A plain connection, as any other client (the sqlite3 shell)
                // would open it: no recursive_triggers, no vellum pragmas.
                let pool = sqlx::SqlitePool::connect(&db.url)
                    .await
                    .expect("open sqlite");
                Raw::Sqlite(pool)
            }
            Backend::Postgres => {
                let store = PostgresStore::connect(&db.url, None)
                    .await
                    .expect("connect postgres");
                Raw::Pg(store.pool().clone())
            }
        }
    }

    /// Runs one statement; the database's error message on failure.
    async fn exec(&self, sql: &str) -> Result<u64, String> {
        let sql = AssertSqlSafe(sql.to_string());
        let r = match self {
            Raw::Sqlite(p) => p.execute(sql).await.map(|r| r.rows_affected()),
            Raw::Pg(p) => p.execute(sql).await.map(|r| r.rows_affected()),
        };
        r.map_err(db_message)
    }

    async fn rows(&self) -> Vec<Row7> {
        macro_rules! collect {
            ($pool:expr) => {
                sqlx::query(SELECT_ALL)
                    .fetch_all($pool)
                    .await
                    .expect("select entries")
                    .iter()
                    .map(|r| {
                        (
                            r.get("seq"),
                            r.get("id"),
                            r.get("body"),
                            r.get("body_sha256"),
                            r.get("chain_hash"),
                            r.get("leaf_hash"),
                            r.get("last_updated"),
                        )
                    })
                    .collect()
            };
        }
        match self {
            Raw::Sqlite(p) => collect!(p),
            Raw::Pg(p) => collect!(p),
        }
    }

    /// A blob literal in this backend's SQL.
    fn blob(&self, bytes: &[u8]) -> String {
        match self {
            Raw::Sqlite(_) => format!("X'{}'", hex::encode(bytes)),
            Raw::Pg(_) => format!("decode('{}', 'hex')", hex::encode(bytes)),
        }
    }

    /// `INSERT INTO entry` of a row whose hashes are self-consistent for its
    /// body but chained onto `prev`, numbered `seq`.
    fn insert_sql(&self, verb: &str, seq: i64, id: &str, body: &str, prev: &[u8; 32]) -> String {
        let body_sha = hash::body_sha256(body.as_bytes());
        // The column mirrors the body's meta.lastUpdated (verify checks it).
        let last_updated = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["meta"]["lastUpdated"].as_str().map(str::to_string))
            .unwrap_or_else(|| "2026-01-01T00:00:00.000000Z".into());
        let chain = hash::chain_hash(prev, seq as u64, &body_sha);
        format!(
            "{verb} INTO entry (seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated) \
             VALUES ({seq}, '{id}', '{}', {}, {}, {}, '{last_updated}')",
            body.replace('\'', "''"),
            self.blob(&body_sha),
            self.blob(&chain),
            self.blob(&hash::leaf_hash(body.as_bytes())),
        )
    }
}

fn db_message(e: sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => format!(
            "{} (code {})",
            d.message(),
            d.code().as_deref().unwrap_or("?")
        ),
        None => e.to_string(),
    }
}

/// A fresh database holding three events appended through the REST API.
async fn seeded(backend: Backend) -> (TestDb, TestApp, Vec<Row7>) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db.url).await;
    for n in 0..3 {
        let r = app.post_event(&sample_event(n)).await;
        assert_eq!(r.status(), 201, "{backend:?}: seed event {n}");
    }
    let rows = Raw::open(&db).await.rows().await;
    assert_eq!(rows.len(), 3, "{backend:?}: seeded");
    (db, app, rows)
}

fn assert_verifies(db: &TestDb, entries: i64, ctx: &str) {
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{ctx}: verify: {verdict}");
    assert_eq!(verdict["entries"], entries, "{ctx}: {verdict}");
    assert!(verdict["problem"].is_null(), "{ctx}: {verdict}");
}

/// The statement fails and the message contains `needle`.
/// `needle` may list alternatives separated by `|` (SQLite does not define
/// which of several BEFORE INSERT triggers fires first).
async fn refused(raw: &Raw, sql: &str, needle: &str, ctx: &str) {
    let needles: Vec<&str> = needle.split('|').collect();
    refused_with_any(raw, sql, &needles, ctx).await;
}

/// The statement fails and the message contains one of `needles`.
async fn refused_with_any(raw: &Raw, sql: &str, needles: &[&str], ctx: &str) {
    match raw.exec(sql).await {
        Ok(n) => panic!("{ctx}: `{sql}` succeeded ({n} rows) but must be refused"),
        Err(msg) => assert!(
            needles.iter().any(|n| msg.contains(n)),
            "{ctx}: `{sql}` failed with {msg:?}, expected one of {needles:?}"
        ),
    }
}

async fn read_back_unchanged(app: &TestApp, rows: &[Row7], ctx: &str) {
    for row in rows {
        let r = app
            .client
            .get(format!("{}/fhir/AuditEvent/{}", app.base, row.1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{ctx}");
        assert_eq!(
            r.text().await.unwrap(),
            row.2,
            "{ctx}: body of seq {}",
            row.0
        );
    }
}

#[tokio::test]
async fn sqlite_triggers_refuse_update_and_delete_and_leave_the_chain_intact() {
    let (db, app, before) = seeded(Backend::Sqlite).await;
    let raw = Raw::open(&db).await;
    let forged = r#"{"resourceType":"AuditEvent","outcome":"0"}"#;
    let update = "insert-only (UPDATE refused)";
    let delete = "insert-only (DELETE refused)";
    let cases = [
        (
            format!("UPDATE entry SET body = '{forged}' WHERE seq = 2"),
            update,
        ),
        (
            "UPDATE entry SET chain_hash = zeroblob(32)".to_string(),
            update,
        ),
        (
            "UPDATE entry SET seq = seq + 10 WHERE seq = 3".to_string(),
            update,
        ),
        (
            "UPDATE entry SET last_updated = '2000-01-01T00:00:00.000000Z'".to_string(),
            update,
        ),
        ("DELETE FROM entry WHERE seq = 3".to_string(), delete),
        ("DELETE FROM entry".to_string(), delete),
        (
            format!(
                "INSERT INTO entry SELECT * FROM entry WHERE seq = 1 \
                 ON CONFLICT (seq) DO UPDATE SET body = '{forged}'"
            ),
            "extend the chain|entry.id already exists",
        ),
        // REPLACE on a seq conflict: refused before it can delete.
        (
            raw.insert_sql("INSERT OR REPLACE", 1, &before[0].1, forged, &hash::GENESIS),
            "extend the chain|entry.id already exists",
        ),
        // REPLACE on an id conflict would delete the old row, and this
        // connection has no recursive_triggers: refused before any delete.
        (
            raw.insert_sql(
                "REPLACE",
                4,
                &before[0].1,
                forged,
                &hash::from_slice(&before[2].4).unwrap(),
            ),
            "entry.id already exists",
        ),
    ];
    for (sql, needle) in &cases {
        refused(&raw, sql, needle, "sqlite").await;
    }
    assert_eq!(raw.rows().await, before, "sqlite: rows unchanged");
    read_back_unchanged(&app, &before, "sqlite").await;
    assert_verifies(&db, 3, "sqlite");
}

#[tokio::test]
async fn postgres_triggers_refuse_update_delete_and_truncate_even_for_the_owner() {
    let (db, app, before) = seeded(Backend::Postgres).await;
    let raw = Raw::open(&db).await;
    // The harness connects as a superuser: privileges do not stop it, the
    // triggers must.
    let Raw::Pg(pool) = &raw else { unreachable!() };
    let is_super: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        is_super,
        "the owner connection should be a superuser for this test"
    );
    let forged = r#"{"resourceType":"AuditEvent","outcome":"0"}"#;
    let cases = [
        (
            format!("UPDATE entry SET body = '{forged}' WHERE seq = 2"),
            "insert-only (UPDATE on entry refused)",
        ),
        (
            "UPDATE entry SET chain_hash = decode(repeat('00', 32), 'hex')".to_string(),
            "insert-only (UPDATE on entry refused)",
        ),
        (
            "DELETE FROM entry WHERE seq = 3".to_string(),
            "insert-only (DELETE on entry refused)",
        ),
        (
            "DELETE FROM entry".to_string(),
            "insert-only (DELETE on entry refused)",
        ),
        // CASCADE also truncates the tables that reference entry; the
        // statement-level triggers refuse it.
        (
            "TRUNCATE TABLE entry RESTART IDENTITY CASCADE".to_string(),
            "insert-only (TRUNCATE on",
        ),
        // An upsert that would overwrite on an id conflict goes through UPDATE.
        (
            raw.insert_sql(
                "INSERT",
                4,
                &before[0].1,
                forged,
                &hash::from_slice(&before[2].4).unwrap(),
            ) + &format!(" ON CONFLICT (id) DO UPDATE SET body = '{forged}'"),
            "insert-only (UPDATE on entry refused)",
        ),
    ];
    for (sql, needle) in &cases {
        refused(&raw, sql, needle, "postgres").await;
    }
    // Plain TRUNCATE: refused by the trigger, or earlier because other
    // ledger tables reference entry; either way nothing is removed.
    refused_with_any(
        &raw,
        "TRUNCATE entry",
        &[
            "insert-only (TRUNCATE on entry refused)",
            "cannot truncate a table referenced in a foreign key constraint",
        ],
        "postgres",
    )
    .await;
    assert_eq!(raw.rows().await, before, "postgres: rows unchanged");
    read_back_unchanged(&app, &before, "postgres").await;
    assert_verifies(&db, 3, "postgres");
}

backend_tests! {
    async fn inserts_that_do_not_extend_the_chain_by_one_are_refused(backend) {
        let ctx = format!("{backend:?}");
        let (db, _app, before) = seeded(backend).await;
        let raw = Raw::open(&db).await;
        let head = hash::from_slice(&before[2].4).unwrap();
        let body = before[0]
            .2
            .replace(&before[0].1, &uuid::Uuid::new_v4().to_string());
        let needle = "extend the chain by exactly one";
        // A gap (seq 5 after 3), far ahead, a back-fill (3 again) and seq 1.
        for seq in [5, 1000, 3, 1] {
            let id = uuid::Uuid::new_v4().to_string();
            let sql = raw.insert_sql("INSERT", seq, &id, &body, &head);
            refused(&raw, &sql, needle, &format!("{ctx}: seq {seq}")).await;
        }
        // Several rows in one statement: 4 extends the chain, 6 does not, so
        // the whole statement is refused and 4 is not kept either.
        let id = uuid::Uuid::new_v4().to_string();
        let two = raw.insert_sql("INSERT", 4, &id, &body, &head)
            + &format!(
                ", (6, '{}', 'x', {b}, {b}, {b}, 'x')",
                uuid::Uuid::new_v4(),
                b = raw.blob(&[0u8; 32])
            );
        refused(&raw, &two, needle, &format!("{ctx}: 4 then 6")).await;
        assert_eq!(raw.rows().await, before, "{ctx}: rows unchanged");
        assert_verifies(&db, 3, &ctx);
    }
}

/// A dedicated connection that has done `SET ROLE vellum_writer`.
async fn as_writer(db: &TestDb) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    conn.execute("SET ROLE vellum_writer").await.unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(who, "vellum_writer");
    conn
}

#[tokio::test]
async fn postgres_vellum_writer_may_select_and_insert_but_not_update_delete_or_truncate() {
    let (db, _app, before) = seeded(Backend::Postgres).await;
    let owner = Raw::open(&db).await;
    let mut conn = as_writer(&db).await;

    // The grants as the catalogue sees them.
    for (privilege, expected) in [
        ("SELECT", true),
        ("INSERT", true),
        ("UPDATE", false),
        ("DELETE", false),
        ("TRUNCATE", false),
    ] {
        let has: bool =
            sqlx::query_scalar("SELECT has_table_privilege('vellum_writer', 'entry', $1)")
                .bind(privilege)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(has, expected, "vellum_writer {privilege} on entry");
    }

    // SELECT works.
    let rows = sqlx::query(SELECT_ALL).fetch_all(&mut conn).await.unwrap();
    assert_eq!(rows.len(), 3);
    let body: String = rows[1].get("body");
    assert_eq!(body, before[1].2);

    // UPDATE, DELETE and TRUNCATE fail on privileges, before any trigger.
    for sql in [
        "UPDATE entry SET body = '{}' WHERE seq = 1",
        "UPDATE entry SET last_updated = 'x'",
        "DELETE FROM entry WHERE seq = 3",
        "DELETE FROM entry",
        "TRUNCATE entry",
    ] {
        let err = conn
            .execute(sql)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_message);
        match err {
            Ok(n) => panic!("vellum_writer: `{sql}` succeeded ({n} rows)"),
            Err(msg) => assert!(
                msg.contains("permission denied for table entry") && msg.contains("42501"),
                "vellum_writer: `{sql}` failed with {msg:?}"
            ),
        }
    }
    assert_eq!(owner.rows().await, before, "rows unchanged");

    // INSERT is allowed: a gap reaches (and is refused by) the chain trigger,
    // and a properly chained row is accepted and verifies.
    let head = hash::from_slice(&before[2].4).unwrap();
    let new_id = uuid::Uuid::new_v4().to_string();
    let body = before[0].2.replace(&before[0].1, &new_id);
    let gap = owner.insert_sql("INSERT", 5, &new_id, &body, &head);
    let msg = conn
        .execute(AssertSqlSafe(gap))
        .await
        .map_err(db_message)
        .unwrap_err();
    assert!(msg.contains("extend the chain"), "{msg}");
    let next = owner.insert_sql("INSERT", 4, &new_id, &body, &head);
    let n = conn
        .execute(AssertSqlSafe(next))
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
    let after = owner.rows().await;
    assert_eq!(after[..3], before[..], "earlier rows untouched");
    assert_eq!(after[3].1, new_id);
    // The fourth leaf completes no stored Merkle node (only every fourth
    // level above the leaves is stored), so the tree needs no row; ...
    // ... and its search-index rows (verify recomputes them from the body;
    // the body is entry 1's with another id, so the rows are entry 1's).
    sqlx::query(
        "INSERT INTO search_index (seq, param, sys, val, exact, low, high) \
         SELECT 4, param, sys, val, exact, low, high FROM search_index WHERE seq = 1",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_verifies(&db, 4, "after a chained insert as vellum_writer");
}

#[tokio::test]
async fn server_running_as_vellum_writer_creates_and_reads_back() {
    let db = TestDb::new(Backend::Postgres).await;
    // Migrate as the owner; the server itself must not need DDL rights.
    PostgresStore::connect(&db.url, None)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let owner = Raw::open(&db).await;
    let mut server = spawn_server_process(
        &db.url,
        &[
            ("VELLUM_DATABASE_ROLE", "vellum_writer"),
            ("VELLUM_MIGRATE_ON_START", "false"),
        ],
    );
    server.wait_ready().await;
    let client = vellum_testkit::authed_client();
    let post = |n: u64| {
        client
            .post(format!("{}/fhir/AuditEvent", server.base))
            .header("Content-Type", "application/fhir+json")
            .body(sample_event(n).to_string())
            .send()
    };

    let r = post(1).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-vellum-seq"], "1");
    let body = r.text().await.unwrap();
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = client
        .get(format!("{}/fhir/AuditEvent/{id}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.text().await.unwrap(),
        body,
        "read back as vellum_writer"
    );

    // The server really runs as vellum_writer: without INSERT on entry (the
    // superuser it logs in as would not care) a create fails, and works again
    // once the grant is back.
    owner
        .exec("REVOKE INSERT ON entry FROM vellum_writer")
        .await
        .unwrap();
    let r = post(2).await.unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome", "{oo}");
    owner
        .exec("GRANT INSERT ON entry TO vellum_writer")
        .await
        .unwrap();
    let r = post(3).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["x-vellum-seq"],
        "2",
        "no seq was used by the failed create"
    );

    assert_verifies(&db, 2, "server as vellum_writer");
}
