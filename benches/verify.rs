//! `vellum verify` throughput on SQLite, with its baselines measured in the
//! same run over the same store: streaming the stored rows alone (the
//! floor for any verifier that reads every body), SHA-256 of the same bytes
//! (in process, and `openssl dgst -sha256`), and each per-entry step of the
//! verifier on its own (body hash, leaf hash, search-index re-derivation).
//!
//! cargo bench --bench verify -- [--events 1000000] [--sample 100000]
//!     [--compare-binary PATH]   (another build's `vellum`, timed on the same store)
//!
//! The store is filled once by `vellum demo` (the same code, in process:
//! realistic radiology AI events through the normal intake, each with its
//! idempotency key and search-index rows) and kept in
//! `target/bench-data/verify-N.db`; later runs reuse it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};
use vellum::ledger::hash;
use vellum::store::AnyStore;

// The allocator of the `vellum` binary, so in-process figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    events: u64,
    sample: usize,
    /// Another `vellum` binary (e.g. an earlier build) whose `verify` is
    /// timed on the same store in the same run.
    compare: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        sample: 100_000,
        compare: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--events" => a.events = it.next().and_then(|v| v.parse().ok()).expect("--events N"),
            "--sample" => a.sample = it.next().and_then(|v| v.parse().ok()).expect("--sample N"),
            "--compare-binary" => a.compare = it.next(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    a
}

/// The sum of two adjacent CPU-time fields of /proc/self/stat (counted
/// after the command name), in seconds.
fn stat_cpu_s(first: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(first).copied().unwrap_or(0) + f.get(first + 1).copied().unwrap_or(0)) as f64 / 100.0
}

/// (utime + stime) of this process, in seconds.
fn cpu_s() -> f64 {
    stat_cpu_s(11)
}

/// (cutime + cstime): CPU of waited-for children, in seconds.
fn children_cpu_s() -> f64 {
    stat_cpu_s(13)
}

fn open(path: &std::path::Path) -> Connection {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open")
}

/// Streams `sql` to the end, touching every column; (rows, bytes, seconds).
fn stream(path: &std::path::Path, sql: &str) -> (u64, u64, f64) {
    let conn = open(path);
    let t = Instant::now();
    let mut stmt = conn.prepare(sql).expect("prepare");
    let n = stmt.column_count();
    let mut rows = stmt.query([]).expect("query");
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(r) = rows.next().expect("row") {
        for i in 0..n {
            bytes += match r.get_ref(i).expect("column") {
                rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                    b.len() as u64
                }
                _ => 8,
            };
        }
        count += 1;
    }
    (count, bytes, t.elapsed().as_secs_f64())
}

fn line(what: &str, n: u64, secs: f64, base: f64) {
    println!(
        "{what:<58} {secs:>7.2} s  {:>10.0} entries/s  ({:.2} × baseline time)",
        n as f64 / secs,
        secs / base
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench-data dir");
    let path = dir.join(format!("verify-{}.db", a.events));
    let url = format!("sqlite://{}", path.display());
    let stored = if path.exists() {
        open(&path)
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM entry", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0) as u64
    } else {
        0
    };
    if stored < a.events {
        let t = Instant::now();
        let settings = vellum_testkit::settings_for(&url);
        let sum = vellum::demo::run_configured(&settings, a.events, 7)
            .await
            .expect("demo fill");
        println!(
            "filled {} events with `vellum demo` in {:.0} s",
            sum.events,
            t.elapsed().as_secs_f64()
        );
    }
    let conn = open(&path);
    let q = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql);
    let n = q("SELECT COUNT(*) FROM entry") as u64;
    println!(
        "store: {n} entries, mean body {} bytes, {:.1} index rows and {:.2} keys per entry, {} MB",
        conn.query_row(
            "SELECT CAST(AVG(LENGTH(body)) AS INTEGER) FROM entry",
            [],
            |r| { r.get::<_, i64>(0) }
        )
        .expect("mean body"),
        q("SELECT COUNT(*) FROM search_index") as f64 / n as f64,
        q("SELECT COUNT(*) FROM entry_key") as f64 / n as f64,
        std::fs::metadata(&path).map_or(0, |m| m.len()) / 1_000_000
    );
    drop(conn);
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Baselines: the rows alone, one cursor each, one core.
    let (_, body_bytes, read_bodies) = stream(&path, "SELECT body FROM entry ORDER BY seq");
    line(
        "baseline: SELECT body FROM entry ORDER BY seq",
        n,
        read_bodies,
        read_bodies,
    );
    let (_, _, read_entries) = stream(
        &path,
        "SELECT seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated FROM entry ORDER BY seq",
    );
    line("read: every entry column", n, read_entries, read_bodies);
    let (_, _, read_index) = stream(
        &path,
        "SELECT seq, param, sys, val, exact, low, high FROM search_index ORDER BY seq",
    );
    line(
        "read: search_index rows ORDER BY seq",
        n,
        read_index,
        read_bodies,
    );
    let (_, _, read_index_rowid) = stream(
        &path,
        "SELECT seq, param, sys, val, exact, low, high FROM search_index ORDER BY rowid",
    );
    line(
        "read: search_index rows in table order (rowid)",
        n,
        read_index_rowid,
        read_bodies,
    );
    let (_, _, read_keys) = stream(&path, "SELECT seq, key FROM entry_key ORDER BY seq");
    line(
        "read: entry_key rows ORDER BY seq",
        n,
        read_keys,
        read_bodies,
    );

    // Per-entry steps over a sample held in memory, one core.
    let conn = open(&path);
    let mut stmt = conn
        .prepare("SELECT body, last_updated FROM entry ORDER BY seq LIMIT ?1")
        .expect("prepare");
    let sample: Vec<(String, String)> = stmt
        .query_map([a.sample as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("sample")
        .collect::<Result<_, _>>()
        .expect("sample rows");
    drop(stmt);
    drop(conn);
    let s = sample.len() as u64;
    let sample_bytes: u64 = sample.iter().map(|(b, _)| b.len() as u64).sum();
    let per = |secs: f64| secs / s as f64 * 1e6;
    let t = Instant::now();
    let mut x = 0u8;
    for (b, _) in &sample {
        x ^= hash::body_sha256(b.as_bytes())[0];
    }
    let sha = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (b, _) in &sample {
        x ^= hash::leaf_hash(b.as_bytes())[0];
    }
    let leaf = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut rows = 0usize;
    for (b, _) in &sample {
        rows += vellum::fhir::search_index::rows_for_body(b).len();
    }
    let index_owned = t.elapsed().as_secs_f64();
    // What verify does per body: one borrowing parse, the rows handed out
    // borrowed and hashed, nothing copied.
    let hasher = vellum::store::stream::RowHasher::default();
    let t = Instant::now();
    let mut sum = 0u64;
    for (b, _) in &sample {
        if let Ok(tape) = vellum_json::tape::Tape::parse(b.as_bytes()) {
            vellum::fhir::search_index::derive_rows(tape.root(), &mut |r| {
                sum = sum.wrapping_add(hasher.derived_row(1, &r));
            });
        }
    }
    let index = t.elapsed().as_secs_f64();
    // The intake's route: the owned tree (which intake needs anyway), then
    // the same extraction with owned rows.
    let t = Instant::now();
    for (b, _) in &sample {
        if let Ok(root) = vellum_json::parse(b.as_bytes()) {
            rows += vellum::fhir::search_index::extract(&root).into_rows().len();
        }
    }
    let index_tree = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (b, _) in &sample {
        rows += vellum_json::tape::Tape::parse(b.as_bytes()).map_or(0, |_| 1);
    }
    let tape = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (b, _) in &sample {
        rows += vellum_json::parse(b.as_bytes()).map_or(0, |_| 1);
    }
    let parse = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (b, _) in &sample {
        rows += serde_json::from_str::<serde::de::IgnoredAny>(b).map_or(0, |_| 1);
    }
    let skim = t.elapsed().as_secs_f64();
    std::hint::black_box((x, rows, sum));
    println!(
        "per entry, one core, {s} entries in memory (mean {} bytes):",
        sample_bytes / s.max(1)
    );
    println!(
        "  SHA-256(body) {:.2} µs ({:.2} GB/s), leaf hash {:.2} µs",
        per(sha),
        sample_bytes as f64 / sha / 1e9,
        per(leaf),
    );
    println!(
        "  search-index rows as verify derives them (borrowing parse, rows hashed, not copied) {:.2} µs \
         (of which the parse {:.2} µs); as owned rows from that parse {:.2} µs",
        per(index),
        per(tape),
        per(index_owned),
    );
    println!(
        "  the same rows from the owned tree (intake's route) {:.2} µs (of which the owned parse {:.2} µs); \
         serde_json skim {:.2} µs",
        per(index_tree),
        per(parse),
        per(skim)
    );
    let dump = dir.join("verify-sample.bin");
    {
        let mut f = std::fs::File::create(&dump).expect("dump");
        for (b, _) in &sample {
            f.write_all(b.as_bytes()).expect("dump");
        }
    }
    let t = Instant::now();
    let ok = Command::new("openssl")
        .args(["dgst", "-sha256"])
        .arg(&dump)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let openssl = t.elapsed().as_secs_f64();
    if ok {
        println!(
            "  baseline: openssl dgst -sha256 over the same {} MB: {:.2} GB/s (in process: {:.2} GB/s)",
            sample_bytes / 1_000_000,
            sample_bytes as f64 / openssl / 1e9,
            sample_bytes as f64 / sha / 1e9
        );
    }
    let _ = std::fs::remove_file(&dump);
    drop(sample);

    // The verifier itself, as `vellum verify` runs it.
    let db = vellum::config::DatabaseUrl::parse(&url).expect("url");
    for (what, indexed) in [
        ("verify: chain, tree, columns (no index recheck)", false),
        ("verify: everything (`vellum verify`)", true),
    ] {
        let mut store = AnyStore::connect(&db, None).await.expect("connect");
        if indexed {
            store = store
                .with_indexer(vellum::fhir::search_index::derive_rows)
                .with_keyer(vellum::intake::keys::expected_key);
        }
        let (c, t) = (cpu_s(), Instant::now());
        let v = vellum::ledger::verify::verify_all(&store, None)
            .await
            .expect("verify");
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_s() - c;
        assert!(v.ok(), "{:?}", v.problem);
        assert_eq!(v.entries as u64, n);
        line(what, n, secs, read_bodies);
        println!(
            "  CPU {cpu:.1} s over {secs:.1} s wall: {:.2} cores busy, {:.1} µs of CPU per entry",
            cpu / secs,
            cpu / n as f64 * 1e6
        );
        drop(store);
    }
    // And the command itself (its own process, as an operator runs it),
    // then the binary to compare with, if given, then this one again.
    let mut binaries = vec![(
        "`vellum verify --json` (the binary)",
        env!("CARGO_BIN_EXE_vellum").to_string(),
    )];
    if let Some(other) = &a.compare {
        binaries.push((
            "`vellum verify --json`, the binary compared with",
            other.clone(),
        ));
        binaries.push((
            "`vellum verify --json` (the binary), again",
            env!("CARGO_BIN_EXE_vellum").to_string(),
        ));
    }
    for (what, binary) in binaries {
        let (c, t) = (children_cpu_s(), Instant::now());
        let out = Command::new(&binary)
            .args(["verify", "--json", "--database-url", &url])
            .output()
            .expect("run vellum verify");
        let secs = t.elapsed().as_secs_f64();
        let cpu = children_cpu_s() - c;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        line(what, n, secs, read_bodies);
        println!(
            "  CPU {cpu:.1} s over {secs:.1} s wall: {:.2} cores busy, {:.1} µs of CPU per entry",
            cpu / secs,
            cpu / n as f64 * 1e6
        );
    }
    println!(
        "bodies: {} MB read; SQLite alone streams them at {:.0} entries/s",
        body_bytes / 1_000_000,
        n as f64 / read_bodies
    );
}
