//! MLLP load generator: many connections, each sending an HL7 v2 message
//! and awaiting its ACK before the next (the way interface engines send).
//!
//! ```text
//! cargo bench --bench mllp_load -- [--backend sqlite|postgres|both]
//!     [--connections 1,8,64] [--duration-secs 10] [--messages 200000] [--mix adt|all]
//!     [--window 1] [--wait-quiet-secs 120] [--max-other-cpu 0.2] [--attempts 3]
//!     [--no-baseline] [--writer-log]
//! ```
//!
//! `--window N`: each connection sends N messages back to back, then reads
//! their N ACKs (pipelining, as some interface engines do); latency is
//! measured per message from the write of its window to its ACK.
//!
//! For every backend × connection count it starts the real `vellum serve`
//! binary with a fresh database and MLLP on a free loopback port, sends
//! messages with unique MSH-10 (`--mix all`: ADT^A01, ORM^O01 and ORU^R01
//! with AI findings in turn) until the duration or message budget is used,
//! records every ACK latency, stops the server with SIGTERM (it must exit 0),
//! runs `vellum verify` (the entry count must equal the AA count) and prints
//! a markdown table: messages/s, p50/p99/max ACK latency, the CPU split
//! (server, load generator, PostgreSQL, other processes; the load average),
//! and the same-run baselines: the rows the server stored, re-inserted into a
//! fresh database of the same backend with plain multi-row INSERTs at the
//! server's mean commit batch size (benches/support: the same code as
//! benches/load.rs), once the entry rows only and once with everything the
//! server writes per batch (entry + entry_key + search_index rows). A run or
//! baseline during which other processes used more than `--max-other-cpu`
//! cores is repeated (up to `--attempts`).
//!
//! Without `--bench` (when `cargo test --all-targets` builds this target) it
//! does nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::{
    batch_stats, machine_ticks, migrate, postgres_ticks, proc_ticks, run_verify, vellum_bin,
    wait_for_quiet, writer_stats, Backend, CpuSnapshot, Database, CLOCK_TICKS,
};

use vellum_testkit::free_port;
use vellum_testkit::mllp::{fixture, CR, FS, VT};

struct Args {
    backends: Vec<Backend>,
    connections: Vec<usize>,
    duration: Duration,
    messages: usize,
    mix_all: bool,
    window: usize,
    wait_quiet: Duration,
    max_other_cpu: f64,
    attempts: usize,
    baseline: bool,
    writer_log: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut a = Args {
        backends: vec![Backend::Sqlite],
        connections: vec![1, 8, 64],
        duration: Duration::from_secs(10),
        messages: 200_000,
        mix_all: true,
        window: 1,
        wait_quiet: Duration::from_secs(120),
        max_other_cpu: 0.2,
        attempts: 3,
        baseline: true,
        writer_log: false,
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--backend" => {
                a.backends = match value()?.as_str() {
                    "sqlite" => vec![Backend::Sqlite],
                    "postgres" => vec![Backend::Postgres],
                    "both" => vec![Backend::Sqlite, Backend::Postgres],
                    other => return Err(format!("unknown backend {other}")),
                }
            }
            "--connections" => {
                a.connections = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--connections: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--duration-secs" => {
                a.duration = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--duration-secs: {e}"))?,
                )
            }
            "--messages" => {
                a.messages = value()?.parse().map_err(|e| format!("--messages: {e}"))?
            }
            "--mix" => a.mix_all = value()? == "all",
            "--window" => {
                a.window = value()?
                    .parse::<usize>()
                    .map_err(|e| format!("--window: {e}"))?
                    .max(1)
            }
            "--wait-quiet-secs" => {
                a.wait_quiet = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--wait-quiet-secs: {e}"))?,
                )
            }
            "--max-other-cpu" => {
                a.max_other_cpu = value()?
                    .parse()
                    .map_err(|e| format!("--max-other-cpu: {e}"))?
            }
            "--attempts" => {
                a.attempts = value()?
                    .parse::<usize>()
                    .map_err(|e| format!("--attempts: {e}"))?
                    .max(1)
            }
            "--no-baseline" => a.baseline = false,
            "--writer-log" => a.writer_log = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(a))
}

fn with_control_id(msg: &str, control_id: &str) -> String {
    let (msh, rest) = msg.split_once('\r').unwrap_or((msg, ""));
    let mut fields: Vec<&str> = msh.split('|').collect();
    fields[9] = control_id;
    format!("{}\r{rest}", fields.join("|"))
}

fn frame(msg: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(msg.len() + 3);
    v.push(VT);
    v.extend_from_slice(msg.as_bytes());
    v.extend_from_slice(&[FS, CR]);
    v
}

fn start_server(db_url: &str, http: u16, mllp: u16, writer_log: Option<&Path>) -> Child {
    let mut cmd = Command::new(vellum_bin());
    cmd.arg("serve")
        .env_remove("VELLUM_CONFIG")
        .env("VELLUM_DATABASE_URL", db_url)
        .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("VELLUM_MLLP_ADDR", format!("127.0.0.1:{mllp}"))
        // Every load connection comes from 127.0.0.1: lift the per-sender cap
        // (32 by default), which would close half of 64 connections at once.
        .env("VELLUM_LIMITS_MLLP_MAX_CONNECTIONS_PER_PEER", "4096")
        // PostgreSQL stores get no first-start admin token: give the server one.
        .env("VELLUM_DEV_TOKEN", vellum_testkit::DEV_TOKEN)
        .stderr(Stdio::inherit());
    match writer_log.and_then(|p| std::fs::File::create(p).ok()) {
        // One debug line per committed batch (count and duration), nothing else.
        Some(out) => cmd
            .env("VELLUM_LOG", "warn,vellum::ledger::writer=debug")
            .stdout(out),
        None => cmd.env("VELLUM_LOG", "warn").stdout(Stdio::null()),
    };
    cmd.spawn().expect("spawn vellum serve")
}

async fn wait_ready(mllp: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", mllp)).await.is_err() {
        assert!(Instant::now() < deadline, "vellum did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Outcome {
    acked: usize,
    errors: usize,
    wall: Duration,
    latencies_us: Vec<u64>,
}

async fn run_load(port: u16, connections: usize, args: &Args, run: usize) -> Outcome {
    let templates: Vec<String> = if args.mix_all {
        vec![
            fixture("adt_a01.hl7"),
            fixture("orm_o01.hl7"),
            fixture("oru_r01_ai.hl7"),
        ]
    } else {
        vec![fixture("adt_a01.hl7")]
    };
    let templates = Arc::new(templates);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let budget = args.messages;
    let mut tasks = Vec::new();
    let window = args.window;
    for _ in 0..connections {
        let templates = templates.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                return (lat, 1usize);
            };
            let _ = s.set_nodelay(true);
            let mut buf: Vec<u8> = Vec::with_capacity(4096 * window);
            let mut chunk = [0u8; 16384];
            'outer: loop {
                let mut bytes = Vec::new();
                let mut count = 0;
                while count < window {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= budget || Instant::now() >= deadline {
                        break;
                    }
                    let msg = with_control_id(
                        &templates[n % templates.len()],
                        &format!("B{run:02}{n:010}"),
                    );
                    bytes.extend(frame(&msg));
                    count += 1;
                }
                if count == 0 {
                    break;
                }
                let t0 = Instant::now();
                if s.write_all(&bytes).await.is_err() {
                    errors += count;
                    break;
                }
                let mut got = 0;
                while got < count {
                    // Take every complete ACK already buffered.
                    while let Some(end) = buf.windows(2).position(|w| w == [FS, CR]) {
                        let ack = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 2);
                        got += 1;
                        if ack.contains("\rMSA|AA|") {
                            lat.push(t0.elapsed().as_micros() as u64);
                        } else {
                            errors += 1;
                        }
                    }
                    if got >= count {
                        break;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            errors += count - got;
                            break 'outer;
                        }
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies_us.extend(l);
            errors += e;
        }
    }
    let wall = started.elapsed();
    latencies_us.sort_unstable();
    Outcome {
        acked: latencies_us.len(),
        errors,
        wall,
        latencies_us,
    }
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

/// `--stages`: CPU cost of each in-process step for one message, no I/O.
fn stages() {
    use vellum::hl7v2;
    let origin = hl7v2::Origin {
        peer: "127.0.0.1:50000".parse().expect("addr"),
        local: "127.0.0.1:2575".parse().expect("addr"),
    };
    for name in ["adt_a01.hl7", "orm_o01.hl7", "oru_r01_ai.hl7"] {
        let raw = fixture(name).into_bytes();
        let n = 5000;
        let (mut read, mut map, mut ser, mut prep) = (0u128, 0u128, 0u128, 0u128);
        for _ in 0..n {
            let t = Instant::now();
            let inbound = hl7v2::read(&raw, origin).expect("valid fixture");
            read += t.elapsed().as_nanos();
            let t = Instant::now();
            let ev = hl7v2::to_audit_event(&inbound, None, "2026-01-01T00:00:00.000000Z");
            map += t.elapsed().as_nanos();
            let t = Instant::now();
            let body = ev.into_bytes();
            ser += t.elapsed().as_nanos();
            let t = Instant::now();
            let d = vellum::fhir::create::prepare_audit_event(&body).expect("valid");
            prep += t.elapsed().as_nanos();
            std::hint::black_box(d);
        }
        let us = |x: u128| x as f64 / n as f64 / 1000.0;
        // The parts of prepare_audit_event, one by one on the same body.
        let body = hl7v2::to_audit_event(
            &hl7v2::read(&raw, origin).expect("valid fixture"),
            None,
            "2026-01-01T00:00:00.000000Z",
        )
        .into_bytes();
        let (mut parse, mut structure, mut rules, mut profile, mut index, mut canon) =
            (0u128, 0u128, 0u128, 0u128, 0u128, 0u128);
        for _ in 0..n {
            let t = Instant::now();
            let root = vellum::ledger::canonical::parse(&body).expect("canonical");
            parse += t.elapsed().as_nanos();
            let t = Instant::now();
            std::hint::black_box(fhir_model::check_audit_event_json(&body).is_ok());
            structure += t.elapsed().as_nanos();
            let t = Instant::now();
            std::hint::black_box(vellum::fhir::validate::validate_audit_event(&root));
            rules += t.elapsed().as_nanos();
            let t = Instant::now();
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            std::hint::black_box(vellum::fhir::profile::validate_profiles(&v));
            profile += t.elapsed().as_nanos();
            let t = Instant::now();
            std::hint::black_box(vellum::fhir::search_index::extract(&root).into_rows());
            index += t.elapsed().as_nanos();
            let t = Instant::now();
            std::hint::black_box(vellum::ledger::canonical::to_canonical(&root));
            canon += t.elapsed().as_nanos();
        }
        println!(
            "{name} ({} bytes): canonical parse {:.1} µs, fhirbolt structure {:.1} µs, rules {:.1} µs, \
             profile (serde_json parse + check) {:.1} µs, search index {:.1} µs, canonical write {:.1} µs",
            body.len(),
            us(parse),
            us(structure),
            us(rules),
            us(profile),
            us(index),
            us(canon)
        );
        println!(
            "{name}: read+parse {:.1} µs, map {:.1} µs, to_vec {:.1} µs, prepare_audit_event {:.1} µs",
            us(read),
            us(map),
            us(ser),
            us(prep)
        );
    }
}

/// One server run and its baselines: the table row and the other processes' CPU.
async fn run_one(
    args: &Args,
    backend: Backend,
    run: usize,
    connections: usize,
) -> Option<(String, f64)> {
    let work = tempfile::Builder::new()
        .prefix("vellum-mllp-load-")
        .tempdir()
        .ok()?;
    let db = match Database::create(backend, work.path(), "server").await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return None;
        }
    };
    let (http, mllp) = (free_port(), free_port());
    let log = work.path().join("server.stdout");
    let mut child = start_server(
        &db.url,
        http,
        mllp,
        args.writer_log.then_some(log.as_path()),
    );
    let pid = child.id();
    wait_ready(mllp).await;
    wait_for_quiet(args.wait_quiet, &[pid]).await;
    let load0 = loadavg();
    let before = CpuSnapshot::take(pid, backend);
    let out = run_load(mllp, connections, args, run).await;
    let cpu = CpuSnapshot::take(pid, backend).minus(&before);
    let load1 = loadavg();
    let wall = out.wall.as_secs_f64();
    let other = cpu.other_s() / wall;
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    let status = child.wait().expect("server exit");
    let name = backend.name();
    if args.writer_log {
        if let Some((batches, mean, busy)) = writer_stats(&log) {
            eprintln!(
                "{name} {connections}: writer {batches} batches, mean {mean:.1} events, mean \
                 append_batch {:.2} ms, busy {:.0} % of the run",
                busy.as_secs_f64() * 1000.0 / batches as f64,
                100.0 * busy.as_secs_f64() / wall
            );
        }
    }
    let (verify_ok, entries, head) = run_verify(&db.url);
    let stored = db.read_entries().await.unwrap_or_default();
    let stats = batch_stats(&stored);
    // The messages' receipts (they carry MSH-10); the rest of the store is
    // the server's own events, e.g. what its detection rules raised.
    let received = stored
        .iter()
        .filter(|e| e.body.contains("\"MSH-10\""))
        .count();
    let rate = out.acked as f64 / wall;
    let mut base = (
        "–".to_string(),
        "–".to_string(),
        "–".to_string(),
        "–".to_string(),
    );
    if args.baseline && other <= args.max_other_cpu && !stored.is_empty() {
        let batch = (stats.mean.round() as usize).max(1);
        let side = db.read_side_rows().await.ok();
        if let Some((r, _, _)) = baseline(
            args,
            backend,
            work.path(),
            "entries",
            Replay {
                rows: &stored,
                side: None,
                batch,
                server_head: &head,
            },
        )
        .await
        {
            base.0 = format!("{r:.0} ({batch})");
            base.1 = format!("{:.2}", rate / r);
        }
        if let Some(side) = &side {
            if let Some((r, _, _)) = baseline(
                args,
                backend,
                work.path(),
                "full",
                Replay {
                    rows: &stored,
                    side: Some(side),
                    batch,
                    server_head: &head,
                },
            )
            .await
            {
                base.2 = format!(
                    "{r:.0} ({batch}; +{:.1} rows each)",
                    side.rows() as f64 / stored.len() as f64
                );
                base.3 = format!("{:.2}", rate / r);
            }
        }
    }
    db.drop_db().await;
    let row = format!(
        "| {name} | {connections} | {} | {} | {} | {rate:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {} | {other:.2} | {load0} → {load1} | {} | {} | {} | {} | {} |",
        args.window,
        out.acked,
        out.errors,
        pct(&out.latencies_us, 0.50),
        pct(&out.latencies_us, 0.99),
        pct(&out.latencies_us, 1.0),
        stats.mean,
        cpu.server_s / wall,
        cpu.client_s / wall,
        if backend == Backend::Postgres {
            format!("{:.2}", cpu.postgres_s / wall)
        } else {
            "–".into()
        },
        base.0,
        base.1,
        base.2,
        base.3,
        if verify_ok && received == out.acked && status.success() {
            format!("ok (+{} of the server's own)", entries as usize - received.min(entries as usize))
        } else {
            format!(
                "FAILED (exit {status}, verify {verify_ok}, {entries} entries, {received} messages)"
            )
        },
    );
    eprintln!("{row}");
    Some((row, other))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One baseline: `rows` re-inserted (with `side` rows too when given) in transactions of
/// `batch`, into a fresh migrated database; repeated while other processes disturb it.
/// What a baseline re-inserts, and the head chain hash it must end on.
struct Replay<'a> {
    rows: &'a [support::Stored],
    side: Option<&'a support::SideRows>,
    batch: usize,
    server_head: &'a str,
}

async fn baseline(
    args: &Args,
    backend: Backend,
    work: &Path,
    label: &str,
    replay: Replay<'_>,
) -> Option<(f64, f64, f64)> {
    let Replay {
        rows,
        side,
        batch,
        server_head,
    } = replay;
    for attempt in 1..=args.attempts {
        let db = Database::create(backend, work, &format!("{label}_{attempt}"))
            .await
            .ok()?;
        migrate(&db.url).ok()?;
        wait_for_quiet(args.wait_quiet, &[]).await;
        let (busy0, _) = machine_ticks();
        let self0 = proc_ticks("self").map_or(0, |t| t.0);
        let pg0 = postgres_ticks();
        let b = match db.baseline_insert_with(rows, side, batch).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("baseline {label}: {e}");
                db.drop_db().await;
                return None;
            }
        };
        let wall = b.elapsed.as_secs_f64();
        let own = (proc_ticks("self").map_or(0, |t| t.0) - self0) as f64 / CLOCK_TICKS;
        let pg = if backend == Backend::Postgres {
            postgres_ticks().saturating_sub(pg0) as f64 / CLOCK_TICKS
        } else {
            0.0
        };
        let busy = machine_ticks().0.saturating_sub(busy0) as f64 / CLOCK_TICKS;
        let other = (busy - own - pg).max(0.0) / wall;
        let head = db.head_chain_hash().await.unwrap_or_default();
        db.drop_db().await;
        eprintln!(
            "baseline {label} (batch {batch}): {:.0} rows/s of entries, mean commit {:.2} ms, \
             other CPU {other:.2}, head {}",
            b.rate(),
            b.mean_commit_ms,
            if head == server_head {
                "matches the server's"
            } else {
                "DIFFERS"
            }
        );
        if other > args.max_other_cpu && attempt < args.attempts {
            eprintln!("discarding this baseline (other CPU {other:.2})");
            continue;
        }
        if head != server_head {
            return None;
        }
        return Some((b.rate(), b.mean_commit_ms, other));
    }
    None
}

fn main() {
    if std::env::args().any(|a| a == "--stages") {
        stages();
        return;
    }
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("mllp_load: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    rt.block_on(async {
        for &backend in &args.backends {
            for (run, &connections) in args.connections.iter().enumerate() {
                for attempt in 1..=args.attempts {
                    let row = run_one(&args, backend, run, connections).await;
                    match row {
                        Some((row, other))
                            if other > args.max_other_cpu && attempt < args.attempts =>
                        {
                            eprintln!("discarding: other processes used {other:.2} CPUs: {row}");
                        }
                        Some((row, _)) => {
                            println!("{row}");
                            rows.push(row);
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
    });
    println!(
        "\n| backend | connections | window | ACKed (AA) | errors | messages/s | p50 ms | p99 ms | max ms | mean batch | server CPU | client CPU | PG CPU | other CPU | loadavg | baseline entry rows/s | ratio | baseline entry+key+index rows/s | ratio | SIGTERM exit 0 + verify + receipts = AA |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|---|");
    for r in rows {
        println!("{r}");
    }
}
