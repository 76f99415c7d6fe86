//! Cost of the detection rules: fills a fresh SQLite store with N events
//! through the real ledger (PHI reads by 200 users over a year, AI guard
//! findings, failed logins, AI inferences), then times, in the same run,
//! (1) a plain walk of the stored entries through the ledger (read in
//! batches, each body parsed as JSON — what any reader of the stream pays)
//! and (2) `vellum::detection::recompute`, the same walk feeding every rule.
//! Reports both rates and their ratio; the walk is the baseline.
//!
//! cargo bench --bench detection -- [--events 200000] [--rounds 3]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vellum::config::{DatabaseUrl, DetectionSettings, RawDetection};
use vellum::fhir::create::prepare_audit_event;
use vellum::ledger::{Ledger, WriterSettings};
use vellum::store::{AnyStore, Store};

const USERS: u64 = 200;
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// Cheap deterministic pseudo-random numbers (no extra crate for a bench).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Event `n`: a PHI read (70 %), an inference (20 %), a guard finding (5 %)
/// or a failed login (5 %), at a random second of 2026.
fn event(n: u64, rng: &mut Rng) -> Value {
    let t = time::macros::datetime!(2026-01-01 00:00 UTC)
        + time::Duration::seconds(rng.below(365 * 86_400) as i64);
    let recorded = vellum::ledger::stamp(t);
    let user = rng.below(USERS);
    let patient = json!({
        "what": {"reference": format!("Patient/p{}", rng.below(20_000))},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
    });
    let agent = json!({"who": {"identifier": {"system": "urn:oid:1.2.3.4", "value": format!("rad-{user}")}}, "requestor": true});
    match rng.below(100) {
        0..=69 => json!({
            "resourceType": "AuditEvent",
            "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
            "action": "R", "recorded": recorded, "outcome": "0",
            "agent": [agent], "source": {"observer": {"display": "ris-01"}},
            "entity": [patient]
        }),
        70..=89 => json!({
            "resourceType": "AuditEvent",
            "type": {"system": DCM, "code": "110112", "display": "Query"},
            "subtype": [{"system": "https://vellum-audit.org/fhir/CodeSystem/radiology-ai-event", "code": "inference"}],
            "action": "E", "recorded": recorded, "outcome": "0",
            "agent": [agent], "source": {"observer": {"display": "pacs-01"}},
            "entity": [{"what": {"identifier": {"system": "urn:dicom:uid", "value": format!("urn:oid:1.2.826.0.1.3680043.8.498.{n}")}},
                        "detail": [{"type": "confidence", "valueString": "0.940"}]}, patient]
        }),
        90..=94 => json!({
            "resourceType": "AuditEvent",
            "type": {"system": DCM, "code": "110113", "display": "Security Alert"},
            "subtype": [{"system": "https://vellum-audit.org/fhir/CodeSystem/radiology-ai-event",
                         "code": if n.is_multiple_of(2) { "prompt-injection-attempt" } else { "ai-output-phi-flagged" }}],
            "action": "E", "recorded": recorded, "outcome": "4",
            "agent": [{"who": {"display": "guard"}, "requestor": true}],
            "source": {"observer": {"display": "ai-gateway"}}
        }),
        _ => json!({
            "resourceType": "AuditEvent",
            "type": {"system": DCM, "code": "110114", "display": "User Authentication"},
            "action": "E", "recorded": recorded, "outcome": "4",
            "agent": [{"who": {"display": "unauthenticated client"}, "requestor": true,
                       "network": {"address": format!("10.0.0.{}", rng.below(50)), "type": "2"}}],
            "source": {"observer": {"display": "vellum"}}
        }),
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// The plain walk: every entry read through the ledger and parsed.
async fn walk(ledger: &Ledger) -> u64 {
    let mut pos = 0;
    let mut n = 0u64;
    loop {
        let batch = ledger.entries_after(pos, 2000).await.expect("read");
        let Some(last) = batch.last().map(|e| e.seq) else {
            break;
        };
        for e in &batch {
            let v: Value = serde_json::from_str(&e.body).expect("json");
            n += u64::from(v.is_object());
        }
        pos = last;
    }
    n
}

fn main() {
    let events = arg("--events", 200_000);
    let rounds = arg("--rounds", 3).max(1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("detection.db").display());
        let store = AnyStore::connect(&DatabaseUrl::parse(&url).expect("url"), None)
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let ledger = Ledger::start(store, WriterSettings::default());
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let started = Instant::now();
        let mut next = 0;
        while next < events {
            let to = (next + 1000).min(events);
            let drafts = (next..to)
                .map(|n| {
                    prepare_audit_event(event(n, &mut rng).to_string().as_bytes()).expect("valid")
                })
                .collect();
            ledger.append_all(drafts).await.expect("append");
            next = to;
        }
        eprintln!("filled {events} events in {:.1?}", started.elapsed());
        let settings =
            Arc::new(DetectionSettings::validate(&RawDetection::default()).expect("defaults"));
        let (mut best_walk, mut best_rules) = (Duration::MAX, Duration::MAX);
        let mut alerts = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            assert_eq!(walk(&ledger).await, events);
            best_walk = best_walk.min(t.elapsed());
            let t = Instant::now();
            let r = vellum::detection::recompute(&ledger, settings.clone(), None, None)
                .await
                .expect("recompute");
            best_rules = best_rules.min(t.elapsed());
            assert_eq!(r.entries, events);
            alerts = r.alerts.len();
        }
        let rate = |d: Duration| events as f64 / d.as_secs_f64();
        println!("events: {events}, rounds: {rounds} (best of), alerts found: {alerts}");
        println!(
            "plain ledger walk (read + parse): {:.2?} = {:.0} events/s",
            best_walk,
            rate(best_walk)
        );
        println!(
            "all six rules (recompute):        {:.2?} = {:.0} events/s",
            best_rules,
            rate(best_rules)
        );
        println!(
            "rules / walk time: {:.2}x",
            best_rules.as_secs_f64() / best_walk.as_secs_f64()
        );
    });
}
