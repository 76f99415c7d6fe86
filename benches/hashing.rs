//! CPU cost of the per-event work on the append path, on a realistic ≈2 KB
//! radiology-AI AuditEvent (`fixtures/auditevents/radiology-ai-inference-load.json`,
//! the first event `benches/load.rs` posts).
//!
//! `cargo bench --bench hashing` (criterion). `scripts/bench` adds the
//! `openssl` SHA-256 baseline on the same canonical bytes.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vellum::fhir::create::prepare_audit_event;
use vellum::fhir::validate::validate_audit_event;
use vellum::ledger::{canonical, hash};

/// Pretty-printed, as a client might send it.
const EVENT: &[u8] = include_bytes!("../fixtures/auditevents/radiology-ai-inference-load.json");

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

fn canonical_json(c: &mut Criterion) {
    let canonical_bytes = canonical::canonicalize(EVENT).expect("fixture is valid JSON");
    let mut g = c.benchmark_group("canonical");
    g.throughput(Throughput::Bytes(EVENT.len() as u64));
    g.bench_function("canonicalize (pretty input)", |b| {
        b.iter(|| canonical::canonicalize(black_box(EVENT)).unwrap())
    });
    g.throughput(Throughput::Bytes(canonical_bytes.len() as u64));
    g.bench_function("canonicalize (compact input)", |b| {
        b.iter(|| canonical::canonicalize(black_box(&canonical_bytes)).unwrap())
    });
    g.bench_function("parse", |b| {
        b.iter(|| canonical::parse(black_box(&canonical_bytes)).unwrap())
    });
    let tree = canonical::parse(&canonical_bytes).unwrap();
    g.bench_function("serialise", |b| {
        b.iter(|| canonical::to_canonical(black_box(&tree)))
    });
    g.finish();
}

fn hashes(c: &mut Criterion) {
    let body = canonical::canonicalize(EVENT).expect("fixture is valid JSON");
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("body_sha256", |b| {
        b.iter(|| hash::body_sha256(black_box(&body)))
    });
    let prev = [7u8; 32];
    g.bench_function("body_sha256 + chain_hash", |b| {
        b.iter(|| {
            let h = hash::body_sha256(black_box(&body));
            hash::chain_hash(black_box(&prev), 42, &h)
        })
    });
    // What the writer does per event: body hash, chain link and Merkle leaf.
    g.bench_function("body_sha256 + chain_hash + leaf_hash", |b| {
        b.iter(|| {
            let h = hash::body_sha256(black_box(&body));
            (
                hash::chain_hash(black_box(&prev), 42, &h),
                hash::leaf_hash(black_box(&body)),
            )
        })
    });
    g.finish();

    // Raw SHA-256 throughput on large inputs, for comparison with `openssl dgst -sha256`.
    let mut g = c.benchmark_group("sha256 throughput");
    for size in [body.len(), 1 << 20] {
        let data: Vec<u8> = body.iter().copied().cycle().take(size).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| hash::body_sha256(black_box(d)))
        });
    }
    g.finish();
}

fn prepare(c: &mut Criterion) {
    let compact = canonical::canonicalize(EVENT).expect("fixture is valid JSON");
    let mut g = c.benchmark_group("prepare");
    g.throughput(Throughput::Elements(1));
    // Full create path before the writer: parse, fhirbolt structure check,
    // vellum's rules, id/meta, canonical serialisation.
    g.bench_function("prepare_audit_event (pretty input)", |b| {
        b.iter(|| prepare_audit_event(black_box(EVENT)).unwrap())
    });
    g.bench_function("prepare_audit_event (compact input)", |b| {
        b.iter(|| prepare_audit_event(black_box(&compact)).unwrap())
    });
    // Its parts, to see where the time goes.
    g.bench_function("part: fhirbolt strict structure check", |b| {
        b.iter(|| fhir_model::check_audit_event_json(black_box(&compact)).unwrap())
    });
    let tree = canonical::parse(&compact).unwrap();
    g.bench_function("part: validate_audit_event", |b| {
        b.iter(|| validate_audit_event(black_box(&tree)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = canonical_json, hashes, prepare
}
criterion_main!(benches);
