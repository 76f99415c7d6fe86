//! What the load generators share (benches/load.rs, benches/mllp_load.rs): the raw
//! batched-INSERT baseline over the rows a server stored, `vellum verify`/`migrate` of a chosen
//! build, and CPU accounting from /proc. Each bench uses a different subset of it. Fresh
//! databases come from vellum-testkit, SQLite connections from the server's own store.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, Row};
use vellum::ledger::hash;
use vellum::store::SqliteStore;
pub use vellum_testkit::Backend;
use vellum_testkit::TestDb;

pub const VELLUM: &str = env!("CARGO_BIN_EXE_vellum");

/// The server binary: this build's, or `VELLUM_BIN` (to measure another build, e.g. the
/// commit before a change, in the same session).
pub fn vellum_bin() -> String {
    std::env::var("VELLUM_BIN").unwrap_or_else(|_| VELLUM.to_string())
}
/// Linux reports /proc CPU times in USER_HZ, which is 100 on every mainstream architecture.
pub const CLOCK_TICKS: f64 = 100.0;

#[derive(Debug, Clone, Default)]
pub struct Cpu {
    pub server_s: f64,
    pub client_s: f64,
    pub postgres_s: f64,
    /// Whole-machine busy time (all CPUs, excluding idle and iowait), CPU-seconds.
    pub machine_busy_s: f64,
    pub machine_iowait_s: f64,
}

#[derive(Debug, Clone)]
pub struct Baseline {
    pub batch: usize,
    pub rows: usize,
    pub elapsed: Duration,
    pub mean_commit_ms: f64,
    pub head_matches: bool,
}

impl Baseline {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

impl Cpu {
    /// CPU used by processes that are neither the server, the load generator nor
    /// PostgreSQL (other work on a shared machine), in CPU-seconds.
    pub fn other_s(&self) -> f64 {
        (self.machine_busy_s - self.server_s - self.client_s - self.postgres_s).max(0.0)
    }
}

/// `vellum verify --json`: (passed, entries, head chain hash).
pub fn run_verify(url: &str) -> (bool, i64, String) {
    let out = Command::new(vellum_bin())
        .args(["verify", "--json", "--database-url", url])
        .env_remove("VELLUM_CONFIG")
        .env("VELLUM_LOG", "warn")
        .output();
    let Ok(out) = out else {
        return (false, 0, String::new());
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let entries = v["entries"].as_i64().unwrap_or(0);
    let head = v["head_chain_hash"].as_str().unwrap_or("").to_string();
    let ok = out.status.success() && v["problem"].is_null();
    if !ok {
        eprintln!(
            "vellum verify failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ok, entries, head)
}

pub fn migrate(url: &str) -> Result<(), String> {
    let out = Command::new(vellum_bin())
        .args(["migrate", "--database-url", url])
        .env_remove("VELLUM_CONFIG")
        .env("VELLUM_LOG", "warn")
        .output()
        .map_err(|e| format!("vellum migrate: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "vellum migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// What the writer's "batch committed" debug lines say: (batches, mean events, time spent
/// inside append_batch in total).
pub fn writer_stats(path: &Path) -> Option<(usize, f64, Duration)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (mut batches, mut events, mut busy_us) = (0usize, 0u64, 0u64);
    for line in text.lines().filter(|l| l.contains("batch committed")) {
        let clean = strip_ansi(line);
        let field = |name: &str| {
            clean
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(n), Some(us)) = (field("events="), field("elapsed_us=")) {
            batches += 1;
            events += n;
            busy_us += us;
        }
    }
    (batches > 0).then(|| {
        (
            batches,
            events as f64 / batches as f64,
            Duration::from_micros(busy_us),
        )
    })
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    pub server: u64,
    pub client: u64,
    pub postgres: u64,
    pub machine_busy: u64,
    pub machine_iowait: u64,
}

/// (utime + stime, cutime + cstime) of a process, in clock ticks.
pub fn proc_ticks(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime …
    Some((f.get(11)? + f.get(12)?, f.get(13)? + f.get(14)?))
}

/// All CPU used by PostgreSQL: live processes plus what exited backends left in the
/// postmaster's cutime/cstime.
pub fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" || comm.trim() == "postmaster" {
            if let Some((own, children)) = proc_ticks(pid) {
                total += own + children;
            }
        }
    }
    total
}

pub fn machine_ticks() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest fields are inside user/nice)
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, get(4))
}

impl CpuSnapshot {
    pub fn take(server_pid: u32, backend: Backend) -> Self {
        let (machine_busy, machine_iowait) = machine_ticks();
        CpuSnapshot {
            server: proc_ticks(&server_pid.to_string()).map_or(0, |t| t.0),
            client: proc_ticks("self").map_or(0, |t| t.0),
            postgres: if backend == Backend::Postgres {
                postgres_ticks()
            } else {
                0
            },
            machine_busy,
            machine_iowait,
        }
    }

    pub fn minus(&self, before: &CpuSnapshot) -> Cpu {
        let s = |a: u64, b: u64| a.saturating_sub(b) as f64 / CLOCK_TICKS;
        Cpu {
            server_s: s(self.server, before.server),
            client_s: s(self.client, before.client),
            postgres_s: s(self.postgres, before.postgres),
            machine_busy_s: s(self.machine_busy, before.machine_busy),
            machine_iowait_s: s(self.machine_iowait, before.machine_iowait),
        }
    }
}

/// Waits (at most `limit`) until processes other than this one and `exclude` use less than
/// 0.15 of a CPU over two consecutive seconds: other work on a 2-core machine skews results.
pub async fn wait_for_quiet(limit: Duration, exclude: &[u32]) {
    if limit.is_zero() {
        return;
    }
    let deadline = Instant::now() + limit;
    let mut quiet_seconds = 0;
    let mut last_report = Instant::now();
    loop {
        let own = |pids: &[u32]| -> u64 {
            proc_ticks("self").map_or(0, |t| t.0)
                + pids
                    .iter()
                    .filter_map(|p| proc_ticks(&p.to_string()))
                    .map(|t| t.0)
                    .sum::<u64>()
        };
        let (b0, o0) = (machine_ticks().0, own(exclude));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (b1, o1) = (machine_ticks().0, own(exclude));
        let other =
            (b1.saturating_sub(b0)).saturating_sub(o1.saturating_sub(o0)) as f64 / CLOCK_TICKS;
        quiet_seconds = if other < 0.15 { quiet_seconds + 1 } else { 0 };
        if quiet_seconds >= 2 {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "machine still busy ({other:.2} CPUs used by other processes); measuring anyway"
            );
            return;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!("waiting for a quiet machine ({other:.2} CPUs used by other processes)");
            last_report = Instant::now();
        }
    }
}

/// A fresh database for one run (dropped with it).
pub struct Database {
    pub backend: Backend,
    pub url: String,
    pub sqlite_path: Option<PathBuf>,
    _db: TestDb,
}

/// A stored row as the server wrote it.
pub struct Stored {
    pub seq: i64,
    pub id: String,
    pub body: String,
    pub last_updated: String,
}

/// What the server writes besides the entry rows.
pub struct SideRows {
    /// (idempotency key, seq), in seq order.
    pub keys: Vec<(String, i64)>,
    /// search_index rows, in seq order.
    pub index: Vec<IndexStored>,
}

pub struct IndexStored {
    pub seq: i64,
    pub param: String,
    pub sys: Option<String>,
    pub val: Option<String>,
    pub exact: Option<String>,
    pub low: Option<i64>,
    pub high: Option<i64>,
}

impl SideRows {
    pub fn rows(&self) -> usize {
        self.keys.len() + self.index.len()
    }
}

/// The items of a seq-sorted slice with `lo <= seq <= hi`.
fn seq_range<T>(items: &[T], seq: impl Fn(&T) -> i64, lo: i64, hi: i64) -> &[T] {
    let a = items.partition_point(|x| seq(x) < lo);
    let b = items.partition_point(|x| seq(x) <= hi);
    &items[a..b]
}

/// `INSERT … VALUES (?,…),(…)…` (or `$n` placeholders for PostgreSQL).
fn values_sql(head: &str, cols: usize, rows: usize, pg: bool) -> String {
    let mut s = format!("{head} VALUES ");
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            if pg {
                s.push_str(&format!("${}", i * cols + c + 1));
            } else {
                s.push('?');
            }
        }
        s.push(')');
    }
    s
}

pub struct BatchStats {
    pub batches: usize,
    pub mean: f64,
    pub p50: usize,
    pub max: usize,
}

/// Commit batches as the writer formed them: every batch carries one commit stamp
/// (`meta.lastUpdated`), so runs of equal stamps in seq order are the batches.
pub fn batch_stats(rows: &[Stored]) -> BatchStats {
    let mut sizes: Vec<usize> = Vec::new();
    let mut prev: Option<&str> = None;
    for r in rows {
        if prev == Some(r.last_updated.as_str()) {
            if let Some(last) = sizes.last_mut() {
                *last += 1;
            }
        } else {
            sizes.push(1);
            prev = Some(&r.last_updated);
        }
    }
    let n = sizes.len();
    let mean = rows.len() as f64 / n.max(1) as f64;
    sizes.sort_unstable();
    BatchStats {
        batches: n,
        mean,
        p50: sizes.get(n / 2).copied().unwrap_or(0),
        max: sizes.last().copied().unwrap_or(0),
    }
}

/// A connection with the server's own SQLite settings (journal, synchronous, busy timeout,
/// pragmas), taken from the store rather than copied.
async fn sqlite_connection(path: &Path) -> Result<sqlx::SqliteConnection, String> {
    let store = SqliteStore::open(path)
        .await
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let conn = store
        .pool()
        .acquire()
        .await
        .map_err(|e| format!("connecting to {}: {e}", path.display()))?;
    Ok(conn.detach())
}

impl Database {
    pub async fn create(backend: Backend, dir: &Path, label: &str) -> Result<Self, String> {
        let db = TestDb::create(backend, Some(dir), &format!("bench_{label}"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Database {
            backend,
            url: db.url.clone(),
            sqlite_path: db.sqlite_path(),
            _db: db,
        })
    }

    /// Bytes the database holds in its tables and their indexes (SQLite: every page of
    /// the file, the WAL's included; PostgreSQL: the public schema's relations with their
    /// indexes and TOAST), for bytes-per-event figures.
    pub async fn stored_bytes(&self) -> Result<u64, String> {
        let map = |e: sqlx::Error| format!("measuring the database size: {e}");
        let bytes: i64 = match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path.as_deref().unwrap_or(Path::new(""));
                let mut c = sqlite_connection(path).await?;
                sqlx::query_scalar(
                    "SELECT (SELECT page_count FROM pragma_page_count()) \
                     * (SELECT page_size FROM pragma_page_size())",
                )
                .fetch_one(&mut c)
                .await
                .map_err(map)?
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.map_err(map)?;
                sqlx::query_scalar(
                    "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'public' AND c.relkind = 'r'",
                )
                .fetch_one(&mut c)
                .await
                .map_err(map)?
            }
        };
        Ok(bytes.max(0) as u64)
    }

    /// The newest entry's chain hash (hex): a baseline that replayed the server's rows must
    /// end on the server's head. (`vellum verify` would also demand the Merkle tree rows,
    /// which an entry-rows-only replay does not write.)
    pub async fn head_chain_hash(&self) -> Result<String, String> {
        const SQL: &str = "SELECT chain_hash FROM entry ORDER BY seq DESC LIMIT 1";
        let map = |e: sqlx::Error| format!("reading the head: {e}");
        let hash: Vec<u8> = match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path.as_deref().unwrap_or(Path::new(""));
                let mut c = sqlite_connection(path).await?;
                sqlx::query_scalar(SQL)
                    .fetch_one(&mut c)
                    .await
                    .map_err(map)?
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.map_err(map)?;
                sqlx::query_scalar(SQL)
                    .fetch_one(&mut c)
                    .await
                    .map_err(map)?
            }
        };
        Ok(hash.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Drops a PostgreSQL database now (SQLite files go with the run's directory).
    pub async fn drop_db(self) {
        drop(self);
    }

    pub async fn read_entries(&self) -> Result<Vec<Stored>, String> {
        const SQL: &str = "SELECT seq, id, body, last_updated FROM entry ORDER BY seq";
        let map = |e: sqlx::Error| format!("reading the server's entries: {e}");
        macro_rules! rows {
            ($rows:expr) => {
                $rows
                    .iter()
                    .map(|r| {
                        Ok(Stored {
                            seq: r.try_get("seq")?,
                            id: r.try_get("id")?,
                            body: r.try_get("body")?,
                            last_updated: r.try_get("last_updated")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(map)
            };
        }
        match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path.as_deref().unwrap_or(Path::new(""));
                let mut c = sqlite_connection(path).await?;
                let rows = sqlx::query(SQL).fetch_all(&mut c).await.map_err(map)?;
                rows!(rows)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.map_err(map)?;
                let rows = sqlx::query(SQL).fetch_all(&mut c).await.map_err(map)?;
                rows!(rows)
            }
        }
    }

    /// Inserts `rows` in transactions of `batch` rows, one multi-row INSERT each, with the
    /// hashes computed before the clock starts.
    pub async fn baseline_insert(&self, rows: &[Stored], batch: usize) -> Result<Baseline, String> {
        self.baseline_insert_with(rows, None, batch).await
    }

    /// The idempotency keys and search index rows the server stored, in seq order.
    pub async fn read_side_rows(&self) -> Result<SideRows, String> {
        const KEYS: &str = "SELECT key, seq FROM entry_key ORDER BY seq";
        const INDEX: &str =
            "SELECT seq, param, sys, val, exact, low, high FROM search_index ORDER BY seq";
        let map = |e: sqlx::Error| format!("reading the server's keys and index: {e}");
        macro_rules! side {
            ($c:expr) => {{
                let keys = sqlx::query(KEYS)
                    .fetch_all(&mut $c)
                    .await
                    .map_err(map)?
                    .iter()
                    .map(|r| Ok((r.try_get("key")?, r.try_get("seq")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(map)?;
                let index = sqlx::query(INDEX)
                    .fetch_all(&mut $c)
                    .await
                    .map_err(map)?
                    .iter()
                    .map(|r| {
                        Ok(IndexStored {
                            seq: r.try_get("seq")?,
                            param: r.try_get("param")?,
                            sys: r.try_get("sys")?,
                            val: r.try_get("val")?,
                            exact: r.try_get("exact")?,
                            low: r.try_get("low")?,
                            high: r.try_get("high")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(map)?;
                Ok(SideRows { keys, index })
            }};
        }
        match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path.as_deref().unwrap_or(Path::new(""));
                let mut c = sqlite_connection(path).await?;
                side!(c)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.map_err(map)?;
                side!(c)
            }
        }
    }

    /// As [`Database::baseline_insert`]; with `side`, each transaction also inserts the
    /// entries' idempotency keys (one multi-row INSERT) and search index rows (multi-row
    /// INSERTs of up to 1,000 rows), i.e. everything the server writes per batch.
    pub async fn baseline_insert_with(
        &self,
        rows: &[Stored],
        side: Option<&SideRows>,
        batch: usize,
    ) -> Result<Baseline, String> {
        struct Prepared<'a> {
            row: &'a Stored,
            body_sha256: hash::Hash,
            chain: hash::Hash,
            leaf: hash::Hash,
        }
        let mut prev = hash::GENESIS;
        let prepared: Vec<Prepared> = rows
            .iter()
            .map(|row| {
                let body_sha256 = hash::body_sha256(row.body.as_bytes());
                let chain = hash::chain_hash(&prev, row.seq as u64, &body_sha256);
                prev = chain;
                Prepared {
                    row,
                    body_sha256,
                    chain,
                    leaf: hash::leaf_hash(row.body.as_bytes()),
                }
            })
            .collect();
        let sql = |n: usize, pg: bool| {
            let mut s = String::from(
                "INSERT INTO entry (seq, id, body, body_sha256, chain_hash, leaf_hash, \
                 last_updated) VALUES ",
            );
            for i in 0..n {
                if i > 0 {
                    s.push(',');
                }
                if pg {
                    let b = i * 7;
                    s.push_str(&format!(
                        "(${},${},${},${},${},${},${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7
                    ));
                } else {
                    s.push_str("(?,?,?,?,?,?,?)");
                }
            }
            s
        };
        let map = |e: sqlx::Error| format!("baseline insert: {e}");
        macro_rules! insert_all {
            ($conn:expr, $pg:expr) => {{
                let full_sql = sql(batch, $pg);
                let mut commit_total = Duration::ZERO;
                let mut commits = 0usize;
                let started = Instant::now();
                for chunk in prepared.chunks(batch) {
                    let text = if chunk.len() == batch {
                        full_sql.clone()
                    } else {
                        sql(chunk.len(), $pg)
                    };
                    let t = Instant::now();
                    let mut tx = $conn.begin().await.map_err(map)?;
                    let mut q = sqlx::query(AssertSqlSafe(text));
                    for p in chunk {
                        q = q
                            .bind(p.row.seq)
                            .bind(p.row.id.as_str())
                            .bind(p.row.body.as_str())
                            .bind(&p.body_sha256[..])
                            .bind(&p.chain[..])
                            .bind(&p.leaf[..])
                            .bind(p.row.last_updated.as_str());
                    }
                    q.execute(&mut *tx).await.map_err(map)?;
                    if let Some(side) = side {
                        let (lo, hi) = (chunk[0].row.seq, chunk[chunk.len() - 1].row.seq);
                        let keys = seq_range(&side.keys, |k| k.1, lo, hi);
                        if !keys.is_empty() {
                            let text =
                                values_sql("INSERT INTO entry_key (key, seq)", 2, keys.len(), $pg);
                            let mut q = sqlx::query(AssertSqlSafe(text));
                            for (k, seq) in keys {
                                q = q.bind(k.as_str()).bind(*seq);
                            }
                            q.execute(&mut *tx).await.map_err(map)?;
                        }
                        let index = seq_range(&side.index, |r| r.seq, lo, hi);
                        for part in index.chunks(1000) {
                            let text = values_sql(
                                "INSERT INTO search_index (seq, param, sys, val, exact, low, high)",
                                7,
                                part.len(),
                                $pg,
                            );
                            let mut q = sqlx::query(AssertSqlSafe(text));
                            for r in part {
                                q = q
                                    .bind(r.seq)
                                    .bind(r.param.as_str())
                                    .bind(r.sys.as_deref())
                                    .bind(r.val.as_deref())
                                    .bind(r.exact.as_deref())
                                    .bind(r.low)
                                    .bind(r.high);
                            }
                            q.execute(&mut *tx).await.map_err(map)?;
                        }
                    }
                    tx.commit().await.map_err(map)?;
                    commit_total += t.elapsed();
                    commits += 1;
                }
                (started.elapsed(), commit_total, commits)
            }};
        }
        let (elapsed, total, commits) = match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path.as_deref().unwrap_or(Path::new(""));
                let mut c = sqlite_connection(path).await?;
                insert_all!(c, false)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.map_err(map)?;
                insert_all!(c, true)
            }
        };
        Ok(Baseline {
            batch,
            rows: rows.len(),
            elapsed,
            mean_commit_ms: total.as_secs_f64() * 1000.0 / commits.max(1) as f64,
            head_matches: false,
        })
    }
}
