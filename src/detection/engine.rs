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

/// Windows that ended this long before the newest commit are forgotten: an
/// event recorded that late starts a fresh count for its window.
const LATENESS: time::Duration = time::Duration::days(7);
/// Forgetting runs at every seq that is a multiple of this (a function of
/// the stream, so every evaluation forgets the same windows).
const PRUNE_EVERY: i64 = 10_000;

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
}

#[derive(Debug)]
struct Bucket {
    count: u64,
    listed: Vec<Trigger>,
    fired: bool,
    end: OffsetDateTime,
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
        if entry.seq % PRUNE_EVERY == 0 {
            self.prune(&entry.last_updated);
        }
        let Ok(event) = serde_json::from_str::<Value>(&entry.body) else {
            return Vec::new();
        };
        let Some(at) = event_time(&event, entry) else {
            return Vec::new();
        };
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
                Some(c) => self.count(rule, subject, c, at, &trigger, entry),
            };
            alerts.extend(fired);
        }
        alerts
    }

    fn count(
        &mut self,
        rule: RuleId,
        subject: String,
        c: CountRule,
        at: OffsetDateTime,
        trigger: &Trigger,
        entry: &StoredEntry,
    ) -> Option<Alert> {
        let secs = i64::try_from(c.window.as_secs()).unwrap_or(i64::MAX).max(1);
        let window = at.unix_timestamp().div_euclid(secs);
        let start = OffsetDateTime::from_unix_timestamp(window.saturating_mul(secs)).ok()?;
        let end = start + c.window;
        let max_listed = self.settings.max_listed_events;
        let b = self
            .buckets
            .entry(BucketKey {
                rule,
                subject: subject.clone(),
                window,
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

    fn prune(&mut self, committed: &str) {
        let Some(now) = vellum_ledger::parse_stamp(committed) else {
            return;
        };
        self.buckets.retain(|_, b| b.end + LATENESS >= now);
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
