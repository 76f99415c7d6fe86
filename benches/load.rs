//! End-to-end load test of `vellum serve` against its raw-INSERT baseline.
//!
//! ```text
//! cargo bench --bench load -- [--backend sqlite|postgres|both] [--connections 64[,8,256]]
//!     [--events 50000] [--duration-secs 120] [--client raw|reqwest] [--client-threads 1]
//!     [--baseline-batch 500] [--batch-max-events N] [--batch-max-wait-us N]
//!     [--wait-quiet-secs N] [--max-other-cpu F] [--attempts N] [--keep]
//!     [--writer-log] [--perf-out DIR] [--renice-writer NICE] [--print-sample]
//!     [--bundle N] [--bundle-type transaction|batch] [--chains 1[,4]]
//! ```
//!
//! For every backend × connection count it
//! 1. starts the real `vellum serve` binary on a free loopback port with a fresh database,
//! 2. posts realistic radiology-AI AuditEvents (generated up front, unique values per event)
//!    over N concurrent keep-alive connections, bounded by `--events` and `--duration-secs`,
//!    recording every latency,
//! 3. stops the server with SIGTERM (it must exit 0) and runs `vellum verify` on its database,
//! 4. reads back the stored rows and re-inserts exactly those bodies into fresh databases of
//!    the same backend with plain multi-row INSERTs (hashes precomputed, same durability
//!    settings), once with the server's mean commit batch size and once with
//!    `--baseline-batch` rows per transaction,
//! 5. prints a markdown table with throughput, latency percentiles, CPU split, bytes stored
//!    per canonical body byte and the server/baseline ratios.
//!
//! `--bundle N` posts the same events as FHIR Bundles of N entries (`POST /fhir`, one
//! transaction or batch each) instead of one create per event. `--chains K` simulates a site
//! split into K independent chains: K servers, each with its own database (its own writer,
//! chain and Merkle tree) on the same machine, the connections spread over them; its same-run
//! baseline is the `--chains 1` row (baseline INSERTs are only run for one chain).
//!
//! Without `--bench` (i.e. when `cargo test --all-targets` runs this target) it does nothing.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::*;

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    /// A minimal hand-written HTTP/1.1 client over tokio (lowest client CPU).
    Raw,
    /// reqwest (hyper) with a keep-alive pool.
    Reqwest,
}

#[derive(Debug, Clone)]
struct Args {
    backends: Vec<Backend>,
    connections: Vec<usize>,
    events: usize,
    duration: Duration,
    client: ClientKind,
    client_threads: usize,
    baseline_batch: usize,
    batch_max_events: Option<usize>,
    batch_max_wait_us: Option<u64>,
    perf_out: Option<PathBuf>,
    keep: bool,
    /// Run the server with the writer's per-batch debug log and report commit times.
    writer_log: bool,
    /// Experiment: give the server's tokio and sqlx-sqlite threads (the writer's critical
    /// path) this nice value, leaving the HTTP workers at 0.
    renice_writer: Option<i32>,
    /// Before each measurement, wait up to this long for other processes to go quiet.
    wait_quiet: Duration,
    /// A run (or baseline) during which other processes used more CPU than this is repeated…
    max_other_cpu: f64,
    /// …up to this many attempts in all.
    attempts: usize,
    /// Print the first generated event (pretty JSON) and exit.
    print_sample: bool,
    /// Events per request: 1 = one create each, N > 1 = Bundles of N entries.
    bundle: usize,
    bundle_type: &'static str,
    /// Independent chains (servers with their own database) to spread the load over.
    chains: Vec<usize>,
}

const USAGE: &str = "usage: cargo bench --bench load -- [--backend sqlite|postgres|both] \
[--connections 64[,8,256]] [--events 50000] [--duration-secs 120] [--client raw|reqwest] \
[--client-threads 1] [--baseline-batch 500] [--batch-max-events N] [--batch-max-wait-us N] \
[--perf-out DIR] [--keep] [--writer-log] [--renice-writer N] [--wait-quiet-secs N] [--max-other-cpu 0.2] [--attempts 3] \
[--print-sample] [--bundle N] [--bundle-type transaction|batch] [--chains 1[,4]]";

fn parse_args(raw: &[String]) -> Result<Args, String> {
    let mut a = Args {
        backends: vec![Backend::Sqlite],
        connections: vec![64],
        events: 50_000,
        duration: Duration::from_secs(120),
        client: ClientKind::Raw,
        client_threads: 1,
        baseline_batch: 500,
        batch_max_events: None,
        batch_max_wait_us: None,
        perf_out: None,
        keep: false,
        writer_log: false,
        renice_writer: None,
        wait_quiet: Duration::ZERO,
        max_other_cpu: f64::INFINITY,
        attempts: 3,
        print_sample: false,
        bundle: 1,
        bundle_type: "transaction",
        chains: vec![1],
    };
    let mut it = raw.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |name: &str, v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name}: `{v}` is not a positive integer"))
        };
        match flag.as_str() {
            // cargo passes --bench to harness=false bench targets; filters are not used.
            "--bench" => {}
            "--backend" => {
                a.backends = match value("--backend")?.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" | "postgresql" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => return Err(format!("--backend: unknown backend `{other}`")),
                }
            }
            "--connections" => {
                a.connections = value("--connections")?
                    .split(',')
                    .map(|c| num("--connections", c.trim().to_string()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "--events" => a.events = num("--events", value("--events")?)? as usize,
            "--duration-secs" => {
                a.duration = Duration::from_secs(num("--duration-secs", value("--duration-secs")?)?)
            }
            "--client" => {
                a.client = match value("--client")?.as_str() {
                    "raw" => ClientKind::Raw,
                    "reqwest" => ClientKind::Reqwest,
                    other => return Err(format!("--client: unknown client `{other}`")),
                }
            }
            "--client-threads" => {
                a.client_threads = num("--client-threads", value("--client-threads")?)? as usize
            }
            "--baseline-batch" => {
                a.baseline_batch = num("--baseline-batch", value("--baseline-batch")?)? as usize
            }
            "--batch-max-events" => {
                a.batch_max_events =
                    Some(num("--batch-max-events", value("--batch-max-events")?)? as usize)
            }
            "--batch-max-wait-us" => {
                let v = value("--batch-max-wait-us")?;
                a.batch_max_wait_us = Some(
                    v.parse()
                        .map_err(|_| format!("--batch-max-wait-us: `{v}` is not an integer"))?,
                )
            }
            "--perf-out" => a.perf_out = Some(PathBuf::from(value("--perf-out")?)),
            "--keep" => a.keep = true,
            "--writer-log" => a.writer_log = true,
            "--renice-writer" => {
                let v = value("--renice-writer")?;
                a.renice_writer = Some(
                    v.parse()
                        .map_err(|_| format!("--renice-writer: `{v}` is not an integer"))?,
                )
            }
            "--max-other-cpu" => {
                let v = value("--max-other-cpu")?;
                a.max_other_cpu = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| *x >= 0.0)
                    .ok_or_else(|| format!("--max-other-cpu: `{v}` is not a number ≥ 0"))?
            }
            "--attempts" => a.attempts = num("--attempts", value("--attempts")?)? as usize,
            "--wait-quiet-secs" => {
                let v = value("--wait-quiet-secs")?;
                a.wait_quiet = Duration::from_secs(
                    v.parse()
                        .map_err(|_| format!("--wait-quiet-secs: `{v}` is not an integer"))?,
                )
            }
            "--print-sample" => a.print_sample = true,
            "--bundle" => a.bundle = num("--bundle", value("--bundle")?)? as usize,
            "--bundle-type" => {
                a.bundle_type = match value("--bundle-type")?.as_str() {
                    "transaction" => "transaction",
                    "batch" => "batch",
                    other => return Err(format!("--bundle-type: unknown type `{other}`")),
                }
            }
            "--chains" => {
                a.chains = value("--chains")?
                    .split(',')
                    .map(|c| num("--chains", c.trim().to_string()).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if !raw.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs bench targets without --bench.
        println!("load: skipped (run it with `cargo bench --bench load`)");
        return;
    }
    let args = match parse_args(&raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.print_sample {
        let events = generate_events(10_000, EVENT_SEED);
        let sizes: Vec<usize> = events.iter().map(Vec::len).collect();
        eprintln!(
            "first 10000 events: {}..{} bytes, mean {:.0}",
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0),
            sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
        );
        let v: serde_json::Value = serde_json::from_slice(&events[0]).expect("generated JSON");
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
        return;
    }
    let rt = if args.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let ok = rt.block_on(run_all(args));
    if !ok {
        std::process::exit(1);
    }
}

async fn run_all(args: Args) -> bool {
    let t = Instant::now();
    let bodies = Arc::new(generate_events(args.events, EVENT_SEED));
    let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
    eprintln!(
        "generated {} AuditEvents in {:.1} s: {}..{} bytes, mean {:.0}",
        bodies.len(),
        t.elapsed().as_secs_f64(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64
    );
    let bodies = if args.bundle > 1 {
        Arc::new(bundle_bodies(&bodies, args.bundle, args.bundle_type))
    } else {
        bodies
    };
    print_machine();
    let mut results = Vec::new();
    let mut all_ok = true;
    for &backend in &args.backends {
        for (&connections, &chains) in args
            .connections
            .iter()
            .flat_map(|c| args.chains.iter().map(move |k| (c, k)))
        {
            eprintln!(
                "\n=== {} with {connections} connections, {chains} chain(s) ===",
                backend.name()
            );
            let mut attempt = 1;
            let outcome = loop {
                let r = run_one(
                    &args,
                    backend,
                    connections,
                    chains,
                    bodies.clone(),
                    attempt < args.attempts,
                )
                .await;
                match &r {
                    Ok(res) if res.other_cpu() > args.max_other_cpu && attempt < args.attempts => {
                        eprintln!(
                            "discarding this run: other processes used {:.2} CPUs (limit {}); \
                             attempt {} of {}",
                            res.other_cpu(),
                            args.max_other_cpu,
                            attempt + 1,
                            args.attempts
                        );
                        attempt += 1;
                    }
                    _ => break r,
                }
            };
            match outcome {
                Ok(r) => {
                    all_ok &= r.passed();
                    print_table(std::slice::from_ref(&r));
                    results.push(r);
                }
                Err(e) => {
                    eprintln!("run failed: {e}");
                    all_ok = false;
                }
            }
        }
    }
    println!("\n## Summary\n");
    print_machine();
    println!(
        "client: {:?}, {} thread(s); events per run ≤ {}{}, duration ≤ {} s; server defaults \
         unless stated (batch_max_events {}, batch_max_wait_us {})\n",
        args.client,
        args.client_threads,
        args.events,
        if args.bundle > 1 {
            format!(" in {} Bundles of {}", args.bundle_type, args.bundle)
        } else {
            String::new()
        },
        args.duration.as_secs(),
        args.batch_max_events
            .map_or("default".to_string(), |v| v.to_string()),
        args.batch_max_wait_us
            .map_or("default".to_string(), |v| v.to_string()),
    );
    print_table(&results);
    all_ok
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cores} CPUs, {cpu}");
}

// ---------------------------------------------------------------------------------------------
// One run: server, load, verify, baseline
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct RunResult {
    backend: Backend,
    connections: usize,
    chains: usize,
    /// Bytes the database holds (tables and their indexes) per canonical body byte.
    storage_ratio: Option<f64>,
    /// Mean bytes stored per event, indexes included.
    bytes_per_event: Option<f64>,
    ok: usize,
    errors: BTreeMap<String, usize>,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    batches: usize,
    mean_batch: f64,
    p50_batch: usize,
    max_batch: usize,
    cpu: Cpu,
    verify_ok: bool,
    verified_entries: i64,
    server_exit: Option<ExitStatus>,
    baselines: Vec<Baseline>,
}

impl RunResult {
    /// Cores used by unrelated processes during the load.
    fn other_cpu(&self) -> f64 {
        self.cpu.other_s() / self.elapsed.as_secs_f64()
    }
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn errors_total(&self) -> usize {
        self.errors.values().sum()
    }
    fn passed(&self) -> bool {
        self.verify_ok
            && self.server_exit.is_some_and(|s| s.success())
            && self.verified_entries >= self.ok as i64
            && self.baselines.iter().all(|b| b.head_matches)
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p) as f64 / 1000.0
    }
}

/// Nearest-rank percentile of a sorted slice.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run_one(
    args: &Args,
    backend: Backend,
    connections: usize,
    chains: usize,
    bodies: Arc<Vec<Vec<u8>>>,
    may_retry: bool,
) -> Result<RunResult, String> {
    let work = tempfile::Builder::new()
        .prefix("vellum-load-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    // One database and one server per chain; chain 0 is the one the baselines replay.
    let mut dbs = Vec::with_capacity(chains);
    let mut servers: Vec<(Child, PathBuf)> = Vec::with_capacity(chains);
    let mut ports = Vec::with_capacity(chains);
    for c in 0..chains {
        let label = if c == 0 {
            "server".to_string()
        } else {
            format!("server{c}")
        };
        let db = Database::create(backend, work.path(), &label).await?;
        let port = free_port()?;
        let stderr_path = work.path().join(format!("{label}.stderr"));
        let mut server = start_server(args, &db.url, port, &stderr_path)?;
        if let Err(e) = wait_ready(port, &mut server, Duration::from_secs(60)).await {
            let _ = kill(Pid::from_raw(server.id() as i32), Signal::SIGKILL);
            let _ = server.wait();
            for (mut s, _) in servers {
                let _ = kill(Pid::from_raw(s.id() as i32), Signal::SIGKILL);
                let _ = s.wait();
            }
            return Err(format!("{e}; server stderr:\n{}", read_tail(&stderr_path)));
        }
        dbs.push(db);
        servers.push((server, stderr_path));
        ports.push(port);
    }
    let pids: Vec<u32> = servers.iter().map(|(s, _)| s.id()).collect();
    let pid = pids[0];
    let stderr_path = servers[0].1.clone();

    let perf = match &args.perf_out {
        Some(dir) => start_perf(dir, backend, connections, pid),
        None => None,
    };
    wait_for_quiet(args.wait_quiet, &pids).await;
    if let Some(n) = args.renice_writer {
        renice_writer_threads(pid, n);
    }
    let threads_before = thread_times(pid);
    let before: Vec<CpuSnapshot> = pids
        .iter()
        .map(|p| CpuSnapshot::take(*p, backend))
        .collect();
    let shape = RequestShape::new(args);
    let load = match args.client {
        ClientKind::Raw => run_load_raw(&ports, connections, &bodies, args.duration, shape).await,
        ClientKind::Reqwest => {
            run_load_reqwest(ports[0], connections, &bodies, args.duration).await
        }
    };
    let after: Vec<CpuSnapshot> = pids
        .iter()
        .map(|p| CpuSnapshot::take(*p, backend))
        .collect();
    let threads = thread_delta(&threads_before, &thread_times(pid));
    if let Some(p) = perf {
        stop_perf(p);
    }
    let cpu = sum_cpu(&before, &after);

    // SIGTERM: every server must drain and exit 0.
    let mut server_exit = None;
    for (i, (mut server, path)) in servers.into_iter().enumerate() {
        let id = server.id();
        let _ = kill(Pid::from_raw(id as i32), Signal::SIGTERM);
        let exit = wait_exit(&mut server, Duration::from_secs(30));
        if exit.is_none() {
            let _ = kill(Pid::from_raw(id as i32), Signal::SIGKILL);
            let _ = server.wait();
        }
        // The run's exit is the worst one: a hang, else a failure, else exit 0.
        server_exit = match (i, server_exit, exit) {
            (0, _, e) => e,
            (_, Some(prev), Some(e)) if prev.success() => Some(e),
            (_, prev, Some(_)) => prev,
            (_, _, None) => None,
        };
        let log = read_tail(&path);
        if !log.trim().is_empty() {
            eprintln!("server stderr (tail):\n{log}");
        }
    }
    if args.writer_log {
        match writer_stats(&writer_log_path(&stderr_path)) {
            Some((batches, mean, busy)) => eprintln!(
                "writer (from its debug log): {batches} batches, mean {mean:.1} events, mean \
                 append_batch {:.2} ms, busy {:.0} % of the run",
                busy.as_secs_f64() * 1000.0 / batches as f64,
                100.0 * busy.as_secs_f64() / load.elapsed.as_secs_f64()
            ),
            None => eprintln!("writer log: no \"batch committed\" lines found"),
        }
    }

    let mut verify_ok = true;
    let mut verified_entries = 0;
    let mut server_head = String::new();
    let mut stored_bytes = Some(0u64);
    let mut body_bytes = 0u64;
    let mut rows = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        let (ok, entries, head) = run_verify(&db.url);
        verify_ok &= ok;
        verified_entries += entries;
        if i == 0 {
            server_head = head;
        }
        stored_bytes = match (stored_bytes, db.stored_bytes().await) {
            (Some(total), Ok(b)) => Some(total + b),
            (_, Err(e)) => {
                eprintln!("storage size: {e}");
                None
            }
            (None, _) => None,
        };
        let chain_rows = db.read_entries().await?;
        body_bytes += chain_rows.iter().map(|r| r.body.len() as u64).sum::<u64>();
        if i == 0 {
            rows = chain_rows;
        }
    }
    let server_db = dbs.remove(0);
    for db in dbs {
        db.drop_db().await;
    }
    let stats = batch_stats(&rows);

    let mut result = RunResult {
        backend,
        connections,
        chains,
        storage_ratio: stored_bytes.map(|b| b as f64 / body_bytes.max(1) as f64),
        bytes_per_event: stored_bytes.map(|b| b as f64 / verified_entries.max(1) as f64),
        ok: load.ok,
        errors: load.errors,
        elapsed: load.elapsed,
        latencies_us: load.latencies_us,
        batches: stats.batches,
        mean_batch: stats.mean,
        p50_batch: stats.p50,
        max_batch: stats.max,
        cpu,
        verify_ok,
        verified_entries,
        server_exit,
        baselines: Vec::new(),
    };
    report_run(&result);

    report_threads(&threads, load.elapsed, stats.batches);
    if may_retry && result.other_cpu() > args.max_other_cpu {
        // The caller repeats the run; no point in measuring its baselines.
        server_db.drop_db().await;
        return Ok(result);
    }
    if chains > 1 {
        // Compared with the same run's one-chain row; the INSERT baselines are for one chain.
        server_db.drop_db().await;
        return Ok(result);
    }

    // Baselines: the same stored rows, plain batched INSERTs, fresh databases.
    let mut batch_sizes = vec![(stats.mean.round() as usize).max(1)];
    if !batch_sizes.contains(&args.baseline_batch) {
        batch_sizes.push(args.baseline_batch);
    }
    for (i, &batch) in batch_sizes.iter().enumerate() {
        for attempt in 1..=args.attempts {
            let db =
                Database::create(backend, work.path(), &format!("baseline{i}_{attempt}")).await?;
            migrate(&db.url)?;
            wait_for_quiet(args.wait_quiet, &[]).await;
            let (busy0, _) = machine_ticks();
            let self0 = proc_ticks("self").map_or(0, |t| t.0);
            let pg0 = postgres_ticks();
            let b = db.baseline_insert(&rows, batch).await?;
            let wall = b.elapsed.as_secs_f64();
            let (busy1, _) = machine_ticks();
            let own = (proc_ticks("self").map_or(0, |t| t.0) - self0) as f64 / CLOCK_TICKS;
            let pg = if backend == Backend::Postgres {
                postgres_ticks().saturating_sub(pg0) as f64 / CLOCK_TICKS
            } else {
                0.0
            };
            let busy = busy1.saturating_sub(busy0) as f64 / CLOCK_TICKS;
            let other = (busy - own - pg).max(0.0) / wall;
            eprintln!(
            "baseline batch {batch} CPU (cores busy): inserter {:.2}, postgres {:.2}, other {other:.2}",
            own / wall,
            pg / wall,
        );
            if other > args.max_other_cpu && attempt < args.attempts {
                eprintln!(
                    "discarding this baseline: other processes used {other:.2} CPUs (limit {})",
                    args.max_other_cpu
                );
                if !args.keep {
                    db.drop_db().await;
                }
                continue;
            }
            let head = db.head_chain_hash().await.unwrap_or_default();
            let b = Baseline {
                head_matches: head == server_head,
                ..b
            };
            eprintln!(
                "baseline batch {batch}: {} rows in {:.2} s = {:.0} rows/s, mean commit {:.2} ms, \
             head chain hash {}",
                b.rows,
                b.elapsed.as_secs_f64(),
                b.rate(),
                b.mean_commit_ms,
                if b.head_matches {
                    "matches the server's"
                } else {
                    "DIFFERS"
                }
            );
            result.baselines.push(b);
            if !args.keep {
                db.drop_db().await;
            }
            break;
        }
    }
    if args.keep {
        let kept = work.keep();
        eprintln!("kept {} and database {}", kept.display(), server_db.url);
    } else {
        server_db.drop_db().await;
    }
    Ok(result)
}

fn report_run(r: &RunResult) {
    eprintln!(
        "server: {} created, {} errors {:?} in {:.2} s = {:.0} events/s; \
         latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.ok,
        r.errors_total(),
        r.errors,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.percentile_ms(50.0),
        r.percentile_ms(95.0),
        r.percentile_ms(99.0),
        r.percentile_ms(100.0)
    );
    let wall = r.elapsed.as_secs_f64();
    eprintln!(
        "commits: {} batches, mean {:.1} events, median {}, max {}; CPU (cores busy over the \
         run): server {:.2}, load generator {:.2}, postgres {:.2}, other processes \
         {:.2}, whole machine {:.2} (iowait {:.2})",
        r.batches,
        r.mean_batch,
        r.p50_batch,
        r.max_batch,
        r.cpu.server_s / wall,
        r.cpu.client_s / wall,
        r.cpu.postgres_s / wall,
        r.cpu.other_s() / wall,
        r.cpu.machine_busy_s / wall,
        r.cpu.machine_iowait_s / wall,
    );
    eprintln!(
        "server CPU per event: {:.1} µs; SIGTERM exit: {:?}; verify: {} ({} entries, {} chain(s))",
        r.cpu.server_s * 1e6 / r.ok.max(1) as f64,
        r.server_exit,
        if r.verify_ok { "ok" } else { "FAILED" },
        r.verified_entries,
        r.chains
    );
    if let (Some(ratio), Some(per_event)) = (r.storage_ratio, r.bytes_per_event) {
        eprintln!(
            "storage: {per_event:.0} bytes per event, indexes included = {ratio:.2} × the \
             canonical body bytes"
        );
    }
}

fn print_table(results: &[RunResult]) {
    println!(
        "| backend | conns | chains | created | errors | events/s | p50 ms | p95 ms | p99 ms | max ms \
         | mean batch | server CPU | client CPU | PG CPU | other CPU | baseline (batch) rows/s | server/baseline \
         | baseline (batch) rows/s | server/baseline | bytes/event | × body | verify | SIGTERM |"
    );
    println!(
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"
    );
    for r in results {
        let wall = r.elapsed.as_secs_f64();
        let base = |i: usize| {
            r.baselines
                .get(i)
                .map_or(("–".to_string(), "–".to_string()), |b| {
                    (
                        format!("{:.0} ({})", b.rate(), b.batch),
                        format!("{:.2}", r.rate() / b.rate()),
                    )
                })
        };
        let (b0, r0) = base(0);
        let (b1, r1) = base(1);
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} \
             | {} | {:.2} | {b0} | {r0} | {b1} | {r1} | {} | {} | {} | {} |",
            r.backend.name(),
            r.connections,
            r.chains,
            r.ok,
            r.errors_total(),
            r.rate(),
            r.percentile_ms(50.0),
            r.percentile_ms(95.0),
            r.percentile_ms(99.0),
            r.percentile_ms(100.0),
            r.mean_batch,
            r.cpu.server_s / wall,
            r.cpu.client_s / wall,
            if r.backend == Backend::Postgres {
                format!("{:.2}", r.cpu.postgres_s / wall)
            } else {
                "–".into()
            },
            r.cpu.other_s() / wall,
            r.bytes_per_event.map_or("–".into(), |b| format!("{b:.0}")),
            r.storage_ratio.map_or("–".into(), |x| format!("{x:.2}")),
            if r.verify_ok && r.baselines.iter().all(|b| b.head_matches) {
                "ok"
            } else {
                "FAILED"
            },
            match r.server_exit {
                Some(s) if s.success() => "exit 0".to_string(),
                Some(s) => format!("{s}"),
                None => "hung".to_string(),
            }
        );
    }
    std::io::stdout().flush().ok();
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn start_server(args: &Args, db_url: &str, port: u16, stderr: &Path) -> Result<Child, String> {
    let log = std::fs::File::create(stderr).map_err(|e| format!("server log: {e}"))?;
    let mut cmd = Command::new(vellum_bin());
    cmd.arg("serve")
        .env_remove("VELLUM_CONFIG")
        .env("VELLUM_DATABASE_URL", db_url)
        .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("VELLUM_MLLP_ADDR", "")
        .env("VELLUM_DEV_TOKEN", vellum_testkit::DEV_TOKEN)
        .env_remove("RUST_LOG")
        .current_dir(stderr.parent().unwrap_or(Path::new(".")))
        .stdin(Stdio::null())
        .stderr(log);
    if args.writer_log {
        // One debug line per committed batch (count and duration), nothing else.
        let out = std::fs::File::create(writer_log_path(stderr))
            .map_err(|e| format!("server log: {e}"))?;
        cmd.env("VELLUM_LOG", "warn,vellum::ledger::writer=debug")
            .stdout(out);
    } else {
        cmd.env("VELLUM_LOG", "warn").stdout(Stdio::null());
    }
    if let Some(n) = args.batch_max_events {
        cmd.env("VELLUM_BATCH_MAX_EVENTS", n.to_string());
    }
    if let Some(n) = args.batch_max_wait_us {
        cmd.env("VELLUM_BATCH_MAX_WAIT_US", n.to_string());
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", vellum_bin()))
}

fn writer_log_path(stderr: &Path) -> PathBuf {
    stderr.with_file_name("server.stdout")
}

async fn wait_ready(port: u16, server: &mut Child, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("vellum serve exited before it was ready: {status}"));
        }
        if let Ok(mut c) = RawConn::connect(port).await {
            let req = format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            if let Ok((200, _)) = c.roundtrip(req.as_bytes()).await {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("/readyz did not answer 200 within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

fn read_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

struct Perf {
    child: Child,
}

/// Samples the server with `perf record` while the load runs (needs perf in PATH).
fn start_perf(dir: &Path, backend: Backend, connections: usize, pid: u32) -> Option<Perf> {
    std::fs::create_dir_all(dir).ok()?;
    let out = dir.join(format!("perf-{}-{connections}.data", backend.name()));
    let child = Command::new("perf")
        .args(["record", "-F", "999", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("perf not started: {e}"))
        .ok()?;
    eprintln!("perf recording to {}", out.display());
    std::thread::sleep(Duration::from_millis(300));
    Some(Perf { child })
}

fn stop_perf(mut p: Perf) {
    let _ = kill(Pid::from_raw(p.child.id() as i32), Signal::SIGINT);
    let _ = wait_exit(&mut p.child, Duration::from_secs(30));
}

/// Per-thread scheduler statistics of the server (/proc/PID/task/*/schedstat): nanoseconds on
/// a CPU and nanoseconds runnable but waiting for one, keyed by thread id, with the thread name.
fn thread_times(pid: u32) -> BTreeMap<String, (String, u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let sched = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        let mut f = sched
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or(0));
        let (run, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
        out.insert(
            t.file_name().to_string_lossy().into_owned(),
            (name.trim().to_string(), run, wait),
        );
    }
    out
}

fn renice_writer_threads(pid: u32, nice: i32) {
    let tids: Vec<String> = thread_times(pid)
        .into_iter()
        .filter(|(_, (name, _, _))| name.starts_with("tokio-rt") || name.starts_with("sqlx-sqlite"))
        .map(|(tid, _)| tid)
        .collect();
    let status = Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(&tids)
        .stdout(Stdio::null())
        .status();
    eprintln!(
        "reniced {} writer-path threads to {nice}: {status:?}",
        tids.len()
    );
}

/// Run and wait time per thread name (threads of one pool summed), over the load.
fn thread_delta(
    before: &BTreeMap<String, (String, u64, u64)>,
    after: &BTreeMap<String, (String, u64, u64)>,
) -> BTreeMap<String, (usize, u64, u64)> {
    let mut out: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    for (tid, (name, run, wait)) in after {
        let (r0, w0) = before.get(tid).map_or((0, 0), |b| (b.1, b.2));
        let e = out.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += run.saturating_sub(r0);
        e.2 += wait.saturating_sub(w0);
    }
    out
}

fn report_threads(threads: &BTreeMap<String, (usize, u64, u64)>, wall: Duration, batches: usize) {
    let wall_ns = wall.as_nanos().max(1) as f64;
    let mut parts: Vec<String> = threads
        .iter()
        .filter(|(_, (_, run, _))| *run as f64 / wall_ns >= 0.005)
        .map(|(name, (n, run, wait))| {
            format!(
                "{name} ×{n}: on CPU {:.2} cores, waiting for a CPU {:.2} thread-s/s \
                 ({:.0} µs per commit)",
                *run as f64 / wall_ns,
                *wait as f64 / wall_ns,
                *wait as f64 / 1000.0 / batches.max(1) as f64
            )
        })
        .collect();
    parts.sort();
    eprintln!("server threads: {}", parts.join("; "));
}

// ---------------------------------------------------------------------------------------------
// Load generation
// ---------------------------------------------------------------------------------------------

struct LoadResult {
    ok: usize,
    errors: BTreeMap<String, usize>,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

#[derive(Default)]
struct WorkerResult {
    ok: usize,
    errors: BTreeMap<String, usize>,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

impl WorkerResult {
    fn error(&mut self, kind: String, detail: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(detail());
        }
        *self.errors.entry(kind).or_default() += 1;
    }
}

fn merge(results: Vec<WorkerResult>, elapsed: Duration) -> LoadResult {
    let mut out = LoadResult {
        ok: 0,
        errors: BTreeMap::new(),
        elapsed,
        latencies_us: Vec::new(),
    };
    let mut shown = 0;
    for r in results {
        out.ok += r.ok;
        for (k, v) in r.errors {
            *out.errors.entry(k).or_default() += v;
        }
        out.latencies_us.extend(r.latencies_us);
        if let Some(e) = r.first_error {
            if shown < 3 {
                eprintln!("error sample: {e}");
                shown += 1;
            }
        }
    }
    out.latencies_us.sort_unstable();
    out
}

/// Shared by all workers: the next event to send and the end of the run.
struct Plan {
    next: AtomicUsize,
    bodies: Arc<Vec<Vec<u8>>>,
    deadline: std::sync::OnceLock<Instant>,
}

impl Plan {
    fn take(&self) -> Option<&[u8]> {
        if self.deadline.get().is_some_and(|d| Instant::now() >= *d) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.bodies.get(i).map(Vec::as_slice)
    }
}

/// What one request is: a single create, or a Bundle of several entries.
#[derive(Clone, Copy)]
struct RequestShape {
    path: &'static str,
    /// The status of a fully successful request.
    ok_status: u16,
    /// Events one request carries.
    events: usize,
    /// A batch Bundle answers 200 whatever its entries did: count the created ones.
    count_created: bool,
}

impl RequestShape {
    fn new(args: &Args) -> Self {
        if args.bundle > 1 {
            RequestShape {
                path: "/fhir",
                ok_status: 200,
                events: args.bundle,
                count_created: args.bundle_type == "batch",
            }
        } else {
            RequestShape {
                path: "/fhir/AuditEvent",
                ok_status: 201,
                events: 1,
                count_created: false,
            }
        }
    }

    /// Events a successful response says were stored.
    fn stored(&self, body: &[u8]) -> usize {
        if !self.count_created {
            return self.events;
        }
        let needle = b"\"status\":\"201";
        body.windows(needle.len()).filter(|w| *w == needle).count()
    }
}

/// The events as FHIR Bundles of `n` entries (`kind` = transaction or batch), each entry a
/// POST of one event.
fn bundle_bodies(events: &[Vec<u8>], n: usize, kind: &str) -> Vec<Vec<u8>> {
    events
        .chunks(n)
        .map(|chunk| {
            let mut b = Vec::with_capacity(chunk.iter().map(|e| e.len() + 64).sum::<usize>() + 64);
            b.extend_from_slice(b"{\"resourceType\":\"Bundle\",\"type\":\"");
            b.extend_from_slice(kind.as_bytes());
            b.extend_from_slice(b"\",\"entry\":[");
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(b"{\"resource\":");
                b.extend_from_slice(e);
                b.extend_from_slice(b",\"request\":{\"method\":\"POST\",\"url\":\"AuditEvent\"}}");
            }
            b.extend_from_slice(b"]}");
            b
        })
        .collect()
}

/// The CPU of several servers over the same interval, as one.
fn sum_cpu(before: &[CpuSnapshot], after: &[CpuSnapshot]) -> Cpu {
    let mut total = after[0].minus(&before[0]);
    for (b, a) in before.iter().zip(after).skip(1) {
        // Machine, client and PostgreSQL figures are whole-machine already.
        total.server_s += a.minus(b).server_s;
    }
    total
}

async fn run_load_raw(
    ports: &[u16],
    connections: usize,
    bodies: &Arc<Vec<Vec<u8>>>,
    limit: Duration,
    shape: RequestShape,
) -> LoadResult {
    let plan = Arc::new(Plan {
        next: AtomicUsize::new(0),
        bodies: bodies.clone(),
        deadline: std::sync::OnceLock::new(),
    });
    // Connect everyone first so connection set-up is not part of the measurement.
    let barrier = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let mut tasks = Vec::with_capacity(connections);
    for worker in 0..connections {
        let plan = plan.clone();
        let barrier = barrier.clone();
        let port = ports[worker % ports.len()];
        tasks.push(tokio::spawn(async move {
            let mut r = WorkerResult::default();
            let mut conn = RawConn::connect(port).await.ok();
            barrier.wait().await;
            let header_prefix = format!(
                "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {}\r\n\
                 Content-Type: application/fhir+json\r\nAccept: application/fhir+json\r\n\
                 Content-Length: ",
                shape.path,
                vellum_testkit::dev_auth()
            );
            let mut req = Vec::with_capacity(4096);
            while let Some(body) = plan.take() {
                req.clear();
                req.extend_from_slice(header_prefix.as_bytes());
                req.extend_from_slice(body.len().to_string().as_bytes());
                req.extend_from_slice(b"\r\n\r\n");
                req.extend_from_slice(body);
                let started = Instant::now();
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match RawConn::connect(port).await {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            r.error("connect".into(), || format!("connect: {e}"));
                            continue;
                        }
                    },
                };
                match c.roundtrip(&req).await {
                    Ok((status, close)) if status == shape.ok_status => {
                        r.ok += shape.stored(&c.last_body);
                        r.latencies_us.push(elapsed_us(started));
                        if close {
                            conn = None;
                        }
                    }
                    Ok((status, close)) => {
                        let body = String::from_utf8_lossy(&c.last_body).into_owned();
                        r.error(format!("http {status}"), || {
                            format!("HTTP {status}: {}", truncate(&body, 400))
                        });
                        if close {
                            conn = None;
                        }
                    }
                    Err(e) => {
                        r.error("io".into(), || format!("I/O: {e}"));
                        conn = None;
                    }
                }
            }
            r
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let _ = plan.deadline.set(start + limit);
    let mut results = Vec::with_capacity(connections);
    for t in tasks {
        results.push(t.await.unwrap_or_default());
    }
    merge(results, start.elapsed())
}

async fn run_load_reqwest(
    port: u16,
    connections: usize,
    bodies: &Arc<Vec<Vec<u8>>>,
    limit: Duration,
) -> LoadResult {
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        vellum_testkit::dev_auth().parse().expect("header value"),
    );
    let client = reqwest::Client::builder()
        .default_headers(auth)
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .expect("reqwest client");
    let url = format!("http://127.0.0.1:{port}/fhir/AuditEvent");
    let plan = Arc::new(Plan {
        next: AtomicUsize::new(0),
        bodies: bodies.clone(),
        deadline: std::sync::OnceLock::new(),
    });
    let barrier = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (plan, barrier, client, url) =
            (plan.clone(), barrier.clone(), client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = WorkerResult::default();
            barrier.wait().await;
            while let Some(body) = plan.take() {
                let started = Instant::now();
                let resp = client
                    .post(&url)
                    .header("Content-Type", "application/fhir+json")
                    .body(body.to_vec())
                    .send()
                    .await;
                match resp {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = resp.bytes().await;
                        match (status, text) {
                            (201, Ok(_)) => {
                                r.ok += 1;
                                r.latencies_us.push(elapsed_us(started));
                            }
                            (s, t) => {
                                let t = t.map(|b| String::from_utf8_lossy(&b).into_owned());
                                r.error(format!("http {s}"), || {
                                    format!("HTTP {s}: {}", truncate(&t.unwrap_or_default(), 400))
                                })
                            }
                        }
                    }
                    Err(e) => r.error("io".into(), || format!("reqwest: {e}")),
                }
            }
            r
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let _ = plan.deadline.set(start + limit);
    let mut results = Vec::with_capacity(connections);
    for t in tasks {
        results.push(t.await.unwrap_or_default());
    }
    merge(results, start.elapsed())
}

fn elapsed_us(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A keep-alive HTTP/1.1 connection with one request in flight at a time.
struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    last_body: Vec<u8>,
}

impl RawConn {
    async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            last_body: Vec::new(),
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(8192);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(())
    }

    /// Sends `request` and reads one whole response: (status, connection closes).
    async fn roundtrip(&mut self, request: &[u8]) -> std::io::Result<(u16, bool)> {
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| bad("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("malformed status line"))?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().map_err(|_| bad("bad Content-Length"))?;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        self.buf.drain(..head_end);
        self.last_body.clear();
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let size_text = std::str::from_utf8(&self.buf[..line_end]).unwrap_or("");
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| bad("bad chunk size"))?;
                let need = line_end + 2 + size + 2;
                while self.buf.len() < need {
                    self.fill().await?;
                }
                self.last_body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..need);
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.buf.len() < length {
                self.fill().await?;
            }
            self.last_body.extend_from_slice(&self.buf[..length]);
            self.buf.drain(..length);
        }
        Ok((status, close))
    }
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Realistic radiology-AI AuditEvents
// ---------------------------------------------------------------------------------------------

/// Every run posts the same sequence of events.
const EVENT_SEED: u64 = 0x5eed_7e11_0000_0001;

/// SplitMix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for c in out.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = ((c[0] as u32) << 16)
            | ((*c.get(1).unwrap_or(&0) as u32) << 8)
            | (*c.get(2).unwrap_or(&0) as u32);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Model {
    id: &'static str,
    name: &'static str,
    version: &'static str,
    vendor: &'static str,
    findings: &'static [(&'static str, &'static str)],
}

const MODELS: &[Model] = &[
    Model {
        id: "chest-ct-nodule",
        name: "LungScan Nodule Detector",
        version: "3.2.1",
        vendor: "Acme Imaging AI",
        findings: &[
            ("RID50149", "pulmonary nodule"),
            ("RID28502", "ground-glass opacity"),
            ("RID5352", "pleural effusion"),
        ],
    },
    Model {
        id: "head-ct-ich",
        name: "NeuroTriage ICH",
        version: "2.0.3",
        vendor: "Cortex Diagnostics",
        findings: &[
            ("RID4700", "intracranial hemorrhage"),
            ("RID4706", "subdural hematoma"),
        ],
    },
    Model {
        id: "mammo-density",
        name: "BreastView Density",
        version: "1.4.0",
        vendor: "Mammo Analytics",
        findings: &[
            ("RID29901", "breast density category C"),
            ("RID39055", "suspicious calcification"),
        ],
    },
    Model {
        id: "cxr-triage",
        name: "ChestFirst Triage",
        version: "5.1.0",
        vendor: "Radiant Labs",
        findings: &[
            ("RID5541", "pneumothorax"),
            ("RID39039", "cardiomegaly"),
            ("RID5350", "pneumonia"),
        ],
    },
];

const SITES: &[&str] = &[
    "St. Elsewhere Radiology",
    "Northside Imaging",
    "UMC Radiology",
];

/// `n` distinct AuditEvents (compact JSON, ≈1.9–2.5 KB): an AI model inference on a DICOM
/// study, requested by a radiologist, with the study, the patient and 1–3 findings.
fn generate_events(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..n).map(|i| radiology_event(i, &mut rng)).collect()
}

fn radiology_event(i: usize, rng: &mut Rng) -> Vec<u8> {
    use serde_json::json;
    let model = rng.pick(MODELS);
    let day = 1 + rng.below(28);
    let (h, m, s, us) = (
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1_000_000),
    );
    let recorded = format!("2026-03-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}Z");
    let start = format!("2026-03-{day:02}T{h:02}:{m:02}:{s:02}Z");
    let study_uid = format!(
        "1.2.826.0.1.3680043.10.543.{}.{}.{}",
        20260300 + day,
        i + 1,
        rng.below(1_000_000_000)
    );
    let accession = format!("ACC{:09}", rng.below(1_000_000_000));
    let patient = format!("pat-{:016x}", rng.next());
    let radiologist = format!("rad-{:05}", rng.below(2000));
    let instances = 1 + rng.below(600);
    let latency_ms = 200 + rng.below(4000);
    let findings = 1 + rng.below(3) as usize;
    // The study entity (DICOM PS3.15 A.5.3.6) carries the pixel digest, the model's
    // findings with their confidence, the inference latency and the output hash.
    let mut details = vec![json!({
        "type": "pixel-sha256",
        "valueBase64Binary": base64(&rng.bytes32())
    })];
    for f in 0..findings {
        let (code, label) = model.findings[f % model.findings.len()];
        details.push(json!({
            "type": "finding",
            "valueString": format!(
                "{code} {label}; confidence=0.{:03}",
                rng.below(1000)
            )
        }));
    }
    details.push(json!({
        "type": "inference-latency-ms",
        "valueString": latency_ms.to_string()
    }));
    if rng.below(2) == 0 {
        details.push(json!({
            "type": "output-sha256",
            "valueBase64Binary": base64(&rng.bytes32())
        }));
    }
    let model_id = format!("{}@{}", model.id, model.version);
    let event = json!({
        "resourceType": "AuditEvent",
        "meta": {
            "security": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "AIAST"
            }]
        },
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110100",
            "display": "Application Activity"
        },
        "action": "E",
        "recorded": recorded,
        "outcome": "0",
        "agent": [
            {
                "type": {
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "DEV"
                    }]
                },
                "who": {
                    "identifier": {
                        "system": "https://vellum-audit.org/fhir/ai-model",
                        "value": model_id
                    },
                    "display": format!("{} {} ({})", model.name, model.version, model.vendor)
                },
                "requestor": false
            },
            {
                "role": [{
                    "coding": [{
                        "system": "http://snomed.info/sct",
                        "code": "66862007",
                        "display": "Radiologist"
                    }]
                }],
                "who": {
                    "identifier": {
                        "system": "https://hospital.example.org/fhir/staff",
                        "value": radiologist
                    }
                },
                "requestor": true
            }
        ],
        "source": {
            "site": rng.pick(SITES),
            "observer": {
                "identifier": {
                    "system": "https://vellum-audit.org/fhir/source",
                    "value": format!("ai-orchestrator-{:02}", 1 + rng.below(8))
                }
            }
        },
        "entity": [
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances",
                        "valueInteger": instances
                    },
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/auditevent-Accession",
                        "valueIdentifier": { "value": accession }
                    }
                ],
                "what": {
                    "identifier": {
                        "type": {
                            "coding": [{
                                "system": "http://dicom.nema.org/resources/ontology/DCM",
                                "code": "110180",
                                "display": "Study Instance UID"
                            }]
                        },
                        "system": "urn:dicom:uid",
                        "value": format!("urn:oid:{study_uid}")
                    }
                },
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2"
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "3"
                },
                "detail": details
            },
            {
                "what": { "reference": format!("Patient/{patient}") },
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1"
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1"
                }
            }
        ]
    });
    // Optional elements, so sizes vary like real traffic does.
    let mut event = event;
    if rng.below(2) == 0 {
        event["period"] = json!({ "start": start, "end": recorded });
    }
    if rng.below(2) == 0 {
        event["subtype"] = json!([{
            "system": "https://vellum-audit.org/fhir/CodeSystem/vellum-event-type",
            "code": "ai-inference"
        }]);
    }
    if rng.below(2) == 0 {
        event["agent"][1]["network"] = json!({
            "address": format!("10.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254)),
            "type": "2"
        });
    }
    serde_json::to_vec(&event).expect("serialisable")
}
