//! "Nothing acknowledged is lost" (docs/operations.md), on both backends.
//!
//! The real `vellum serve` process is killed with SIGKILL — or stopped with
//! SIGTERM — while 32 clients are appending. Every event that got a 201 must
//! read back byte for byte after a restart on the same database, with the
//! same `X-Vellum-Seq` / `X-Vellum-Chain-Hash`; the stored chain must be
//! gapless and `vellum verify` must pass.

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::task::JoinSet;
use vellum::config::DatabaseUrl;
use vellum::store::{AnyStore, Store, StoredEntry};
use vellum_testkit::{
    run_verify, sample_event, spawn_server_process, Backend, ServerProcess, TestDb,
};

/// Concurrent appending clients.
const CLIENTS: usize = 32;
/// Upper bound on appends per scenario.
const MAX_EVENTS: u64 = 20_000;
/// Upper bound on how long the clients keep appending.
const LOAD_LIMIT: Duration = Duration::from_secs(3);
/// How long the load runs before the server is stopped.
const STOP_AFTER: Duration = Duration::from_secs(1);

fn run_scenario(backend: Backend, stop: Stop) {
    crate::serially(scenario(backend, stop));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

/// One acknowledged append: what the 201 said.
#[derive(Debug, Clone)]
struct Ack {
    id: String,
    body: String,
    seq: i64,
    chain_hash: String,
    /// The response arrived after the stop signal was sent.
    after_signal: bool,
}

#[derive(Debug, Default)]
struct ClientOutcome {
    acks: Vec<Ack>,
    /// Transport errors after the signal (expected: the server went away).
    errors_after_signal: u64,
    /// Of those, the ones where no connection could be made at all.
    refused_after_signal: u64,
    /// Anything else: non-201 answers, errors before the signal, malformed
    /// 201s. Must stay empty.
    unexpected: Vec<String>,
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

/// Appends until the deadline, the event budget, or the first transport
/// error (the server is gone).
async fn client_loop(
    client: reqwest::Client,
    base: String,
    next: Arc<AtomicU64>,
    signalled: Arc<AtomicBool>,
    deadline: Instant,
) -> ClientOutcome {
    let mut out = ClientOutcome::default();
    while Instant::now() < deadline {
        let n = next.fetch_add(1, Ordering::SeqCst);
        if n >= MAX_EVENTS {
            break;
        }
        let sent = client
            .post(format!("{base}/fhir/AuditEvent"))
            .header("Content-Type", "application/fhir+json")
            .body(sample_event(n).to_string())
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => {
                if signalled.load(Ordering::SeqCst) {
                    out.errors_after_signal += 1;
                    if e.is_connect() {
                        out.refused_after_signal += 1;
                    }
                } else {
                    out.unexpected
                        .push(format!("transport error before the signal: {e}"));
                }
                break;
            }
        };
        let status = r.status().as_u16();
        let seq = header(&r, "X-Vellum-Seq");
        let chain = header(&r, "X-Vellum-Chain-Hash");
        let body = r.text().await;
        let after_signal = signalled.load(Ordering::SeqCst);
        match (status, seq, chain, body) {
            (201, Some(seq), Some(chain_hash), Ok(body)) => {
                let v: serde_json::Value = match serde_json::from_str(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        out.unexpected.push(format!("201 body is not JSON: {e}"));
                        continue;
                    }
                };
                match (v["id"].as_str(), seq.parse::<i64>()) {
                    (Some(id), Ok(seq)) => out.acks.push(Ack {
                        id: id.to_string(),
                        body,
                        seq,
                        chain_hash,
                        after_signal,
                    }),
                    _ => out
                        .unexpected
                        .push(format!("201 without id or numeric seq: {seq} {body}")),
                }
            }
            (201, _, _, Err(e)) if after_signal => {
                // Headers arrived but the body did not: the process died
                // mid-response. Not a complete acknowledgement; the store
                // check below still requires the chain to be whole.
                out.errors_after_signal += 1;
                eprintln!("201 cut short by the stop: {e}");
                break;
            }
            (status, seq, chain, body) => {
                out.unexpected.push(format!(
                    "status {status}, seq {seq:?}, chain {chain:?}, body {:?}",
                    body.map(|b| b.chars().take(300).collect::<String>())
                ));
            }
        }
    }
    out
}

/// Waits for the child to exit (panics after `limit`).
pub(crate) async fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on vellum") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "vellum did not exit within {limit:?} of the signal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every stored entry, in seq order, read straight from the store.
async fn all_entries(url: &str) -> Vec<StoredEntry> {
    let url = DatabaseUrl::parse(url).expect("database url");
    let store = AnyStore::connect(&url, None).await.expect("open store");
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &StoredEntry| e.seq);
        let page = store
            .entries_after(after, 5000)
            .await
            .expect("read entries");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// GETs every acknowledged id and compares body and receipt headers.
async fn read_back(base: &str, acks: &[Ack]) -> Vec<String> {
    let client = http_client();
    let mut set = JoinSet::new();
    for chunk in acks.chunks(acks.len().div_ceil(16).max(1)) {
        let chunk = chunk.to_vec();
        let (client, base) = (client.clone(), base.to_string());
        set.spawn(async move {
            let mut problems = Vec::new();
            for a in chunk {
                let r = match client
                    .get(format!("{base}/fhir/AuditEvent/{}", a.id))
                    .send()
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(format!("GET {}: {e}", a.id));
                        continue;
                    }
                };
                let status = r.status().as_u16();
                let seq = header(&r, "X-Vellum-Seq");
                let chain = header(&r, "X-Vellum-Chain-Hash");
                let body = r.text().await.unwrap_or_default();
                if status != 200 {
                    problems.push(format!("GET {} (seq {}): status {status}", a.id, a.seq));
                    continue;
                }
                if body != a.body {
                    problems.push(format!("GET {} (seq {}): body differs", a.id, a.seq));
                }
                if seq.as_deref() != Some(a.seq.to_string().as_str()) {
                    problems.push(format!("GET {}: seq {seq:?}, acked {}", a.id, a.seq));
                }
                if chain.as_deref() != Some(a.chain_hash.as_str()) {
                    problems.push(format!(
                        "GET {} (seq {}): chain hash {chain:?}, acked {}",
                        a.id, a.seq, a.chain_hash
                    ));
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

async fn scenario(backend: Backend, stop: Stop) {
    let db = TestDb::new(backend).await;
    let mut server = spawn_server_process(&db.url, &[]);
    server.wait_ready().await;

    // --- load, then stop the server in the middle of it ---
    let client = http_client();
    let next = Arc::new(AtomicU64::new(0));
    let signalled = Arc::new(AtomicBool::new(false));
    let load_start = Instant::now();
    let deadline = load_start + LOAD_LIMIT;
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(client_loop(
            client.clone(),
            server.base.clone(),
            next.clone(),
            signalled.clone(),
            deadline,
        ));
    }
    tokio::time::sleep(STOP_AFTER).await;
    let before_signal = next.load(Ordering::SeqCst);
    signalled.store(true, Ordering::SeqCst);
    let pid = Pid::from_raw(server.child.id() as i32);
    let exit = match stop {
        Stop::Kill => {
            server.child.kill().expect("SIGKILL vellum");
            wait_exit(&mut server.child, Duration::from_secs(10)).await
        }
        Stop::Term => {
            kill(pid, Signal::SIGTERM).expect("SIGTERM vellum");
            wait_exit(&mut server.child, Duration::from_secs(40)).await
        }
    };
    let stopped_after = load_start.elapsed();

    let mut acks = Vec::new();
    let mut errors_after_signal = 0;
    let mut refused_after_signal = 0;
    let mut unexpected = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = clients.join_next().await {
            let o = r.expect("client task");
            acks.extend(o.acks);
            errors_after_signal += o.errors_after_signal;
            refused_after_signal += o.refused_after_signal;
            unexpected.extend(o.unexpected);
        }
    })
    .await;
    assert!(joined.is_ok(), "clients did not finish within 60 s");
    let acked_after_signal = acks.iter().filter(|a| a.after_signal).count();
    eprintln!(
        "{backend:?}/{stop:?}: {} acknowledged ({acked_after_signal} after the signal), \
         {errors_after_signal} cut off ({refused_after_signal} refused), {before_signal} requests started before the signal, \
         stopped {stopped_after:?} into the load, exit {exit}",
        acks.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers, first: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    assert!(
        acks.len() >= 50,
        "only {} events were acknowledged in {STOP_AFTER:?} of load",
        acks.len()
    );
    match stop {
        Stop::Kill => {
            assert_eq!(exit.signal(), Some(9), "vellum was not SIGKILLed: {exit}");
            // With 32 clients appending in a loop, the kill must have cut
            // requests off: otherwise this test did not kill "under load".
            assert!(
                errors_after_signal > 0,
                "no request was in flight when vellum was killed"
            );
        }
        Stop::Term => {
            assert_eq!(
                exit.code(),
                Some(0),
                "SIGTERM must drain and exit 0: {exit}"
            );
            // Requests in flight when SIGTERM arrived are finished, not dropped.
            assert!(
                acked_after_signal > 0,
                "no request in flight at SIGTERM was answered: nothing was drained"
            );
        }
    }

    // Receipts are unique: no seq or id acknowledged twice.
    let ids: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), acks.len(), "an id was acknowledged twice");
    let seqs: HashSet<i64> = acks.iter().map(|a| a.seq).collect();
    assert_eq!(seqs.len(), acks.len(), "a seq was acknowledged twice");

    // --- the store, as the killed process left it ---
    // A COMMIT that reached PostgreSQL before the kill still completes after
    // the client is gone: wait until the stored count stops moving.
    let mut entries = all_entries(&db.url).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = all_entries(&db.url).await;
        if again.len() == entries.len() {
            break;
        }
        entries = again;
    }
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "seqs are not gapless from 1");
    }
    assert!(
        entries.len() >= acks.len(),
        "{} entries stored but {} acknowledged",
        entries.len(),
        acks.len()
    );
    for a in &acks {
        let e = entries
            .get((a.seq - 1) as usize)
            .unwrap_or_else(|| panic!("acknowledged seq {} is not stored", a.seq));
        assert_eq!(e.id, a.id, "seq {}: stored id differs from the 201", a.seq);
        assert_eq!(e.body, a.body, "seq {}: stored body differs", a.seq);
        assert_eq!(
            hex::encode(&e.chain_hash),
            a.chain_hash,
            "seq {}: stored chain hash differs from the receipt",
            a.seq
        );
    }
    eprintln!(
        "{backend:?}/{stop:?}: {} entries stored, {} acknowledged",
        entries.len(),
        acks.len()
    );
    if stop == Stop::Term {
        // A drained stop answers every request it committed: nothing is
        // stored that its client never heard about.
        assert_eq!(
            entries.len(),
            acks.len(),
            "SIGTERM left committed events unanswered"
        );
    }
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "verify after the stop: {verdict}");
    assert_eq!(verdict["entries"], entries.len() as i64, "{verdict}");

    // --- restart on the same database: everything reads back ---
    let mut restarted: ServerProcess = spawn_server_process(&db.url, &[]);
    restarted.wait_ready().await;
    let read_started = Instant::now();
    let problems = read_back(&restarted.base, &acks).await;
    assert!(
        problems.is_empty(),
        "{} acknowledged events did not read back after restart, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    eprintln!(
        "{backend:?}/{stop:?}: {} acknowledged events read back in {:?}",
        acks.len(),
        read_started.elapsed()
    );

    // The restarted writer continues the same chain, right after the head.
    let r = http_client()
        .post(format!("{}/fhir/AuditEvent", restarted.base))
        .header("Content-Type", "application/fhir+json")
        .body(sample_event(MAX_EVENTS + 1).to_string())
        .send()
        .await
        .expect("append after restart");
    let status = r.status();
    let seq = header(&r, "X-Vellum-Seq");
    assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    let r_seq = seq;
    assert_eq!(
        r_seq.as_deref(),
        Some((entries.len() + 1).to_string().as_str()),
        "the restarted server did not continue at the old head"
    );
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "verify after restart: {verdict}");
    assert_eq!(verdict["entries"], entries.len() as i64 + 1, "{verdict}");
    assert_eq!(
        verdict["head_chain_hash"].as_str(),
        header(&r, "X-Vellum-Chain-Hash").as_deref(),
        "verify's head is not the last receipt"
    );
}

#[test]
fn sqlite_sigkill_under_load_loses_nothing_acknowledged() {
    run_scenario(Backend::Sqlite, Stop::Kill);
}

#[test]
fn postgres_sigkill_under_load_loses_nothing_acknowledged() {
    run_scenario(Backend::Postgres, Stop::Kill);
}

#[test]
fn sqlite_sigterm_under_load_drains_and_exits_zero() {
    run_scenario(Backend::Sqlite, Stop::Term);
}

#[test]
fn postgres_sigterm_under_load_drains_and_exits_zero() {
    run_scenario(Backend::Postgres, Stop::Term);
}
