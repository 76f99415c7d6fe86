//! The command line: error messages that say what and where, flags that
//! win over the environment, warnings, help, completions and man page,
//! `hash` output that streams.

use std::net::TcpListener;

use vellum_testkit::{free_port, pg_admin_url, vellum_bin, with_database, Backend, TestDb};

use crate::{run, serve};

#[test]
fn verify_on_a_missing_sqlite_file_creates_nothing_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("absent.db");
    let url = format!("sqlite://{}", db.display());
    for args in [
        vec!["verify", "--database-url", &url],
        vec!["verify", "--json", "--database-url", &url],
        vec!["export", "--out", "x", "--database-url", &url],
        vec!["checkpoint", "--database-url", &url],
    ] {
        let (code, _, stderr) = run(&args, dir.path(), &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(&db.display().to_string()), "{stderr}");
        assert!(stderr.contains("no SQLite database"), "{stderr}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
}

#[test]
fn a_wrong_postgres_port_says_connection_refused_at_host_and_port() {
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["migrate", "--database-url", &url], dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

#[test]
fn a_missing_postgres_database_is_named() {
    let url = with_database(&pg_admin_url(), "vellum_ops_no_such_db");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["verify", "--database-url", &url], dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("vellum_ops_no_such_db"), "{stderr}");
    assert!(
        stderr.contains("cannot connect to PostgreSQL at"),
        "{stderr}"
    );
}

#[test]
fn an_unopenable_sqlite_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("no/such/dir/v.db");
    let url = format!("sqlite://{}", db.display());
    let (code, _, stderr) = run(&["migrate", "--database-url", &url], dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("cannot open SQLite database {}", db.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_busy_port_names_the_listener_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(
        &["serve", "--database-url", &db.url],
        dir.path(),
        &[
            ("VELLUM_HTTP_ADDR", "127.0.0.1:0"),
            ("VELLUM_MLLP_ADDR", &format!("127.0.0.1:{port}")),
        ],
    );
    assert_eq!(code, 2);
    let all = format!("{stdout}{stderr}");
    let needle = format!("cannot listen for MLLP (mllp_addr) on 127.0.0.1:{port}");
    assert_eq!(all.matches(&needle).count(), 1, "{all}");
}

/// Waits until `base`/readyz answers 200 (panics after 30 s or on exit).
async fn ready(child: &mut std::process::Child, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("vellum exited: {status}");
        }
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not ready in 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serve_flags_win_over_the_environment() {
    let db = TestDb::new(Backend::Sqlite).await;
    let port = free_port();
    // Every variable names something that would fail; the flags win.
    let mut child = std::process::Command::new(vellum_bin())
        .args(["serve", "--database-url", &db.url])
        .args([
            "--http-addr",
            &format!("localhost:{port}"),
            "--mllp-addr",
            "",
        ])
        .env("VELLUM_DATABASE_URL", "sqlite:///nonexistent/dir/never.db")
        .env("VELLUM_HTTP_ADDR", "8")
        .env("VELLUM_MLLP_ADDR", "bogus")
        .env("VELLUM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ready(&mut child, &format!("http://127.0.0.1:{port}")).await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_bare_port_in_the_environment_listens_on_loopback() {
    let db = TestDb::new(Backend::Sqlite).await;
    let port = free_port();
    let mut s = serve(
        &db.url,
        &[
            ("VELLUM_HTTP_ADDR", &port.to_string()),
            ("VELLUM_MLLP_ADDR", ""),
        ],
    );
    s.base = format!("http://127.0.0.1:{port}");
    s.ready().await;
}

#[test]
fn a_bad_listen_address_names_the_setting_and_the_expected_form() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(
        &["serve"],
        dir.path(),
        &[("VELLUM_HTTP_ADDR", "not an address")],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid setting `http_addr`"), "{stderr}");
    assert!(stderr.contains("expected host:port"), "{stderr}");
}

#[test]
fn a_misspelt_vellum_variable_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, stderr) = run(
        &["verify", "--database-url", "sqlite://absent.db"],
        dir.path(),
        &[("VELLUM_HTTP_ADR", "127.0.0.1:1"), ("VELLUM_LOG", "warn")],
    );
    assert!(
        stderr.contains("warning: VELLUM_HTTP_ADR is not a vellum setting"),
        "{stderr}"
    );
    assert!(!stderr.contains("VELLUM_LOG "), "{stderr}");
}

#[test]
fn every_subcommand_help_has_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "serve",
        "verify",
        "keygen",
        "checkpoint",
        "export",
        "proof",
        "verify-proof",
        "hash",
        "demo",
        "detect",
        "migrate",
        "completions",
        "man",
    ] {
        let (code, stdout, _) = run(&[cmd, "--help"], dir.path(), &[]);
        assert_eq!(code, 0, "{cmd}");
        assert!(
            stdout.contains("Example"),
            "{cmd} --help has no example:\n{stdout}"
        );
        assert!(
            !stdout.contains("DESIGN"),
            "{cmd} --help cites a file users do not have"
        );
    }
    let (_, stdout, _) = run(&["verify", "--help"], dir.path(), &[]);
    assert!(
        stdout.contains("--database-url <URL>") && stdout.contains("sqlite://PATH"),
        "{stdout}"
    );
}

#[test]
fn help_shows_no_value_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("VELLUM_CONFIG", "/run/secrets/hunter2-config.toml"),
        ("VELLUM_DEV_TOKEN", "hunter2-dev-token-0123456789"),
        (
            "VELLUM_DATABASE_URL",
            "postgres://vellum:hunter2-password@db.example/vellum",
        ),
        ("VELLUM_PRIVACY_PSEUDONYM_KEY", "hunter2-pseudonym-key-0123"),
    ];
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["verify", "--help"],
        vec!["token", "create", "--help"],
    ] {
        let (code, stdout, stderr) = run(&args, dir.path(), &env);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.contains("--config"), "{args:?}: {stdout}");
        assert!(
            !stdout.contains("hunter2") && !stderr.contains("hunter2"),
            "{args:?} shows a secret:\n{stdout}{stderr}"
        );
    }
}

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (code, bash, _) = run(&["completions", "bash"], dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(
        bash.contains("_vellum") && bash.contains("--database-url"),
        "{bash}"
    );
    let (code, zsh, _) = run(&["completions", "zsh"], dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(zsh.starts_with("#compdef vellum"), "{zsh}");
    let (code, man, _) = run(&["man"], dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH vellum"), "{man}");
    assert!(man.contains("verify"), "{man}");
}

#[test]
fn hash_json_streams_json_lines_and_draws_nothing_when_piped() {
    let dir = vellum_testkit::dicom::fixtures().join("mr");
    let cwd = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(&["hash", "--json", dir.to_str().unwrap()], cwd.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "progress drawn into a pipe: {stderr:?}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(types.len(), lines.len());
    let instances = types.iter().filter(|t| **t == "instance").count();
    assert_eq!(instances, 4, "{stdout}");
    // Study records come last, after every file.
    let first_study = types.iter().position(|t| *t == "study").expect("a study");
    assert!(
        types[first_study..].iter().all(|t| *t == "study"),
        "{types:?}"
    );
    assert_eq!(lines[first_study]["instances"], 4);
}

#[test]
fn hash_verify_speaks_words_not_rust() {
    let cwd = tempfile::tempdir().unwrap();
    let (_, _, stderr) = run(
        &[
            "hash",
            "--verify",
            "x",
            "--database-url",
            "sqlite://absent.db",
        ],
        cwd.path(),
        &[("VELLUM_DICOM_FOLDERS", cwd.path().to_str().unwrap())],
    );
    assert!(
        !stderr.contains("Some(") && !stderr.contains("None"),
        "{stderr}"
    );
    assert!(stderr.contains("no SQLite database"), "{stderr}");
    assert!(!cwd.path().join("absent.db").exists());
}
