//! MLLP load generator: many connections, each sending an HL7 v2 message
//! and awaiting its ACK before the next (the way interface engines send).
//!
//! ```text
//! cargo bench --bench mllp_load -- [--backend sqlite|postgres|both]
//!     [--connections 1,8,64] [--duration-secs 10] [--messages 200000] [--mix adt|all]
//!     [--window 1]
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
//! a markdown table: messages/s, p50/p99/max ACK latency.
//!
//! Without `--bench` (when `cargo test --all-targets` builds this target) it
//! does nothing.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VELLUM: &str = env!("CARGO_BIN_EXE_vellum");
const VT: u8 = 0x0b;
const FS: u8 = 0x1c;
const CR: u8 = 0x0d;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Args {
    backends: Vec<Backend>,
    connections: Vec<usize>,
    duration: Duration,
    messages: usize,
    mix_all: bool,
    window: usize,
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
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(a))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/hl7v2/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.trim_end().replace("\r\n", "\r").replace('\n', "\r") + "\r"
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

struct Db {
    url: String,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

async fn fresh_db(backend: Backend) -> Db {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            Db {
                url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                pg: None,
                _dir: Some(dir),
            }
        }
        Backend::Postgres => {
            let admin = std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("vellum_mllp_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("PostgreSQL reachable");
            sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
            )
            .await
            .expect("create database");
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            Db {
                url: format!("{base}/{name}"),
                pg: Some((admin.clone(), name)),
                _dir: None,
            }
        }
    }
}

async fn drop_db(db: Db) {
    if let Some((admin, name)) = db.pg {
        if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
            let _ = sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            )
            .await;
        }
    }
}

fn start_server(db_url: &str, http: u16, mllp: u16) -> Child {
    Command::new(VELLUM)
        .arg("serve")
        .env("VELLUM_DATABASE_URL", db_url)
        .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("VELLUM_MLLP_ADDR", format!("127.0.0.1:{mllp}"))
        .env("VELLUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vellum serve")
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
        println!(
            "{name}: read+parse {:.1} µs, map {:.1} µs, to_vec {:.1} µs, prepare_audit_event {:.1} µs",
            us(read),
            us(map),
            us(ser),
            us(prep)
        );
    }
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
                let db = fresh_db(backend).await;
                let (http, mllp) = (free_port(), free_port());
                let mut child = start_server(&db.url, http, mllp);
                wait_ready(mllp).await;
                let out = run_load(mllp, connections, &args, run).await;
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                let status = child.wait().expect("server exit");
                let verify = Command::new(VELLUM)
                    .args(["verify", "--json", "--database-url", &db.url])
                    .output()
                    .expect("vellum verify");
                let verdict: serde_json::Value =
                    serde_json::from_slice(&verify.stdout).unwrap_or_default();
                let entries = verdict["entries"].as_u64().unwrap_or(0) as usize;
                let row = format!(
                    "| {} | {connections} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                    match backend {
                        Backend::Sqlite => "sqlite",
                        Backend::Postgres => "postgres",
                    },
                    args.window,
                    out.acked,
                    out.errors,
                    out.acked as f64 / out.wall.as_secs_f64(),
                    pct(&out.latencies_us, 0.50),
                    pct(&out.latencies_us, 0.99),
                    pct(&out.latencies_us, 1.0),
                    if verify.status.success() && entries == out.acked && status.success() {
                        "ok".to_string()
                    } else {
                        format!(
                            "FAILED (exit {status}, verify {:?}, {entries} entries)",
                            verify.status.code()
                        )
                    },
                );
                println!("{row}");
                rows.push(row);
                drop_db(db).await;
            }
        }
    });
    println!(
        "\n| backend | connections | window | ACKed (AA) | errors | messages/s | p50 ms | p99 ms | max ms | SIGTERM exit 0 + verify + entries = AA |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
