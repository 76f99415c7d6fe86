//! Two `vellum serve` processes appending to ONE database (docs/operations.md:
//! with several vellum instances on one PostgreSQL, the writer serialises on a
//! transaction-scoped advisory lock and reads the chain head inside the
//! transaction). The chain must not fork: seqs 1..=600 exactly once, every
//! id readable identically from either process, and `vellum verify` passes.
//!
//! The same scenario runs on one SQLite file shared by two processes, where
//! `BEGIN IMMEDIATE` + the head read inside the transaction play the part of
//! the advisory lock.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use tokio::task::JoinSet;
use vellum_testkit::{run_verify, sample_event, spawn_server_process, Backend, TestDb};

/// Client tasks per server.
const TASKS_PER_SERVER: usize = 16;
/// Events appended through each server.
const EVENTS_PER_SERVER: u64 = 300;
const SERVERS: usize = 2;
const TOTAL: u64 = EVENTS_PER_SERVER * SERVERS as u64;

fn run(backend: Backend, start: Start) {
    crate::serially(two_writers(backend, start));
}

/// How the two processes come up on the fresh database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Both at once: both run their start-up migration concurrently.
    Together,
    /// The second only after the first is ready (database already migrated).
    OneAfterTheOther,
}

#[derive(Debug, Clone)]
struct Ack {
    server: usize,
    id: String,
    body: String,
    seq: i64,
    chain_hash: String,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(dev_headers())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

fn dev_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        vellum_testkit::dev_auth().parse().expect("header value"),
    );
    h
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Appends through one server until that server's budget is used up.
async fn client_loop(
    client: reqwest::Client,
    server: usize,
    base: String,
    next: Arc<AtomicU64>,
    barrier: Arc<Barrier>,
) -> Result<Vec<Ack>, String> {
    barrier.wait().await;
    let mut acks = Vec::new();
    loop {
        let n = next.fetch_add(1, Ordering::SeqCst);
        if n >= EVENTS_PER_SERVER {
            return Ok(acks);
        }
        let r = client
            .post(format!("{base}/fhir/AuditEvent"))
            .header("Content-Type", "application/fhir+json")
            .body(sample_event(server as u64 * 1_000_000 + n).to_string())
            .send()
            .await
            .map_err(|e| format!("server {server}: POST failed: {e}"))?;
        let status = r.status().as_u16();
        let seq = header(&r, "X-Vellum-Seq");
        let chain = header(&r, "X-Vellum-Chain-Hash");
        let body = r
            .text()
            .await
            .map_err(|e| format!("server {server}: reading the 201 failed: {e}"))?;
        if status != 201 {
            return Err(format!(
                "server {server}: status {status}: {}",
                body.chars().take(400).collect::<String>()
            ));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("201 body is not JSON: {e}"))?;
        let id = v["id"].as_str().ok_or("201 body without id")?.to_string();
        let seq = seq
            .and_then(|s| s.parse().ok())
            .ok_or("201 without a numeric X-Vellum-Seq")?;
        let chain_hash = chain.ok_or("201 without X-Vellum-Chain-Hash")?;
        acks.push(Ack {
            server,
            id,
            body,
            seq,
            chain_hash,
        });
    }
}

/// GETs every ack from every server; returns the mismatches.
async fn read_back_everywhere(bases: &[String], acks: &[Ack]) -> Vec<String> {
    let client = http_client();
    let mut set = JoinSet::new();
    for chunk in acks.chunks(acks.len().div_ceil(16).max(1)) {
        let chunk = chunk.to_vec();
        let (client, bases) = (client.clone(), bases.to_vec());
        set.spawn(async move {
            let mut problems = Vec::new();
            for a in chunk {
                for (s, base) in bases.iter().enumerate() {
                    let what = format!(
                        "server {s}: GET {} (seq {}, acked by {})",
                        a.id, a.seq, a.server
                    );
                    let r = match client
                        .get(format!("{base}/fhir/AuditEvent/{}", a.id))
                        .send()
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            problems.push(format!("{what}: {e}"));
                            continue;
                        }
                    };
                    let status = r.status().as_u16();
                    let seq = header(&r, "X-Vellum-Seq");
                    let chain = header(&r, "X-Vellum-Chain-Hash");
                    let body = r.text().await.unwrap_or_default();
                    if status != 200 {
                        problems.push(format!("{what}: status {status}"));
                    } else if body != a.body {
                        problems.push(format!("{what}: body differs"));
                    } else if seq.as_deref() != Some(a.seq.to_string().as_str())
                        || chain.as_deref() != Some(a.chain_hash.as_str())
                    {
                        problems.push(format!("{what}: receipt headers {seq:?} {chain:?}"));
                    }
                }
            }
            problems
        });
    }
    let mut problems = Vec::new();
    while let Some(r) = set.join_next().await {
        problems.extend(r.expect("read-back task"));
    }
    problems
}

async fn two_writers(backend: Backend, start: Start) {
    let started = Instant::now();
    let db = TestDb::new(backend).await;
    // Small batches, so the two writers take turns many times.
    let env = [("VELLUM_BATCH_MAX_EVENTS", "16")];
    let mut servers = Vec::new();
    match start {
        Start::Together => {
            for _ in 0..SERVERS {
                servers.push(spawn_server_process(&db.url, &env));
            }
            for s in &mut servers {
                s.wait_ready().await;
            }
        }
        Start::OneAfterTheOther => {
            for _ in 0..SERVERS {
                let mut s = spawn_server_process(&db.url, &env);
                s.wait_ready().await;
                servers.push(s);
            }
        }
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();

    let load_started = Instant::now();
    let client = http_client();
    let barrier = Arc::new(Barrier::new(SERVERS * TASKS_PER_SERVER));
    let mut tasks = JoinSet::new();
    for (server, base) in bases.iter().enumerate() {
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..TASKS_PER_SERVER {
            tasks.spawn(client_loop(
                client.clone(),
                server,
                base.clone(),
                next.clone(),
                barrier.clone(),
            ));
        }
    }
    let mut acks = Vec::new();
    let mut failures = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = tasks.join_next().await {
            match r.expect("client task") {
                Ok(a) => acks.extend(a),
                Err(e) => failures.push(e),
            }
        }
    })
    .await;
    assert!(joined.is_ok(), "clients did not finish within 120 s");
    let load_time = load_started.elapsed();
    assert!(
        failures.is_empty(),
        "{backend:?}: {} client tasks failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(acks.len() as u64, TOTAL, "every append answered 201");
    for s in 0..SERVERS {
        assert_eq!(
            acks.iter().filter(|a| a.server == s).count() as u64,
            EVENTS_PER_SERVER,
            "server {s} acknowledged a different number of events"
        );
    }

    // Seqs across both servers: exactly 1..=600, each once. One chain, no fork.
    let by_seq: BTreeMap<i64, &Ack> = acks.iter().map(|a| (a.seq, a)).collect();
    assert_eq!(by_seq.len(), acks.len(), "a seq was handed out twice");
    let seqs: Vec<i64> = by_seq.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=TOTAL as i64).collect::<Vec<_>>(),
        "seqs are not exactly 1..={TOTAL}"
    );
    let ids: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), acks.len(), "an id was handed out twice");
    // The two writers really interleaved on the one chain.
    let turns = seqs
        .windows(2)
        .filter(|w| by_seq[&w[0]].server != by_seq[&w[1]].server)
        .count();
    assert!(turns > 0, "the two servers never took turns on the chain");

    let problems = read_back_everywhere(&bases, &acks).await;
    assert!(
        problems.is_empty(),
        "{} read-backs failed, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );

    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{backend:?}: verify failed: {verdict}");
    assert_eq!(verdict["entries"], TOTAL as i64, "{verdict}");
    assert_eq!(
        verdict["head_chain_hash"].as_str(),
        Some(by_seq[&(TOTAL as i64)].chain_hash.as_str()),
        "verify's head is not the receipt of seq {TOTAL}"
    );
    eprintln!(
        "{backend:?}/{start:?}: {TOTAL} events through {SERVERS} processes in {load_time:?} \
         ({turns} hand-overs between writers); whole scenario {:?}",
        started.elapsed()
    );
}

#[test]
fn postgres_two_processes_one_database_one_chain() {
    // Both start together on the fresh database: the start-up migrations race
    // (sqlx serialises them with its own advisory lock).
    run(Backend::Postgres, Start::Together);
}

#[test]
fn postgres_second_process_joins_a_migrated_database() {
    run(Backend::Postgres, Start::OneAfterTheOther);
}

#[test]
fn sqlite_two_processes_one_file_one_chain() {
    // Both start together on a fresh file: SqliteStore::migrate serialises
    // on a lock file, because sqlx's SQLite migrator takes no lock itself.
    run(Backend::Sqlite, Start::Together);
}
