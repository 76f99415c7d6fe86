//! What the evidence costs: append throughput with and without the Merkle
//! tree (same run, alternating), then, at a large size, checkpoint and
//! proof times and verify's entries/s (chain only vs. chain + tree +
//! checkpoints). `cargo run --release -p vellum-ledger --example
//! evidence_bench -- [sqlite|postgres] [append N] [large N] [runs R]`
//! (R alternating runs without and with the tree, default 3; their times
//! vary with the file system's fsyncs, so more runs give a steadier median).

use std::sync::Arc;
use std::time::Instant;

use vellum_ledger::note::NoteSigner;
use vellum_ledger::store::{benchmark_without_tree, AnyStore, Store};
use vellum_ledger::testing::{Backend, TestDb};
use vellum_ledger::{DatabaseUrl, Draft, Ledger, WriterSettings, STAMP_PLACEHOLDER};

fn draft(n: u64) -> Draft {
    let id = id_of(n);
    let body = format!(
        r#"{{"action":"E","agent":[{{"requestor":true,"who":{{"display":"dr {n}"}}}}],"id":"{id}","meta":{{"lastUpdated":"{STAMP_PLACEHOLDER}","versionId":"1"}},"recorded":"2026-01-01T00:00:00Z","resourceType":"AuditEvent","source":{{"observer":{{"display":"pacs"}}}},"type":{{"code":"110112","system":"http://dicom.nema.org/resources/ontology/DCM"}}}}"#
    );
    let at = body.find(STAMP_PLACEHOLDER).expect("placeholder");
    Draft::with_index(id, body.into_bytes(), at, vec![]).expect("draft")
}

/// Event `n`'s id, known to the bench so reads by id can be timed.
fn id_of(n: u64) -> String {
    uuid::Uuid::from_u64_pair(0x7665_6c6c_756d, n).to_string()
}

/// Median of `REPS` timings of `f(r)` in milliseconds (one timing is noise).
const REPS: u64 = 21;
async fn median_ms<F, Fut>(mut f: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut v = Vec::new();
    for r in 0..REPS {
        let t = Instant::now();
        f(r).await;
        v.push(ms(t));
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("number"));
    v[v.len() / 2]
}

async fn open(db: &TestDb) -> (Ledger, AnyStore) {
    let url = DatabaseUrl::parse(&db.url).expect("url");
    let store = AnyStore::connect(&url, None).await.expect("connect");
    store.migrate().await.expect("migrate");
    (
        Ledger::start(store.clone(), WriterSettings::default()),
        store,
    )
}

/// This process's CPU time so far (user + system) in µs, from
/// `/proc/self/stat` (10 ms ticks; `None` elsewhere). Unlike the rate it
/// does not move with fsync latency, so it shows a writer-side cost steadily
/// (on SQLite, where the database runs in this process).
fn cpu_us() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10_000.0)
}

/// `n` single-event appends from 64 concurrent clients: events/s and this
/// process's CPU µs per event.
async fn append_rate(backend: Backend, n: u64, tree: bool) -> (f64, f64) {
    let db = TestDb::new(backend).await;
    let (ledger, _) = open(&db).await;
    benchmark_without_tree(!tree);
    let ledger = Arc::new(ledger);
    let cpu = cpu_us();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..64u64 {
        let l = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while i < n {
                loop {
                    match l.append(draft(i)).await {
                        Ok(_) => break,
                        Err(vellum_ledger::AppendError::Overloaded) => {
                            tokio::task::yield_now().await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                i += 64;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let cpu = cpu_us()
        .zip(cpu)
        .map_or(f64::NAN, |(b, a)| (b - a) / n as f64);
    benchmark_without_tree(false);
    (rate, cpu)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.get(1).map(String::as_str) {
        Some("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let n: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let large: u64 = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(3);
    println!("backend {}", backend.name());
    let (mut off, mut on, mut off_cpu, mut on_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (rate, cpu) = append_rate(backend, n, false).await;
        off.push(rate);
        off_cpu.push(cpu);
        let (rate, cpu) = append_rate(backend, n, true).await;
        on.push(rate);
        on_cpu.push(cpu);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).expect("number"));
        v[v.len() / 2]
    };
    let (a, b) = (med(&mut off), med(&mut on));
    println!("append {n} events, 64 clients: without tree {off:.0?} ev/s, with tree {on:.0?} ev/s; medians {a:.0} vs {b:.0}: ratio {:.3}", b / a);
    let (a, b) = (med(&mut off_cpu), med(&mut on_cpu));
    println!("  this process's CPU per event: without tree {off_cpu:.1?} µs, with tree {on_cpu:.1?} µs; medians {a:.2} vs {b:.2} µs: the tree costs {:.2} µs ({:.1} %)", b - a, (b - a) / a * 100.0);

    // A large ledger, filled in batches of 1000.
    let db = TestDb::new(backend).await;
    let (ledger, store) = open(&db).await;
    let t = Instant::now();
    let mut i = 0;
    while i < large {
        let k = 1000.min(large - i);
        ledger
            .append_all((i..i + k).map(draft).collect())
            .await
            .expect("append");
        i += k;
    }
    println!(
        "filled {large} entries in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let key = NoteSigner::generate("bench.example/log").expect("key");
    let l = &ledger;
    let key_ref = &key;
    // Same-run baselines: a read of one entry by id, and one single-event
    // append (a commit, as a checkpoint's insert is).
    let read = median_ms(|r| async move {
        let n = (large / 3 + r * 7_919) % large;
        l.read(&id_of(n)).await.expect("read").expect("entry");
    })
    .await;
    println!("baseline, read one entry by id at {large}: {read:.2} ms (median of {REPS})");
    let append = median_ms(|r| async move {
        l.append(draft(large + r)).await.expect("append");
    })
    .await;
    println!("baseline, append one event at {large}: {append:.2} ms (median of {REPS})");
    // One checkpoint per size: each after one more append.
    let cp = median_ms(|r| async move {
        l.append(draft(large + REPS + r)).await.expect("append");
        l.checkpoint(key_ref).await.expect("checkpoint");
    })
    .await
        - append;
    let large = large + 2 * REPS;
    println!(
        "checkpoint (sign + store) at {large}: {cp:.2} ms (median of {REPS}, the append before it subtracted): {:.1}x a read, {:.1}x an append",
        cp / read,
        cp / append
    );
    let root = median_ms(|r| async move {
        let _ = l.tree_root(large - 1 - r * 101).await.expect("root");
    })
    .await;
    println!(
        "root of ~{}: {root:.2} ms (median of {REPS}): {:.1}x a read",
        large - 1,
        root / read
    );
    let hashes = l
        .inclusion_proof(large / 3, large)
        .await
        .expect("proof")
        .expect("range")
        .proof
        .len();
    let incl = median_ms(|r| async move {
        let seq = (large / 3 + r * 7_919) % large + 1;
        l.inclusion_proof(seq, large)
            .await
            .expect("proof")
            .expect("range");
    })
    .await;
    println!(
        "inclusion proof in {large}: {incl:.2} ms (median of {REPS}, {hashes} hashes): {:.1}x a read",
        incl / read
    );
    let chashes = l
        .consistency_proof(large / 2 + 7, large)
        .await
        .expect("proof")
        .expect("range")
        .len();
    let cons = median_ms(|r| async move {
        l.consistency_proof(large / 2 + 7 + r * 1_013, large)
            .await
            .expect("proof")
            .expect("range");
    })
    .await;
    println!(
        "consistency proof ~{} -> {large}: {cons:.2} ms (median of {REPS}, {chashes} hashes): {:.1}x a read",
        large / 2 + 7,
        cons / read
    );
    let t = Instant::now();
    let v = vellum_ledger::verify::verify(&store).await.expect("verify");
    let chain_s = t.elapsed().as_secs_f64();
    assert!(v.ok());
    let t = Instant::now();
    let v = ledger
        .verify_all(Some(&key.verifier()))
        .await
        .expect("verify");
    let all_s = t.elapsed().as_secs_f64();
    assert!(v.ok(), "{v:?}");
    println!(
        "verify {large}: chain only {:.0} entries/s; chain + tree + checkpoints {:.0} entries/s",
        large as f64 / chain_s,
        large as f64 / all_s
    );
}
