//! Search latency over a large store: fills a fresh database with
//! N realistic radiology AuditEvents through the real ledger (validation,
//! canonical JSON, chaining, search index — in batches, as a busy site's
//! group commits would), then serves it with the real HTTP application and
//! times typical forensic queries over HTTP. The baseline in the same run is
//! a read by id (one primary-key lookup through the same HTTP stack).
//!
//! cargo bench --bench search -- [--backend sqlite|postgres|both] [--events 1000000]
//!   [--queries 200] [--reuse] [--clients 16] [--throughput-secs 10]
//!   (PostgreSQL: DATABASE_URL is the admin URL)
//!
//! After the per-query latencies it measures throughput: `--clients` concurrent
//! keep-alive clients send the forensic queries in turn for `--throughput-secs`,
//! then the same clients send reads by id for as long (the same-run baseline).
//! `--throughput-secs 0` skips it.
//!
//! `--reuse` keeps the filled store (SQLite: `target/bench-data/search-N.db`;
//! PostgreSQL: database `vellum_search_bench_N`) and, when it already holds N
//! entries, skips the fill: a query change can be re-measured in minutes
//! instead of refilling a million events.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vellum::config::Settings;
use vellum::fhir::create::prepare_audit_event;
use vellum::startup::Application;

const PATIENTS: u64 = 20_000;
const RADIOLOGISTS: u64 = 200;
const MODELS: [(&str, &str); 4] = [
    ("chest-ai", "2.4.1"),
    ("chest-ai", "2.5.0"),
    ("fracture-ai", "1.0.3"),
    ("stroke-ai", "3.1.0"),
];
const DAYS: u64 = 365;

/// Cheap deterministic pseudo-random numbers (no extra crate for a bench).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A query shape: a name and a generator of its query string.
type Gen = Box<dyn Fn(&mut Rng) -> String + Send + Sync>;
type Queries = Vec<(&'static str, Gen)>;

fn day(d: u64) -> String {
    let t = time::macros::datetime!(2026-01-01 00:00 UTC) + time::Duration::days(d as i64);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Event `n`: an AI inference (60 %), an override (25 %) or a study read.
fn event(n: u64, rng: &mut Rng) -> Value {
    let patient = rng.below(PATIENTS);
    let rad = rng.below(RADIOLOGISTS);
    let (model, version) = MODELS[rng.below(MODELS.len() as u64) as usize];
    let d = rng.below(DAYS);
    let secs = rng.below(86_400);
    let recorded = format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        day(d),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        n % 1000
    );
    let kind = match rng.below(100) {
        0..=59 => "inference",
        60..=84 => "override",
        _ => "read",
    };
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112", "display": "Query"},
        "subtype": [{"system": "https://vellum-audit.org/fhir/CodeSystem/radiology-ai-event", "code": kind}],
        "action": "E",
        "recorded": recorded,
        "outcome": "0",
        "agent": [
            {"who": {"reference": format!("Practitioner/rad-{rad}"),
                     "identifier": {"system": "urn:oid:1.2.3.4", "value": format!("rad-{rad}")}},
             "name": format!("Radiologist {rad}"), "requestor": true,
             "role": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PPRF"}]}]},
            {"who": {"identifier": {"system": "https://vellum-audit.org/fhir/ai-model", "value": format!("{model}|{version}")},
                     "display": format!("{model} {version}")},
             "requestor": false, "network": {"address": "10.0.0.5", "type": "2"}}
        ],
        "source": {"site": "Radiology", "observer": {"display": "pacs-01"}},
        "entity": [
            {"what": {"identifier": {"system": "urn:dicom:uid", "value": format!("urn:oid:1.2.826.0.1.3680043.8.498.{n}")}},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "3"},
             "detail": [{"type": "confidence", "valueString": "0.940"}]},
            {"what": {"reference": format!("Patient/p{patient}")},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}
        ]
    })
}

struct Args {
    backends: Vec<String>,
    events: u64,
    queries: usize,
    reuse: bool,
    clients: usize,
    throughput_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        backends: vec!["sqlite".into(), "postgres".into()],
        events: 1_000_000,
        queries: 200,
        reuse: false,
        clients: 16,
        throughput_secs: 10,
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
            "--queries" => {
                a.queries = val.parse().expect("--queries N");
                i += 1;
            }
            "--clients" => {
                a.clients = val.parse().expect("--clients N");
                i += 1;
            }
            "--throughput-secs" => {
                a.throughput_secs = val.parse().expect("--throughput-secs N");
                i += 1;
            }
            "--reuse" => a.reuse = true,
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    a
}

/// The store to fill (or, with `--reuse`, an already filled one), and a
/// temporary directory to keep alive while it is used.
async fn database_url(backend: &str, a: &Args) -> (String, Option<tempfile::TempDir>) {
    if backend == "sqlite" && a.reuse {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
        std::fs::create_dir_all(&dir).expect("bench-data dir");
        let url = format!(
            "sqlite://{}",
            dir.join(format!("search-{}.db", a.events)).display()
        );
        return (url, None);
    }
    if backend == "sqlite" {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("search-bench.db").display());
        return (url, Some(dir));
    }
    let admin = vellum_testkit::pg_admin_url();
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .expect("postgres admin");
    let name = if a.reuse {
        format!("vellum_search_bench_{}", a.events)
    } else {
        "vellum_search_bench".to_string()
    };
    let url = vellum_testkit::with_database(&admin, &name);
    if a.reuse && stored_entries(&url).await >= a.events {
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

/// Entries already in a PostgreSQL bench database (0 when it does not exist).
async fn stored_entries(url: &str) -> u64 {
    use sqlx::Connection;
    let Ok(mut c) = sqlx::PgConnection::connect(url).await else {
        return 0;
    };
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(seq), 0) FROM entry")
        .fetch_one(&mut c)
        .await
        .map_or(0, |n| n as u64)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run_backend(backend: &str, a: &Args) {
    let (url, _keep) = database_url(backend, a).await;
    let settings = Settings::validate(vellum_testkit::raw_settings_for(&url)).expect("settings");
    let app = Application::build(&settings).await.expect("app");
    let port = app.port();
    let ledger = app.ledger().clone();
    tokio::spawn(app.run_until_stopped());

    // --- fill: prepare on a blocking thread per batch, append whole batches ---
    let started = Instant::now();
    let batch = 500u64;
    let already = { ledger.head().await.expect("head").seq as u64 };
    if already > 0 && already != a.events {
        panic!("{url} holds {already} entries, not {}: remove it", a.events);
    }
    let mut next = already;
    let mut pending: Option<tokio::task::JoinHandle<Vec<vellum::ledger::Draft>>> = None;
    while next < a.events || pending.is_some() {
        let prepared = if next < a.events {
            let from = next;
            let to = (next + batch).min(a.events);
            next = to;
            Some(tokio::task::spawn_blocking(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ from.wrapping_mul(0x2545_F491_4F6C_DD1D));
                (from..to)
                    .map(|n| {
                        let body = event(n, &mut rng).to_string();
                        prepare_audit_event(body.as_bytes()).expect("valid event")
                    })
                    .collect()
            }))
        } else {
            None
        };
        if let Some(p) = pending.take() {
            let drafts = p.await.expect("prepare");
            ledger.append_all(drafts).await.expect("append");
        }
        pending = prepared;
        if next.is_multiple_of(100_000) && next > 0 {
            eprintln!(
                "  {backend}: {next} events ({:.0}/s)",
                next as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let fill = started.elapsed();
    if backend == "postgres" {
        // What autovacuum does on a live insert-only site after bulk growth
        // (PostgreSQL >= 13 vacuums on inserts too): fresh statistics for the
        // planner, and a visibility map, without which every index-only
        // probe also reads the heap (measured: 30 ms instead of 1 ms).
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query("VACUUM (ANALYZE)")
            .execute(&mut c)
            .await
            .expect("vacuum analyze");
    }
    if already > 0 {
        println!("### {backend}: {already} events (store reused, not filled in this run)");
    } else {
        println!(
            "### {backend}: {} events stored in {:.0} s ({:.0} events/s through validation, chaining and indexing)",
            a.events,
            fill.as_secs_f64(),
            a.events as f64 / fill.as_secs_f64()
        );
    }

    // --- queries over HTTP ---
    let client = vellum_testkit::authed_client();
    let base = format!("http://127.0.0.1:{port}/fhir");
    // Ids to read (the baseline): from a search page.
    let page: Value = client
        .get(format!("{base}/AuditEvent?_count=200"))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    let ids: Vec<String> = page["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["resource"]["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut rng = Rng(42);
    let events = a.events;
    let ids2 = ids.clone();
    let queries: Queries = vec![
        (
            "read by id (baseline)",
            Box::new(move |r| format!("AuditEvent/{}", ids2[r.below(ids2.len() as u64) as usize])),
        ),
        (
            "patient P in March",
            Box::new(|r| {
                format!(
                    "AuditEvent?patient=Patient/p{}&date=ge2026-03-01&date=lt2026-04-01",
                    r.below(PATIENTS)
                )
            }),
        ),
        (
            "inferences by model version X on day Y by radiologist Z",
            Box::new(|r| {
                let (m, v) = MODELS[r.below(4) as usize];
                format!("AuditEvent?subtype=inference&agent.identifier=https://vellum-audit.org/fhir/ai-model|{m}%7C{v}&date={}&agent=Practitioner/rad-{}", day(r.below(DAYS)), r.below(RADIOLOGISTS))
            }),
        ),
        (
            "study by Study Instance UID",
            Box::new(move |r| {
                format!("AuditEvent?entity.identifier=urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.8.498.{}", r.below(events))
            }),
        ),
        (
            "all overrides on day Y, newest first (page of 50)",
            Box::new(|r| {
                format!(
                    "AuditEvent?subtype=override&date={}&_sort=-date",
                    day(r.below(DAYS))
                )
            }),
        ),
        (
            "radiologist Z, _summary=count",
            Box::new(|r| {
                format!(
                    "AuditEvent?agent=Practitioner/rad-{}&_summary=count",
                    r.below(RADIOLOGISTS)
                )
            }),
        ),
        (
            "broad: action=E, first page",
            Box::new(|_| "AuditEvent?action=E".to_string()),
        ),
    ];
    println!();
    println!("| query | p50 ms | p95 ms | p50 / read-by-id p50 | mean matches on page |");
    println!("|---|---:|---:|---:|---:|");
    let mut baseline_p50 = None;
    for (name, gen) in &queries {
        // Warm-up (first queries pay page-cache misses).
        for _ in 0..5 {
            let _ = client.get(format!("{base}/{}", gen(&mut rng))).send().await;
        }
        let mut lat = Vec::with_capacity(a.queries);
        let mut matches = 0usize;
        for _ in 0..a.queries {
            let url = format!("{base}/{}", gen(&mut rng));
            let t = Instant::now();
            let r = client.get(&url).send().await.expect("query");
            let status = r.status();
            let body: Value = r.json().await.expect("json body");
            lat.push(t.elapsed());
            assert_eq!(status, 200, "{url}: {body}");
            matches += body["entry"]
                .as_array()
                .map_or(usize::from(body["resourceType"] == "AuditEvent"), Vec::len);
        }
        lat.sort();
        let p50 = percentile(&lat, 0.5);
        let p95 = percentile(&lat, 0.95);
        let base_p50 = *baseline_p50.get_or_insert(p50);
        println!(
            "| {name} | {:.2} | {:.2} | {:.1} | {:.1} |",
            ms(p50),
            ms(p95),
            p50.as_secs_f64() / base_p50.as_secs_f64(),
            matches as f64 / a.queries as f64
        );
    }
    println!();
    if a.throughput_secs > 0 {
        let queries = std::sync::Arc::new(queries);
        let span = Duration::from_secs(a.throughput_secs);
        // Forensic shapes in turn (index 1..), then the baseline (index 0).
        let forensic =
            throughput(&client, &base, &queries, 1..queries.len(), a.clients, span).await;
        let by_id = throughput(&client, &base, &queries, 0..1, a.clients, span).await;
        println!(
            "throughput, {} clients, {} s each: forensic queries in turn {:.0} searches/s (p95 {:.2} ms); \
             reads by id {:.0}/s (p95 {:.2} ms); ratio {:.2}",
            a.clients,
            a.throughput_secs,
            forensic.0,
            ms(forensic.1),
            by_id.0,
            ms(by_id.1),
            forensic.0 / by_id.0
        );
        println!();
    }
}

/// `clients` concurrent loops over the queries `which` (in turn) for `span`:
/// completed requests per second and their p95 latency.
async fn throughput(
    client: &reqwest::Client,
    base: &str,
    queries: &std::sync::Arc<Queries>,
    which: std::ops::Range<usize>,
    clients: usize,
    span: Duration,
) -> (f64, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (client, base, queries, which) = (
            client.clone(),
            base.to_string(),
            queries.clone(),
            which.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xC0FFEE ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9));
            let mut lat = Vec::new();
            let mut k = which.start + c % which.len();
            while started.elapsed() < span {
                let url = format!("{base}/{}", (queries[k].1)(&mut rng));
                let t = Instant::now();
                let r = client.get(&url).send().await.expect("query");
                assert_eq!(r.status(), 200, "{url}");
                r.bytes().await.expect("body");
                lat.push(t.elapsed());
                k = which.start + (k + 1 - which.start) % which.len();
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / secs, percentile(&all, 0.95))
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for backend in &a.backends {
        rt.block_on(run_backend(backend, &a));
    }
}
