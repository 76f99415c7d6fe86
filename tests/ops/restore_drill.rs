//! The PostgreSQL backup and restore drill of docs/operations.md, run for
//! real: pg_dump, pg_restore into a fresh database, `vellum verify`.

use std::process::Command;

use vellum_testkit::{run_verify, sample_event, tool_available, Backend, TestApp, TestDb};

use crate::serve;

#[tokio::test]
async fn a_pg_dump_restored_into_a_fresh_database_verifies() {
    let tools = ["pg_dump", "pg_restore"]
        .iter()
        .all(|t| vellum_testkit::on_path(t));
    if !tool_available("pg_dump and pg_restore", tools) {
        return;
    }
    let source = TestDb::new(Backend::Postgres).await;
    let mut server = serve(&source.url, &[("VELLUM_MLLP_ADDR", "")]);
    server.ready().await;
    let app = TestApp {
        base: server.base.clone(),
        client: vellum_testkit::authed_client(),
    };
    for n in 0..5 {
        assert_eq!(app.post_event(&sample_event(100 + n)).await.status(), 201);
    }
    server.stop();
    let (code, before) = run_verify(&source.url);
    assert_eq!(code, 0, "{before}");

    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("vellum.dump");
    let out = Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&source.url)
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let target = TestDb::new(Backend::Postgres).await;
    let out = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname", &target.url])
        .arg(&dump)
        .output()
        .expect("run pg_restore");
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, after) = run_verify(&target.url);
    assert_eq!(code, 0, "restored database fails verify: {after}");
    assert_eq!(after["entries"], 5, "{after}");
    assert_eq!(
        after["head_chain_hash"], before["head_chain_hash"],
        "{after}"
    );
}
