//! Detection rules over the committed stream (`[detection]`).
//!
//! A [`Detector`] is fed the committed entries in `seq` order and yields an
//! alert at the entry that trips a rule (engine.rs); each alert is appended
//! as a `security-alert` event through intake with an idempotency key per
//! rule, subject and window, so evaluating the stream again never appends
//! it twice. The worker inside `serve` reads through the ledger like the
//! SIEM feed; its position (the last seq whose alerts are all committed)
//! is an insert-only progress row. After a restart it rebuilds the windows
//! a later entry can still join by re-reading only the tail of the stream
//! before that position ([`resume`], [`replay_span`]), then appends the
//! alerts tripped after it. [`recompute`] feeds a stored period's stream
//! from seq 1 to the same detector, so it finds exactly the alerts the
//! worker appended.

mod alert;
mod engine;
mod facts;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use vellum_ledger::store::search::{
    Condition, Cursor, DatePrefix, RowMatch, SearchQuery, Selectivity, SortKey, SystemMatch,
};
use vellum_ledger::store::StoreError;
use vellum_ledger::Ledger;

pub use alert::alert_event;
pub use engine::{replay_span, Alert, Detector, Trigger, LATENESS};
pub use facts::{facts, Fact};

use crate::config::DetectionSettings;
use crate::intake::{Intake, IntakeError, Stored, Submission};
use crate::vocabulary::SECURITY_ALERT_PROFILE;

/// The worker's name in the progress rows.
pub const POSITION_NAME: &str = "detection";
/// The first wait after a failed read or append (doubles up to 30 s).
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Entries read per step of a recomputation.
const READ_BATCH: i64 = 2000;

/// One alert as reports list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    pub rule: &'static str,
    pub subject: String,
    pub window_start: String,
    pub window_end: String,
    pub threshold: u64,
    pub count: u64,
    /// The triggering events listed in the alert (`AuditEvent/<id>`).
    pub events: Vec<String>,
    /// The seq of the entry that tripped the rule.
    pub tripped_at_seq: i64,
    /// The idempotency key the alert event is stored under.
    pub key: String,
}

impl From<&Alert> for AlertRow {
    fn from(a: &Alert) -> Self {
        AlertRow {
            rule: a.rule.as_str(),
            subject: a.subject.clone(),
            window_start: vellum_ledger::stamp(a.window_start),
            window_end: vellum_ledger::stamp(a.window_end),
            threshold: a.threshold,
            count: a.count,
            events: a
                .events
                .iter()
                .map(|t| format!("AuditEvent/{}", t.id))
                .collect(),
            tripped_at_seq: a.seq,
            key: a.key(),
        }
    }
}

/// What a recomputation over a period found.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodReport {
    /// Alerts whose window starts in `[from, to)`, in the order they fired.
    pub alerts: Vec<AlertRow>,
    /// Entries evaluated (the whole stream up to the head when it began).
    pub entries: u64,
}

/// A period bound: a date (`2026-03-14`, midnight UTC) or an RFC 3339
/// instant.
pub fn parse_bound(v: &str) -> Option<OffsetDateTime> {
    let v = v.trim();
    if let Some(t) = vellum_ledger::parse_stamp(v) {
        return Some(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// Feeds the stored stream from seq 1 to the detector and keeps the alerts
/// whose window starts in `[from, to)` (either bound open when `None`).
pub async fn recompute(
    ledger: &Ledger,
    settings: Arc<DetectionSettings>,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
) -> Result<PeriodReport, StoreError> {
    let head = ledger.head().await?.seq;
    let mut detector = Detector::new(settings);
    let mut alerts = Vec::new();
    let mut keys = std::collections::HashSet::new();
    let mut pos = 0;
    let mut entries = 0u64;
    while pos < head {
        let batch = ledger
            .entries_after(pos, READ_BATCH.min(head - pos))
            .await?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            break;
        };
        for e in &batch {
            entries += 1;
            for a in detector.feed(e) {
                let after_from = from.is_none_or(|f| a.window_start >= f);
                let before_to = to.is_none_or(|t| a.window_start < t);
                // A window's late events may fire again under the same
                // key: the worker appended only the first.
                if after_from && before_to && keys.insert(a.key()) {
                    alerts.push(AlertRow::from(&a));
                }
            }
        }
        pos = last;
    }
    Ok(PeriodReport { alerts, entries })
}

/// A detector rebuilt after a restart.
pub struct Resumed {
    /// The windows as they were after the entry at the position.
    pub detector: Detector,
    /// The first seq read again (the position + 1 when none was).
    pub from_seq: i64,
    /// Entries read again to rebuild the windows.
    pub replayed: u64,
}

/// The first seq committed at or after `t` (`None`: none up to `head`).
async fn first_committed_since(
    ledger: &Ledger,
    t: OffsetDateTime,
    head: i64,
) -> Result<Option<i64>, StoreError> {
    let us = i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MIN);
    let query = SearchQuery {
        conditions: vec![Condition::Has {
            param: "_lastUpdated".into(),
            any: vec![RowMatch::Date {
                prefix: DatePrefix::Ge,
                low: us,
                high: us.saturating_add(1),
            }],
            negate: false,
            selectivity: Selectivity::Medium,
        }],
        sort: SortKey::Seq,
        descending: false,
        head,
        cursor: None,
        limit: 1,
    };
    Ok(ledger.search(&query).await?.first().map(|h| h.entry.seq))
}

/// The detector as it was after the entry at `position`, rebuilt from the
/// entries committed within [`replay_span`] before that entry's commit
/// time: every window a later entry can join holds only such entries, so
/// later entries trip exactly the alerts a replay from seq 1 would.
pub async fn resume(
    ledger: &Ledger,
    settings: Arc<DetectionSettings>,
    position: i64,
) -> Result<Resumed, StoreError> {
    let mut detector = Detector::new(settings.clone());
    let at_position = match position {
        1.. => ledger.entries_after(position - 1, 1).await?,
        _ => Vec::new(),
    };
    let Some(last) = at_position.first().filter(|e| e.seq == position) else {
        return Ok(Resumed {
            detector,
            from_seq: position.max(0) + 1,
            replayed: 0,
        });
    };
    let from_seq = match vellum_ledger::parse_stamp(&last.last_updated) {
        Some(t) => first_committed_since(ledger, t - replay_span(&settings), position)
            .await?
            .unwrap_or(position),
        None => 1,
    };
    let mut replayed = 0u64;
    let mut pos = from_seq - 1;
    while pos < position {
        let batch = ledger
            .entries_after(pos, READ_BATCH.min(position - pos))
            .await?;
        let Some(next) = batch.last().map(|e| e.seq) else {
            break;
        };
        for e in &batch {
            replayed += 1;
            // Tripped at or before the position: already appended.
            detector.feed(e);
        }
        pos = next;
    }
    Ok(Resumed {
        detector,
        from_seq,
        replayed,
    })
}

/// A stored `security-alert`, as the QA page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlert {
    pub rule: crate::config::RuleId,
    pub subject: String,
    pub window_start: String,
    pub window_end: String,
    pub threshold: u64,
    pub count: u64,
}

/// The last `n` stored security alerts (newest first), as stored. Found
/// through the search index (type DCM 110113 Security Alert, newest
/// first), not by walking the ledger: the QA page asks on every load.
pub async fn recent_alerts(ledger: &Ledger, n: usize) -> Result<Vec<StoredAlert>, StoreError> {
    let head = ledger.head().await?.seq;
    let mut rows = Vec::new();
    let mut cursor = None;
    while rows.len() < n {
        let query = SearchQuery {
            conditions: vec![Condition::Has {
                param: "type".into(),
                any: vec![RowMatch::Value {
                    val: "110113".into(),
                    sys: SystemMatch::Is(crate::vocabulary::DCM.into()),
                }],
                negate: false,
                selectivity: Selectivity::Narrow,
            }],
            sort: SortKey::Seq,
            descending: true,
            head,
            cursor,
            limit: READ_BATCH,
        };
        let hits = ledger.search(&query).await?;
        let full = hits.len() as i64 >= READ_BATCH;
        cursor = hits.last().map(|h| Cursor {
            key: h.sort_key,
            seq: h.entry.seq,
            forward: true,
        });
        // Other senders' Security Alert events share the type: only
        // vellum's own detection alerts carry the profile.
        rows.extend(
            hits.iter()
                .filter(|h| h.entry.body.contains(SECURITY_ALERT_PROFILE))
                .filter_map(|h| stored_row(&h.entry.body))
                .take(n - rows.len()),
        );
        if !full {
            break;
        }
    }
    Ok(rows)
}

/// An alert read back from a stored `security-alert` body.
fn stored_row(body: &str) -> Option<StoredAlert> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let rule_entity = v["entity"].as_array()?.first()?;
    let rule = crate::config::RuleId::parse(rule_entity["what"]["identifier"]["value"].as_str()?)?;
    let detail = |k: &str| {
        rule_entity["detail"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["type"] == k)
            .and_then(|d| d["valueString"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    Some(StoredAlert {
        rule,
        subject: detail("subject"),
        window_start: detail("window-start"),
        window_end: detail("window-end"),
        threshold: detail("threshold").parse().ok()?,
        count: detail("count").parse().ok()?,
    })
}

/// The worker inside `serve`.
pub struct Evaluator {
    ledger: Ledger,
    intake: Intake,
    settings: Arc<DetectionSettings>,
}

impl Evaluator {
    pub fn new(ledger: Ledger, intake: Intake, settings: Arc<DetectionSettings>) -> Self {
        Evaluator {
            ledger,
            intake,
            settings,
        }
    }

    /// Follows the chain forever (aborted at shutdown: alerts of a batch in
    /// flight are appended again after the restart, under the same keys).
    pub async fn run(self) {
        let metrics = crate::metrics::global();
        let done = self
            .retrying(|| self.ledger.export_position(POSITION_NAME))
            .await;
        let Resumed {
            mut detector,
            from_seq,
            replayed,
        } = self
            .retrying(|| resume(&self.ledger, self.settings.clone(), done))
            .await;
        metrics.detection_replayed(replayed);
        tracing::info!(
            after_seq = done,
            replayed,
            from_seq,
            "detection rules started"
        );
        let mut pos = done;
        loop {
            let batch = self
                .retrying(|| {
                    self.ledger
                        .entries_after(pos, self.settings.batch_max_events)
                })
                .await;
            if let Ok(head) = self.ledger.head().await {
                metrics.detection_position(pos, head.seq);
            }
            let Some(last) = batch.last().map(|e| e.seq) else {
                tokio::time::sleep(self.settings.poll).await;
                continue;
            };
            for e in &batch {
                for a in detector.feed(e) {
                    self.append(&a).await;
                }
            }
            self.retrying(|| self.ledger.record_export_position(POSITION_NAME, last))
                .await;
            pos = last;
        }
    }

    /// Appends one alert, retrying until it is committed (the position
    /// must not pass an alert that is not stored).
    async fn append(&self, a: &Alert) {
        let mut backoff = FIRST_RETRY;
        loop {
            let submission = Submission::mapped(alert_event(a))
                .with_key(a.key())
                .without_enrichment();
            match self.intake.submit(submission).await {
                Ok(Stored::Committed(c)) => {
                    if c.created {
                        crate::metrics::global().detection_alert(a.rule.as_str());
                        tracing::warn!(
                            rule = a.rule.as_str(),
                            count = a.count,
                            threshold = a.threshold,
                            "detection rule fired"
                        );
                    }
                    return;
                }
                Ok(Stored::Existing(_)) => return,
                // Never accepted however often it is sent: waiting would
                // stop every later alert.
                Err(IntakeError::Rejected(_)) => {
                    crate::metrics::global().store_error("detection");
                    tracing::error!(
                        rule = a.rule.as_str(),
                        "security alert refused by validation; skipped"
                    );
                    return;
                }
                Err(e) => {
                    crate::metrics::global().store_error("detection");
                    tracing::warn!(error = %e, rule = a.rule.as_str(), "security alert not appended; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_RETRY);
        }
    }

    async fn retrying<T, F, Fut>(&self, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = FIRST_RETRY;
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    crate::metrics::global().store_error("detection");
                    tracing::warn!(error = %e, "detection rules could not read the store");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY);
                }
            }
        }
    }
}
