//! QA report latency over a large store: fills a fresh database with
//! `vellum demo` traffic (the real write path: the AI API's builders,
//! intake validation, chaining, search index and summary rows, group
//! commits of 64 cases in flight), serves it with the real HTTP application
//! and times every report over HTTP (authentication and the audited access
//! record included), several runs each, median.
//!
//! Baselines measured in the same run: `SELECT count(*) FROM entry` on the
//! same database, a read by id over the same HTTP stack, and a plain walk
//! of every entry through the ledger (what every report did before summary
//! rows: read each body).
//!
//! cargo bench --bench reports -- [--backend sqlite|postgres|both]
//!   [--events 1000000] [--runs 5] [--reuse] [--fill-only]
//!   (PostgreSQL: DATABASE_URL is the admin URL; `--fill-only` with `--reuse`
//!   fills the kept store and stops, so both backends can be filled at once
//!   and timed one after the other)
//!
//! `--reuse` keeps the filled store (SQLite: `target/bench-data/reports-N.db`;
//! PostgreSQL: database `vellum_reports_bench_N`) and skips the fill when it
//! already holds at least N entries.

use std::time::{Duration, Instant};

use serde_json::Value;
use vellum::config::Settings;
use vellum::startup::Application;

struct Args {
    backends: Vec<String>,
    events: u64,
    runs: usize,
    reuse: bool,
    fill_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        backends: vec!["sqlite".into(), "postgres".into()],
        events: 1_000_000,
        runs: 5,
        reuse: false,
        fill_only: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--backend" => {
                a.backends = match val.as_str() {
                    "both" => vec!["sqlite".into(), "postgres".into()],
                    b => vec![b.to_string()],
                };
                i += 1;
            }
            "--events" => {
                a.events = val.parse().expect("--events N");
                i += 1;
            }
            "--runs" => {
                a.runs = val.parse().expect("--runs N");
                i += 1;
            }
            "--reuse" => a.reuse = true,
            "--fill-only" => a.fill_only = true,
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    a
}

async fn database_url(backend: &str, a: &Args) -> (String, Option<tempfile::TempDir>) {
    if backend == "sqlite" {
        if a.reuse {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
            std::fs::create_dir_all(&dir).expect("bench-data dir");
            let path = dir.join(format!("reports-{}.db", a.events));
            return (format!("sqlite://{}", path.display()), None);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("reports-bench.db").display());
        return (url, Some(dir));
    }
    let admin = vellum_testkit::pg_admin_url();
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .expect("postgres admin");
    let name = if a.reuse {
        format!("vellum_reports_bench_{}", a.events)
    } else {
        "vellum_reports_bench".to_string()
    };
    let url = vellum_testkit::with_database(&admin, &name);
    if a.reuse && head_of(&url).await >= a.events {
        return (url, None);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await
    .expect("drop bench db");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create bench db");
    (url, None)
}

async fn head_of(url: &str) -> u64 {
    let Ok(url) = vellum::config::DatabaseUrl::parse(url) else {
        return 0;
    };
    let Ok(store) = vellum::store::AnyStore::connect(&url, None).await else {
        return 0;
    };
    use vellum::store::Store;
    store.head().await.map_or(0, |h| h.seq as u64)
}

/// A size line of /proc/self/status (`VmRSS`, `RssAnon`), MB (0 where
/// /proc is missing).
fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix(':')))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resident set size, MB; SQLite's memory-mapped file pages count in it.
fn rss_mb() -> f64 {
    status_mb("VmRSS")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `SELECT count(*) FROM entry` on a connection of its own.
async fn count_entries(url: &str) -> Duration {
    use sqlx::Connection;
    let started = Instant::now();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
            .await
            .expect("sqlite");
        let started = Instant::now();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM entry")
            .fetch_one(&mut c)
            .await
            .expect("count");
        return started.elapsed();
    }
    let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
    let _ = started;
    let started = Instant::now();
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM entry")
        .fetch_one(&mut c)
        .await
        .expect("count");
    started.elapsed()
}

async fn get(client: &reqwest::Client, url: &str) -> (Duration, usize) {
    let started = Instant::now();
    let res = client.get(url).send().await.expect("request");
    assert!(res.status().is_success(), "{url}: {}", res.status());
    let body = res.bytes().await.expect("body");
    (started.elapsed(), body.len())
}

async fn run_backend(backend: &str, a: &Args) {
    let (url, _keep) = database_url(backend, a).await;
    let settings = Settings::validate(vellum_testkit::raw_settings_for(&url)).expect("settings");
    let already = head_of(&url).await;
    if already > 0 && already < a.events {
        panic!(
            "{url} holds {already} entries, fewer than {}: remove it",
            a.events
        );
    }
    if already == 0 {
        let started = Instant::now();
        let s = vellum::demo::run_configured(&settings, a.events, 7)
            .await
            .expect("demo fill");
        let t = started.elapsed().as_secs_f64();
        println!(
            "### {backend}: {} events stored by `vellum demo` in {t:.0} s ({:.0} events/s)",
            s.created,
            s.created as f64 / t
        );
    } else {
        println!("### {backend}: {already} events (store reused, not filled in this run)");
    }
    if a.fill_only {
        return;
    }
    if backend == "postgres" {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query("VACUUM (ANALYZE)")
            .execute(&mut c)
            .await
            .expect("vacuum analyze");
    }
    let rss_before = rss_mb();
    let started = Instant::now();
    let app = Application::build(&settings).await.expect("app");
    let port = app.port();
    let ledger = app.ledger().clone();
    tokio::spawn(app.run_until_stopped());
    let client = vellum_testkit::authed_client();
    let base = format!("http://127.0.0.1:{port}");
    // Cold: the first report after start waits for the reports' dataset to
    // be loaded from the summary rows (the start-up load).
    let (t, _) = get(&client, &format!("{base}/reports/overrides")).await;
    let cold = started.elapsed();
    println!(
        "cold start: first `/reports/overrides` answered {:.0} ms after start (its own request {:.0} ms); \
         process RSS {rss_before:.0} MB before start, {:.0} MB with the reports' dataset loaded \
         (of which anonymous memory {:.0} MB; the rest is mapped database file)",
        ms(cold),
        ms(t),
        rss_mb(),
        status_mb("RssAnon")
    );

    // Parameters that name real data: the first case of the drifting
    // version on a busy day, its study, radiologist and patient.
    let probe: Value = client
        .get(format!(
            "{base}/reports/cases?model_version=chest-xr-triage%7C2.1&from=2026-03-02&to=2026-03-03"
        ))
        .send()
        .await
        .expect("cases")
        .json()
        .await
        .expect("json");
    let case = &probe["cases"][0];
    let study = case["study_uid"].as_str().unwrap_or_default().to_string();
    let radiologist = case["radiologist"].as_str().unwrap_or_default().to_string();
    let inference = case["inference_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let patient = case["patient"].as_str().unwrap_or_default().to_string();
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();

    let head = ledger.head().await.expect("head").seq;
    println!("\n{head} entries. Median of {} runs (ms); ratio = median / `SELECT count(*) FROM entry` median.\n", a.runs);
    let mut baseline = Vec::new();
    for _ in 0..a.runs {
        baseline.push(count_entries(&url).await);
    }
    let base_ms = ms(median(baseline));
    println!("| query | median ms | ratio | response bytes |");
    println!("|---|---:|---:|---:|");
    println!("| `SELECT count(*) FROM entry` (baseline) | {base_ms:.1} | 1.0 | – |");

    let reports: Vec<(&str, String)> = vec![
        ("read by id over HTTP", format!("/fhir/AuditEvent/{inference}")),
        ("overrides", "/reports/overrides".into()),
        ("overrides group_by=model_version", "/reports/overrides?group_by=model_version".into()),
        ("overrides group_by=finding,radiologist", "/reports/overrides?group_by=finding,radiologist".into()),
        ("overrides group_by=site,week", "/reports/overrides?group_by=site,week".into()),
        ("overrides model_version + month, CSV", "/reports/overrides?model_version=chest-xr-triage%7C2.1&from=2026-03-01&to=2026-04-01&format=csv".into()),
        ("model-versions model=chest-xr-triage", "/reports/model-versions?model=chest-xr-triage".into()),
        ("drift", "/reports/drift".into()),
        ("quality", "/reports/quality".into()),
        ("quality group_by=week", "/reports/quality?group_by=week".into()),
        ("cases version X, day Y, radiologist Z", format!("/reports/cases?model_version=chest-xr-triage%7C2.1&from=2026-03-02&to=2026-03-03&radiologist={}", enc(&radiologist))),
        ("cases finding A rejected or edited, one week", "/reports/cases?finding=RID5352&action=override&from=2026-03-02&to=2026-03-09".into()),
        ("study-history", format!("/reports/study-history?study={}", enc(&study))),
        ("patient-access", format!("/reports/patient-access?patient={}", enc(&patient))),
        ("/ui/ page", "/ui/?group_by=model_version".into()),
    ];
    for (name, path) in &reports {
        let url = format!("{base}{path}");
        let (_, _) = get(&client, &url).await; // warm-up
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..a.runs {
            let (t, n) = get(&client, &url).await;
            times.push(t);
            bytes = n;
        }
        let m = ms(median(times));
        println!("| {name} | {m:.1} | {:.1} | {bytes} |", m / base_ms);
    }
    // What every report did before summary rows: read every body.
    let started = Instant::now();
    let mut n = 0u64;
    vellum::reports::events::walk(&ledger, |_, body| n += body.len() as u64)
        .await
        .expect("walk");
    let walk = ms(started.elapsed());
    println!(
        "| plain ledger walk of every body (once; {} MB) | {walk:.1} | {:.1} | – |",
        n / 1_000_000,
        walk / base_ms
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    for b in a.backends.clone() {
        run_backend(&b, &a).await;
    }
}
