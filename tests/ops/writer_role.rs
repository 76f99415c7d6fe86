//! The PostgreSQL writer role's name is a setting (`database_writer_role`):
//! `vellum migrate` creates it NOLOGIN, grants it SELECT and INSERT only,
//! takes the default role's rights in that database away, and a server
//! switching to it (`database_role`) can append but not change anything.

use sqlx::{Connection, Executor, Row};
use vellum_testkit::{run_verify, sample_event, Backend, TestApp, TestDb};

use crate::{run, serve};

const TABLES: [&str; 5] = [
    "entry",
    "entry_key",
    "search_index",
    "merkle_node",
    "checkpoint",
];

async fn privilege(c: &mut sqlx::PgConnection, role: &str, table: &str, what: &str) -> bool {
    sqlx::query("SELECT has_table_privilege($1, $2, $3) AS p")
        .bind(role)
        .bind(table)
        .bind(what)
        .fetch_one(&mut *c)
        .await
        .expect("has_table_privilege")
        .get("p")
}

#[tokio::test]
async fn migrate_grants_a_writer_role_with_a_configured_name_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    // Roles are cluster-wide: a name of its own per run.
    let role = format!("vw_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().expect("dir");
    let (code, stdout, stderr) = run(
        &["migrate", "--database-url", &db.url],
        dir.path(),
        &[("VELLUM_DATABASE_WRITER_ROLE", &role)],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");

    let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let login: bool = sqlx::query("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
        .bind(&role)
        .fetch_one(&mut c)
        .await
        .expect("the configured role exists")
        .get(0);
    assert!(!login, "the writer role must be NOLOGIN");
    for table in TABLES {
        assert!(privilege(&mut c, &role, table, "SELECT").await, "{table}");
        assert!(privilege(&mut c, &role, table, "INSERT").await, "{table}");
        for refused in ["UPDATE", "DELETE", "TRUNCATE"] {
            assert!(
                !privilege(&mut c, &role, table, refused).await,
                "{role} may {refused} {table}"
            );
        }
        assert!(
            !privilege(&mut c, "vellum_writer", table, "INSERT").await,
            "the default role still writes {table}"
        );
    }

    // A server that switches to the role appends, and the chain verifies.
    let mut server = serve(
        &db.url,
        &[
            ("VELLUM_DATABASE_ROLE", role.as_str()),
            ("VELLUM_MIGRATE_ON_START", "false"),
            ("VELLUM_MLLP_ADDR", ""),
        ],
    );
    server.ready().await;
    let app = TestApp {
        base: server.base.clone(),
        client: vellum_testkit::authed_client(),
    };
    assert_eq!(app.post_event(&sample_event(7)).await.status(), 201);
    server.stop();
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["entries"], 1, "{verdict}");

    // Leave the cluster as found.
    c.execute(sqlx::AssertSqlSafe(format!("DROP OWNED BY \"{role}\"")))
        .await
        .expect("drop owned");
    drop(c);
    drop(db);
    let mut admin = sqlx::PgConnection::connect(&vellum_testkit::pg_admin_url())
        .await
        .expect("admin");
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP ROLE IF EXISTS \"{role}\""
        )))
        .await;
}

#[test]
fn a_writer_role_that_is_not_an_identifier_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, stderr) = run(
        &[
            "migrate",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/x",
        ],
        dir.path(),
        &[("VELLUM_DATABASE_WRITER_ROLE", "w; DROP TABLE entry")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("database_writer_role"), "{stderr}");
}
