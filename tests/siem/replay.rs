//! A restarted detection evaluator rebuilds its windows from the tail of
//! the stream only (docs/siem.md, "Detection rules"): over a store whose
//! history spans 30 days of commit time, a restart reads again just the
//! entries committed within the longest window plus 7 days before its
//! position — counted in `/metrics` — and still continues a window opened
//! before the restart, never appends an alert twice, and ends with exactly
//! the alerts a replay from seq 1 finds. Both backends.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;
use vellum::config::{DatabaseUrl, DetectionSettings, RawDetection};
use vellum::fhir::create::prepare_audit_event;
use vellum::ledger::{Ledger, WriterSettings};
use vellum::store::{AnyStore, Store};
use vellum_testkit::*;

use super::rules::{alerts_and_caught_up, detail, guard, post_guard};
use super::{metric, metrics, wait_until};

const FILLER: i64 = 3000;
const ENV: [(&str, &str); 5] = [
    ("VELLUM_DETECTION_ENABLED", "true"),
    ("VELLUM_DETECTION_POLL_MS", "50"),
    ("VELLUM_DETECTION_RULES", "prompt-injection-spike"),
    ("VELLUM_DETECTION_INJECTION_MAX", "1"),
    ("VELLUM_DETECTION_INJECTION_WINDOW_MINUTES", "60"),
];

fn settings() -> Arc<DetectionSettings> {
    Arc::new(
        DetectionSettings::validate(&RawDetection {
            rules: "prompt-injection-spike".into(),
            injection_max: 1,
            injection_window_minutes: 60,
            ..RawDetection::default()
        })
        .expect("settings"),
    )
}

fn attempt(recorded: OffsetDateTime) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110113", "display": "Security Alert"},
        "subtype": [{"system": "https://vellum-audit.org/fhir/CodeSystem/radiology-ai-event", "code": "prompt-injection-attempt"}],
        "action": "E", "recorded": vellum::ledger::stamp(recorded), "outcome": "4",
        "agent": [{"who": {"display": "guard"}, "requestor": true}],
        "source": {"observer": {"display": "ai-gateway"}}
    })
}

/// The recorded time of the seeded attempts of each window, and their ids.
struct Seeded {
    fired: OffsetDateTime,
    open: OffsetDateTime,
    open_id: String,
    old: OffsetDateTime,
}

/// Fills the store through a ledger whose clock runs over the 30 days
/// before yesterday: filler events, with single prompt-injection attempts
/// in three windows (21 days ago, outside the replay span; three days ago, a
/// pair that fires; a day and a half ago, one that leaves its window open).
async fn seed(db_url: &str) -> Seeded {
    let store = AnyStore::connect(&DatabaseUrl::parse(db_url).expect("url"), None)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let now = OffsetDateTime::now_utc();
    let start = now - time::Duration::days(31);
    let step = time::Duration::days(30) / FILLER as u32;
    let clock_us = Arc::new(AtomicI64::new(0));
    let c = clock_us.clone();
    let ledger = Ledger::start_with_clock(
        store,
        WriterSettings::default(),
        Arc::new(move || {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.load(Ordering::SeqCst)) * 1000)
                .expect("clock")
        }),
    );
    let at = |i: i64| start + step * i as u32;
    let (old_i, fired_i, open_i) = (FILLER / 3, FILLER * 28 / 30, FILLER * 29 / 30 + 50);
    let mut seeded = Seeded {
        fired: at(fired_i) - time::Duration::minutes(1),
        open: at(open_i) - time::Duration::minutes(1),
        open_id: String::new(),
        old: at(old_i) - time::Duration::minutes(1),
    };
    for i in 0..FILLER {
        let body = if i == old_i {
            attempt(seeded.old)
        } else if i == fired_i || i == fired_i + 1 {
            attempt(seeded.fired)
        } else if i == open_i {
            attempt(seeded.open)
        } else {
            sample_event(i as u64)
        };
        clock_us.store(
            i64::try_from(at(i).unix_timestamp_nanos() / 1000).expect("µs"),
            Ordering::SeqCst,
        );
        let draft = prepare_audit_event(body.to_string().as_bytes()).expect("valid");
        let c = ledger.append(draft).await.expect("append");
        if i == open_i {
            seeded.open_id = c.receipt.id.clone();
        }
    }
    seeded
}

backend_tests! {
    async fn a_restart_replays_only_the_tail_and_appends_no_alert_twice(backend) {
        let db = TestDb::new(backend).await;
        let seeded = seed(&db.url).await;
        let mut first = spawn_server_process(&db.url, &ENV);
        first.wait_ready().await;
        let store = AnyStore::connect(&DatabaseUrl::parse(&db.url).expect("url"), None).await.expect("store");
        let ledger = Ledger::start(store.clone(), WriterSettings::default());
        wait_until("the first evaluation", Duration::from_secs(120), || async {
            let (a, done) = alerts_and_caught_up(&ledger, &store).await;
            a.len() == 1 && done
        }).await;
        // A first start has no position: nothing is read again.
        assert_eq!(metric(&metrics(&first.base).await, "vellum_detection_replayed_entries"), 0);
        first.child.kill().expect("kill -9");
        first.child.wait().expect("reaped");

        // What a restart must read again: the entries up to the position
        // committed within the longest window + 7 days before it.
        let position = ledger.export_position("detection").await.expect("position");
        let entries = store.entries_after(0, 1_000_000).await.expect("entries");
        let committed = |e: &vellum::store::StoredEntry| vellum::ledger::parse_stamp(&e.last_updated).expect("stamp");
        let last = entries.iter().find(|e| e.seq == position).map(committed).expect("position entry");
        let horizon = last - vellum::detection::replay_span(&settings());
        let expected = entries.iter().filter(|e| e.seq <= position && committed(e) >= horizon).count() as u64;
        assert!(expected > 0 && expected < entries.len() as u64 / 2, "{backend:?}: {expected} of {}", entries.len());

        let mut second = spawn_server_process(&db.url, &ENV);
        second.wait_ready().await;
        // The gauge is set once the windows are rebuilt; a different count
        // never turns into the expected one.
        wait_until("the tail replayed", Duration::from_secs(60), || async {
            metric(&metrics(&second.base).await, "vellum_detection_replayed_entries") != 0
        }).await;
        assert_eq!(
            metric(&metrics(&second.base).await, "vellum_detection_replayed_entries"),
            expected,
            "{backend:?}"
        );
        // The fired window stays fired, the open window continues (its
        // attempt from before the restart was read again), and the window
        // outside the span is only joined by a late count of its own.
        for (id, t) in [("again-fired", seeded.fired), ("second-open", seeded.open), ("late-old", seeded.old)] {
            post_guard(&second.base, &guard(id, "prompt-injection-attempt", &vellum::ledger::stamp(t))).await;
        }
        wait_until("the open window's alert", Duration::from_secs(60), || async {
            let (a, done) = alerts_and_caught_up(&ledger, &store).await;
            a.len() >= 2 && done
        }).await;
        let (alerts, _) = alerts_and_caught_up(&ledger, &store).await;
        let window = |t: OffsetDateTime| {
            let h = t.unix_timestamp().div_euclid(3600) * 3600;
            vellum::ledger::stamp(OffsetDateTime::from_unix_timestamp(h).expect("hour"))
        };
        let windows: Vec<&str> = alerts.iter().map(|a| detail(a, "window-start")).collect();
        assert_eq!(windows, vec![window(seeded.fired), window(seeded.open)], "{backend:?}: one alert per window");
        assert_eq!(detail(&alerts[1], "count"), "2", "{backend:?}");
        assert_eq!(
            alerts[1]["entity"][1]["what"]["reference"],
            format!("AuditEvent/{}", seeded.open_id),
            "{backend:?}: the attempt from before the restart"
        );
        // A replay from seq 1 finds exactly the alerts appended.
        let report = vellum::detection::recompute(&ledger, settings(), None, None).await.expect("recompute");
        let found: Vec<String> = report.alerts.iter().map(|a| a.window_start.clone()).collect();
        assert_eq!(found, windows, "{backend:?}");
        second.child.kill().expect("kill");
        second.child.wait().expect("reaped");
    }
}

/// Start-up replay before and after resuming from the tail: a SQLite
/// store of 100 000 events committed over 100 days (PHI reads by 200 users,
/// guard findings, failed logins, inferences), the rules at their defaults
/// (longest window one day: the replay span is 8 days). Times, best of 3,
/// in the same run: rebuilding the windows from seq 1 (what every start did
/// before) and [`vellum::detection::resume`].
///
/// cargo test --test siem -- --ignored --nocapture start_up_replay
#[tokio::test]
#[ignore = "a measurement; run alone with --ignored --nocapture"]
async fn start_up_replay_from_seq_1_against_the_tail() {
    use std::time::Instant;
    let events: i64 = std::env::var("REPLAY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let days = 100i64;
    let db = TestDb::new(Backend::Sqlite).await;
    let store = AnyStore::connect(&DatabaseUrl::parse(&db.url).expect("url"), None)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let clock_us = Arc::new(AtomicI64::new(0));
    let c = clock_us.clone();
    let ledger = Ledger::start_with_clock(
        store,
        WriterSettings::default(),
        Arc::new(move || {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.load(Ordering::SeqCst)) * 1000)
                .expect("clock")
        }),
    );
    let start = OffsetDateTime::now_utc() - time::Duration::days(days);
    let per_batch = 500i64;
    let step = time::Duration::seconds(days * 86_400 * per_batch / events);
    let filled = Instant::now();
    let mut n = 0i64;
    while n < events {
        let at = start + step * (n / per_batch) as i32;
        clock_us.store(
            i64::try_from(at.unix_timestamp_nanos() / 1000).expect("µs"),
            Ordering::SeqCst,
        );
        let drafts = (n..(n + per_batch).min(events))
            .map(|i| {
                let recorded = vellum::ledger::stamp(at - time::Duration::seconds(i % 600));
                let body = match i % 20 {
                    0 => attempt(at - time::Duration::seconds(i % 600)),
                    1 => json!({
                        "resourceType": "AuditEvent",
                        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"},
                        "action": "E", "recorded": recorded, "outcome": "4",
                        "agent": [{"who": {"display": "unauthenticated client"}, "requestor": true,
                                   "network": {"address": format!("10.0.0.{}", i % 50), "type": "2"}}],
                        "source": {"observer": {"display": "vellum"}}
                    }),
                    2..=5 => sample_event(i as u64),
                    _ => json!({
                        "resourceType": "AuditEvent",
                        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record"},
                        "action": "R", "recorded": recorded, "outcome": "0",
                        "agent": [{"who": {"identifier": {"system": "urn:oid:1.2.3.4", "value": format!("rad-{}", i % 200)}}, "requestor": true}],
                        "source": {"observer": {"display": "ris-01"}},
                        "entity": [{"what": {"reference": format!("Patient/p{}", i % 20_000)},
                                    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}]
                    }),
                };
                prepare_audit_event(body.to_string().as_bytes()).expect("valid")
            })
            .collect();
        ledger.append_all(drafts).await.expect("append");
        n += per_batch;
    }
    eprintln!(
        "filled {events} events over {days} days in {:.1?}",
        filled.elapsed()
    );
    let settings =
        Arc::new(DetectionSettings::validate(&RawDetection::default()).expect("defaults"));
    let position = ledger.head().await.expect("head").seq;
    let (mut full, mut tail) = (Duration::MAX, Duration::MAX);
    let mut replayed = 0;
    for _ in 0..3 {
        // Before: every start rebuilt the windows from seq 1.
        let t = Instant::now();
        let mut d = vellum::detection::Detector::new(settings.clone());
        let mut pos = 0;
        while pos < position {
            let batch = ledger.entries_after(pos, 2000).await.expect("read");
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            for e in &batch {
                d.feed(e);
            }
            pos = last;
        }
        full = full.min(t.elapsed());
        let t = Instant::now();
        let r = vellum::detection::resume(&ledger, settings.clone(), position)
            .await
            .expect("resume");
        tail = tail.min(t.elapsed());
        replayed = r.replayed;
    }
    println!(
        "entries: {position}; replay span {} h",
        vellum::detection::replay_span(&settings).whole_hours()
    );
    println!("from seq 1 (before): {full:.2?} for {position} entries");
    println!("from the tail (after): {tail:.2?} for {replayed} entries");
    println!(
        "after / before: {:.3}",
        tail.as_secs_f64() / full.as_secs_f64()
    );
}
