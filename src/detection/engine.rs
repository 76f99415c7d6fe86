//! The rules as one deterministic function of the committed stream: fed
//! the entries in `seq` order, a [`Detector`] yields each alert at the
//! entry that trips it. The worker inside `serve` and the recomputation
//! over a stored period feed it the same entries from seq 1, so both find
//! the same alerts with the same content.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;
use vellum_ledger::store::StoredEntry;

use super::facts::{self, Fact};
use crate::config::{CountRule, DetectionSettings, RuleId};

/// A window counts the events committed up to this long after it ended.
/// An event committed later (a late import) is counted with the other late
/// events of its window committed in the same such period, periods counted
/// from 1970-01-01 in commit time. Both make a window's count a function
/// of the entries committed in a bounded span, which is what lets a
/// restarted evaluator rebuild its windows from the tail of the stream
/// ([`replay_span`]).
pub const LATENESS: time::Duration = time::Duration::days(7);
/// Windows no event can join any more are dropped from memory at every
/// seq that is a multiple of this (when does not change any count).
const PRUNE_EVERY: i64 = 10_000;

/// How far before the commit time of the last evaluated entry a restarted
/// evaluator must start reading to rebuild every window a later entry can
/// join: the longest count window plus [`LATENESS`]. Every entry counted
/// in such a window was committed within that span (an event counts at
/// its `recorded` time, never later than its commit time).
pub fn replay_span(settings: &DetectionSettings) -> time::Duration {
    let longest = [
        settings.phi_reads,
        settings.after_hours,
        settings.injection,
        settings.auth_failures,
    ]
    .iter()
    .map(|c| c.window)
    .max()
    .unwrap_or_default();
    LATENESS + longest
}

/// A stored event an alert names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trigger {
    pub seq: i64,
    pub id: String,
}

/// One firing of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub rule: RuleId,
    pub subject: String,
    pub window_start: OffsetDateTime,
    /// Exclusive; equal to the start for rules that fire on each event.
    pub window_end: OffsetDateTime,
    /// Fires when the count exceeds this.
    pub threshold: u64,
    /// Events in the window when the rule fired.
    pub count: u64,
    /// The first triggering events, at most `max_listed_events`.
    pub events: Vec<Trigger>,
    /// The entry that tripped the rule: its seq and commit time.
    pub seq: i64,
    pub committed: String,
}

impl Alert {
    /// The idempotency key: one alert per rule, subject and window.
    pub fn key(&self) -> String {
        use sha2::Digest;
        let subject = hex::encode(sha2::Sha256::digest(self.subject.as_bytes()));
        format!(
            "detection:{}:{}:{}",
            self.rule.as_str(),
            self.window_start.unix_timestamp(),
            subject.get(..32).unwrap_or(&subject)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    rule: RuleId,
    subject: String,
    window: i64,
    /// For events committed more than [`LATENESS`] after the window ended:
    /// the [`LATENESS`]-long commit period they were committed in.
    late: Option<i64>,
}

#[derive(Debug)]
struct Bucket {
    count: u64,
    listed: Vec<Trigger>,
    fired: bool,
    end: OffsetDateTime,
}

/// The [`LATENESS`]-long commit period `t` falls in.
fn late_period(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(LATENESS.whole_seconds())
}

/// The rules' state over the stream read so far.
pub struct Detector {
    settings: Arc<DetectionSettings>,
    buckets: HashMap<BucketKey, Bucket>,
}

/// The event's own time (`recorded`), else its commit time.
fn event_time(event: &Value, entry: &StoredEntry) -> Option<OffsetDateTime> {
    event["recorded"]
        .as_str()
        .and_then(vellum_ledger::parse_stamp)
        .or_else(|| vellum_ledger::parse_stamp(&entry.last_updated))
}

impl Detector {
    pub fn new(settings: Arc<DetectionSettings>) -> Self {
        Detector {
            settings,
            buckets: HashMap::new(),
        }
    }

    fn count_rule(&self, rule: RuleId) -> Option<CountRule> {
        let s = &self.settings;
        match rule {
            RuleId::PhiReadVolume => Some(s.phi_reads),
            RuleId::AfterHoursAccess => Some(s.after_hours),
            RuleId::PromptInjectionSpike => Some(s.injection),
            RuleId::AuthFailures => Some(s.auth_failures),
            RuleId::AiOutputPhi | RuleId::PixelDigestMismatch => None,
        }
    }

    /// Windows open (tracked) now.
    pub fn open_windows(&self) -> usize {
        self.buckets.len()
    }

    /// Feeds the next entry (in seq order); the alerts it trips.
    pub fn feed(&mut self, entry: &StoredEntry) -> Vec<Alert> {
        let committed = vellum_ledger::parse_stamp(&entry.last_updated);
        if entry.seq % PRUNE_EVERY == 0 {
            if let Some(now) = committed {
                self.prune(now);
            }
        }
        let Ok(event) = serde_json::from_str::<Value>(&entry.body) else {
            return Vec::new();
        };
        let Some(mut at) = event_time(&event, entry) else {
            return Vec::new();
        };
        // A `recorded` time after the commit is a sender's clock error.
        if let Some(c) = committed {
            at = at.min(c);
        }
        let outside = !self.settings.hours.contains(at);
        let trigger = Trigger {
            seq: entry.seq,
            id: entry.id.clone(),
        };
        let mut alerts = Vec::new();
        for Fact { rule, subject } in facts::facts(&event, &entry.id, outside, &self.settings) {
            let fired = match self.count_rule(rule) {
                None => Some(Alert {
                    rule,
                    subject,
                    window_start: at,
                    window_end: at,
                    threshold: 0,
                    count: 1,
                    events: vec![trigger.clone()],
                    seq: entry.seq,
                    committed: entry.last_updated.clone(),
                }),
                Some(c) => self.count(rule, subject, c, at, committed, &trigger, entry),
            };
            alerts.extend(fired);
        }
        alerts
    }

    #[allow(clippy::too_many_arguments)]
    fn count(
        &mut self,
        rule: RuleId,
        subject: String,
        c: CountRule,
        at: OffsetDateTime,
        committed: Option<OffsetDateTime>,
        trigger: &Trigger,
        entry: &StoredEntry,
    ) -> Option<Alert> {
        let secs = i64::try_from(c.window.as_secs()).unwrap_or(i64::MAX).max(1);
        let window = at.unix_timestamp().div_euclid(secs);
        let start = OffsetDateTime::from_unix_timestamp(window.saturating_mul(secs)).ok()?;
        let end = start + c.window;
        let late = committed.filter(|t| *t > end + LATENESS).map(late_period);
        let max_listed = self.settings.max_listed_events;
        let b = self
            .buckets
            .entry(BucketKey {
                rule,
                subject: subject.clone(),
                window,
                late,
            })
            .or_insert_with(|| Bucket {
                count: 0,
                listed: Vec::new(),
                fired: false,
                end,
            });
        if b.fired {
            return None;
        }
        b.count += 1;
        if b.listed.len() < max_listed {
            b.listed.push(trigger.clone());
        }
        if b.count <= c.max {
            return None;
        }
        b.fired = true;
        Some(Alert {
            rule,
            subject,
            window_start: start,
            window_end: end,
            threshold: c.max,
            count: b.count,
            events: std::mem::take(&mut b.listed),
            seq: entry.seq,
            committed: entry.last_updated.clone(),
        })
    }

    /// Drops the windows no entry committed at `now` or later can join.
    fn prune(&mut self, now: OffsetDateTime) {
        let period = late_period(now);
        self.buckets.retain(|k, b| match k.late {
            None => b.end + LATENESS >= now,
            Some(p) => p >= period,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawDetection;
    use serde_json::json;

    fn entry(seq: i64, body: Value) -> StoredEntry {
        StoredEntry {
            seq,
            id: format!("id-{seq}"),
            body: body.to_string(),
            body_sha256: Vec::new(),
            chain_hash: Vec::new(),
            leaf_hash: Vec::new(),
            last_updated: "2026-03-11T12:00:00.000000Z".into(),
        }
    }

    fn committed_at(seq: i64, body: Value, committed: OffsetDateTime) -> StoredEntry {
        StoredEntry {
            last_updated: vellum_ledger::stamp(committed),
            ..entry(seq, body)
        }
    }

    fn phi_read(user: &str, recorded: OffsetDateTime) -> Value {
        json!({
            "recorded": vellum_ledger::stamp(recorded),
            "type": {"system": crate::vocabulary::DCM, "code": "110110"}, "action": "R", "outcome": "0",
            "agent": [{"who": {"display": user}, "requestor": true}],
            "entity": [{"what": {"reference": "Patient/p1"}}]
        })
    }

    fn subjects(alerts: &[Alert]) -> Vec<(RuleId, String)> {
        alerts.iter().map(|a| (a.rule, a.subject.clone())).collect()
    }

    #[test]
    fn after_hours_follow_the_local_time_across_a_dst_change() {
        use time::macros::datetime;
        let raw = RawDetection {
            rules: "after-hours-access".into(),
            business_hours: "08:00-18:00".into(),
            timezone: "Europe/Berlin".into(),
            after_hours_max: 1,
            ..RawDetection::default()
        };
        let mut d = Detector::new(Arc::new(DetectionSettings::validate(&raw).unwrap()));
        let committed = datetime!(2026-04-01 12:00 UTC);
        let mut fired = Vec::new();
        let mut seq = 0;
        for (user, t) in [
            // Friday 27 March, CET: 06:30 UTC is 07:30, before hours.
            ("early-fri", datetime!(2026-03-27 06:30 UTC)),
            ("early-fri", datetime!(2026-03-27 06:40 UTC)),
            // 07:30 UTC is 08:30: in hours.
            ("in-fri", datetime!(2026-03-27 07:30 UTC)),
            ("in-fri", datetime!(2026-03-27 07:40 UTC)),
            // Monday 30 March, CEST: 06:30 UTC is 08:30, in hours (a fixed
            // +01:00 would call it 07:30).
            ("in-mon", datetime!(2026-03-30 06:30 UTC)),
            ("in-mon", datetime!(2026-03-30 06:40 UTC)),
            // 16:30 UTC is 18:30: after hours.
            ("late-mon", datetime!(2026-03-30 16:30 UTC)),
            ("late-mon", datetime!(2026-03-30 16:40 UTC)),
        ] {
            seq += 1;
            fired.extend(d.feed(&committed_at(seq, phi_read(user, t), committed)));
        }
        assert_eq!(
            subjects(&fired),
            vec![
                (RuleId::AfterHoursAccess, "early-fri".to_string()),
                (RuleId::AfterHoursAccess, "late-mon".to_string()),
            ]
        );
    }

    /// A stream over 40 days of commit time: on-time reads, reads that
    /// arrive days late, and a late import of old events.
    fn long_stream() -> Vec<StoredEntry> {
        let t0 = time::macros::datetime!(2026-05-01 00:00 UTC);
        let mut out = Vec::new();
        for i in 0..4000i64 {
            let committed = t0 + time::Duration::minutes(i * 15);
            let recorded = match i % 10 {
                // Three days late.
                0..=1 => committed - time::Duration::days(3),
                // A year-old import, at midnight of its day.
                2 => {
                    let old = committed - time::Duration::days(365);
                    old - time::Duration::seconds(old.unix_timestamp().rem_euclid(86_400))
                }
                _ => committed - time::Duration::seconds(5),
            };
            let user = format!("u{}", i % 2);
            out.push(committed_at(i + 1, phi_read(&user, recorded), committed));
        }
        out
    }

    #[test]
    fn a_detector_rebuilt_from_the_replay_span_finds_what_a_full_replay_finds() {
        let raw = RawDetection {
            rules: "phi-read-volume".into(),
            phi_reads_per_hour: 1,
            ..RawDetection::default()
        };
        let settings = Arc::new(DetectionSettings::validate(&raw).unwrap());
        let stream = long_stream();
        for position in [1000usize, 2500, 3100] {
            let (seen, rest) = stream.split_at(position);
            let last = vellum_ledger::parse_stamp(&seen[position - 1].last_updated).unwrap();
            let horizon = last - replay_span(&settings);
            let mut full = Detector::new(settings.clone());
            let mut tail = Detector::new(settings.clone());
            for e in seen {
                full.feed(e);
                if vellum_ledger::parse_stamp(&e.last_updated).unwrap() >= horizon {
                    tail.feed(e);
                }
            }
            let a: Vec<Alert> = rest.iter().flat_map(|e| full.feed(e)).collect();
            let b: Vec<Alert> = rest.iter().flat_map(|e| tail.feed(e)).collect();
            assert!(!a.is_empty());
            assert_eq!(a, b, "resumed after {position}");
        }
    }

    fn injection(recorded: &str) -> Value {
        json!({
            "recorded": recorded,
            "subtype": [{"system": crate::vocabulary::AI_EVENT_SYSTEM,
                         "code": crate::vocabulary::PROMPT_INJECTION_ATTEMPT}]
        })
    }

    #[test]
    fn a_count_rule_fires_once_on_the_event_over_the_threshold() {
        let raw = RawDetection {
            injection_max: 2,
            injection_window_minutes: 10,
            ..RawDetection::default()
        };
        let mut d = Detector::new(Arc::new(DetectionSettings::validate(&raw).unwrap()));
        let mut fired = Vec::new();
        for (seq, t) in [
            (1, "2026-03-11T10:00:01Z"),
            (2, "2026-03-11T10:05:00Z"),
            // The next window: counted apart.
            (3, "2026-03-11T10:10:00Z"),
            (4, "2026-03-11T10:09:59Z"),
            (5, "2026-03-11T10:01:00Z"),
        ] {
            fired.extend(d.feed(&entry(seq, injection(t))));
        }
        assert_eq!(fired.len(), 1);
        let a = &fired[0];
        assert_eq!((a.seq, a.count, a.threshold), (4, 3, 2));
        assert_eq!(
            a.events.iter().map(|t| t.seq).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        assert_eq!(
            vellum_ledger::stamp(a.window_start),
            "2026-03-11T10:00:00.000000Z"
        );
        assert_eq!(
            vellum_ledger::stamp(a.window_end),
            "2026-03-11T10:10:00.000000Z"
        );
    }
}
