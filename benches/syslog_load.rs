//! ATNA syslog load generator: many senders stream DICOM audit messages
//! (RFC 5424, RFC 6587 octet counting) over TCP or TLS, as PACS do — no
//! acknowledgement, the next frame right after the previous one.
//!
//! ```text
//! cargo bench --bench syslog_load -- [--backend sqlite|postgres|both]
//!     [--transport tcp|tls|both] [--senders 1,8,64] [--duration-secs 10]
//!     [--messages 200000] [--wait-quiet-secs 120] [--no-baseline]
//! ```
//!
//! For every backend × transport × sender count it starts the real
//! `vellum serve` binary on a fresh database with the syslog TCP and TLS
//! listeners on free loopback ports (certificates made for the run), lets
//! the senders write unique messages (the `query.xml` fixture with a
//! distinct audit source id each) until the duration or the message budget
//! is used, then waits until the server has stored every message written.
//! events/s = messages / (first write → last stored). The server is then
//! stopped with SIGTERM (it must exit 0) and `vellum verify` must find one
//! entry per message. The same-run baseline is the stored rows re-inserted
//! into a fresh database of the same backend with plain multi-row INSERTs
//! at the server's mean commit batch size (benches/support, as in
//! benches/load.rs). Prints a markdown table.
//!
//! Without `--bench` (when `cargo test --all-targets` builds this target) it
//! does nothing.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod support;
use support::{
    batch_stats, run_verify, vellum_bin, wait_for_quiet, Backend, CpuSnapshot, Database,
};

use vellum_testkit::tls::{tls_connect, Pki};
use vellum_testkit::{free_port, repo_root, DEV_TOKEN};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Tls,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

struct Args {
    backends: Vec<Backend>,
    transports: Vec<Transport>,
    senders: Vec<usize>,
    duration: Duration,
    messages: usize,
    wait_quiet: Duration,
    baseline: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut a = Args {
        backends: vec![Backend::Sqlite],
        transports: vec![Transport::Tcp, Transport::Tls],
        senders: vec![1, 8, 64],
        duration: Duration::from_secs(10),
        messages: 200_000,
        wait_quiet: Duration::from_secs(120),
        baseline: true,
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        let secs = |v: String, what: &str| {
            v.parse()
                .map(Duration::from_secs)
                .map_err(|e| format!("{what}: {e}"))
        };
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
            "--transport" => {
                a.transports = match value()?.as_str() {
                    "tcp" => vec![Transport::Tcp],
                    "tls" => vec![Transport::Tls],
                    "both" => vec![Transport::Tcp, Transport::Tls],
                    other => return Err(format!("unknown transport {other}")),
                }
            }
            "--senders" => {
                a.senders = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--senders: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--duration-secs" => a.duration = secs(value()?, "--duration-secs")?,
            "--messages" => {
                a.messages = value()?.parse().map_err(|e| format!("--messages: {e}"))?
            }
            "--wait-quiet-secs" => a.wait_quiet = secs(value()?, "--wait-quiet-secs")?,
            "--no-baseline" => a.baseline = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(a))
}

/// One octet-counted RFC 5424 frame around the fixture, made unique by `n`.
fn frame(xml: &str, run: usize, n: usize) -> Vec<u8> {
    let xml = xml.replacen(
        "AuditSourceID=\"",
        &format!("AuditSourceID=\"r{run}-m{n}-"),
        1,
    );
    let msg = format!(
        "<86>1 2026-03-01T10:15:30.123+01:00 pacs.example.org DCM4CHEE 4242 IHE+RFC-3881 - {xml}"
    );
    format!("{} {msg}", msg.len()).into_bytes()
}

struct Ports {
    http: u16,
    tcp: u16,
    tls: u16,
}

fn start_server(db_url: &str, ports: &Ports, pki: &Pki) -> Child {
    Command::new(vellum_bin())
        .arg("serve")
        .env_remove("VELLUM_CONFIG")
        .env("VELLUM_DATABASE_URL", db_url)
        .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{}", ports.http))
        .env("VELLUM_MLLP_ADDR", "")
        .env("VELLUM_SYSLOG_ADDR", format!("127.0.0.1:{}", ports.tcp))
        .env("VELLUM_SYSLOG_TLS_ADDR", format!("127.0.0.1:{}", ports.tls))
        .env("VELLUM_SYSLOG_TLS_CERT", pki.path("server.pem"))
        .env("VELLUM_SYSLOG_TLS_KEY", pki.path("server.key"))
        .env("VELLUM_DEV_TOKEN", DEV_TOKEN)
        .env("VELLUM_AUTH_RECORD_READS", "false")
        .env("VELLUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vellum serve")
}

/// Stored entries, from `_summary=count` (reads are not recorded here).
async fn stored(client: &reqwest::Client, http: u16) -> Option<u64> {
    let v: serde_json::Value = client
        .get(format!(
            "http://127.0.0.1:{http}/fhir/AuditEvent?_summary=count"
        ))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["total"].as_u64()
}

async fn send_all<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    xml: &str,
    run: usize,
    next: &AtomicUsize,
    budget: usize,
    deadline: Instant,
) -> usize {
    let mut sent = 0;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= budget || Instant::now() >= deadline {
            break;
        }
        if s.write_all(&frame(xml, run, n)).await.is_err() {
            break;
        }
        sent += 1;
    }
    // Close as RFC 5425 asks (close_notify), then read until the server
    // closes: a TLS 1.3 server sends session tickets, and closing a socket
    // with unread data resets it, discarding what the server has not read.
    let _ = s.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(600), s.read_to_end(&mut sink)).await;
    sent
}

/// Runs the senders; (messages written, first write → last stored).
async fn run_load(
    args: &Args,
    ports: &Ports,
    pki: &Arc<Pki>,
    transport: Transport,
    senders: usize,
    run: usize,
) -> (usize, Duration) {
    let raw = std::fs::read_to_string(repo_root().join("fixtures/atna/query.xml"))
        .expect("fixtures/atna/query.xml");
    let xml: Arc<String> = Arc::new(raw.lines().map(str::trim).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (xml, next, pki) = (xml.clone(), next.clone(), pki.clone());
        let (budget, tcp, tls) = (args.messages, ports.tcp, ports.tls);
        tasks.push(tokio::spawn(async move {
            match transport {
                Transport::Tcp => match tokio::net::TcpStream::connect(("127.0.0.1", tcp)).await {
                    Ok(s) => send_all(s, &xml, run, &next, budget, deadline).await,
                    Err(_) => 0,
                },
                Transport::Tls => match tls_connect(tls, &pki, false).await {
                    Some(s) => send_all(s, &xml, run, &next, budget, deadline).await,
                    None => 0,
                },
            }
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap_or(0);
    }
    // Syslog has no acknowledgement: the run ends when everything is stored.
    let client = reqwest::Client::new();
    let wait_until = Instant::now() + Duration::from_secs(600);
    while stored(&client, ports.http).await.unwrap_or(0) < sent as u64
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (sent, started.elapsed())
}

async fn wait_ready(http: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{http}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "vellum did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_one(
    args: &Args,
    pki: &Arc<Pki>,
    backend: Backend,
    transport: Transport,
    senders: usize,
    run: usize,
) -> Option<String> {
    let work = tempfile::Builder::new()
        .prefix("vellum-syslog-load-")
        .tempdir()
        .ok()?;
    let db = Database::create(backend, work.path(), "server")
        .await
        .map_err(|e| eprintln!("{e}"))
        .ok()?;
    let ports = Ports {
        http: free_port(),
        tcp: free_port(),
        tls: free_port(),
    };
    let mut child = start_server(&db.url, &ports, pki);
    let pid = child.id();
    wait_ready(ports.http).await;
    wait_for_quiet(args.wait_quiet, &[pid]).await;
    let before = CpuSnapshot::take(pid, backend);
    let (sent, took) = run_load(args, &ports, pki, transport, senders, run).await;
    let cpu = CpuSnapshot::take(pid, backend).minus(&before);
    let wall = took.as_secs_f64();
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    let status = child.wait().expect("server exit");
    let (verify_ok, entries, _head) = run_verify(&db.url);
    let rows = db.read_entries().await.unwrap_or_default();
    let stats = batch_stats(&rows);
    let rate = sent as f64 / wall;
    let mut base = ("–".to_string(), "–".to_string());
    if args.baseline && !rows.is_empty() {
        let batch = (stats.mean.round() as usize).max(1);
        if let Ok(b) = Database::create(backend, work.path(), "baseline").await {
            if support::migrate(&b.url).is_ok() {
                wait_for_quiet(args.wait_quiet, &[]).await;
                if let Ok(r) = b.baseline_insert(&rows, batch).await {
                    base = (
                        format!("{:.0} ({batch})", r.rate()),
                        format!("{:.2}", rate / r.rate()),
                    );
                }
            }
            b.drop_db().await;
        }
    }
    db.drop_db().await;
    let row = format!(
        "| {} | {} | {senders} | {sent} | {rate:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
        backend.name(),
        transport.name(),
        stats.mean,
        cpu.server_s / wall,
        cpu.client_s / wall,
        cpu.other_s() / wall,
        base.0,
        base.1,
        if verify_ok && entries as usize == sent && status.success() {
            "ok".to_string()
        } else {
            format!("FAILED (exit {status}, verify {verify_ok}, {entries} entries)")
        },
    );
    eprintln!("{row}");
    Some(row)
}

fn main() {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("syslog_load: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let pki = Arc::new(Pki::new());
    let mut rows = Vec::new();
    rt.block_on(async {
        let mut run = 0;
        for &backend in &args.backends {
            for &transport in &args.transports {
                for &senders in &args.senders {
                    run += 1;
                    if let Some(row) = run_one(&args, &pki, backend, transport, senders, run).await
                    {
                        rows.push(row);
                    }
                }
            }
        }
    });
    println!(
        "\n| backend | transport | senders | messages | events/s | mean batch | server CPU | client CPU | other CPU | baseline entry rows/s (batch) | ratio | SIGTERM exit 0 + verify + entries = messages |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for r in rows {
        println!("{r}");
    }
}
