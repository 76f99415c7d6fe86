//! The report's view of the chained AI events: inferences, overrides,
//! renderings and deployments, read through the ledger from their summary
//! rows (`Ledger::summaries`: derived from each body when it was appended,
//! stored beside the entry, checked by `vellum verify`), with the report
//! filters applied by the database. Nothing is kept between requests.

use std::collections::{HashMap, HashSet};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use vellum_ledger::store::summary::{Summary, SummaryKind, SummaryQuery};
use vellum_ledger::store::StoreError;
use vellum_ledger::Ledger;

use super::overrides::Filters;

/// One stored inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub seq: i64,
    pub id: String,
    pub recorded: OffsetDateTime,
    pub model: String,
    pub version: String,
    pub site: String,
    /// Finding codes (each once).
    pub findings: Vec<String>,
    /// The user who requested the inference (agent identifier value).
    pub requester: String,
    /// The patient entity's `what`, as JSON text (read only for lists
    /// that show patients).
    pub patient: Option<String>,
    /// The Study Instance UID (without `urn:oid:`).
    pub study_uid: Option<String>,
    /// The recorded `pixel-sha256` (base64, as stored).
    pub pixel_sha256: Option<String>,
    /// The recorded `digest-check` (agree, mismatch, vellum-only, ...).
    pub digest_check: Option<String>,
    /// `latency-ms` as recorded.
    pub latency_ms: Option<u64>,
    /// `cpu-fallback` as recorded.
    pub cpu_fallback: Option<bool>,
    /// (finding code, confidence as its exact text), one per finding detail.
    pub confidences: Vec<(String, String)>,
    /// Its overrides in ledger order (the first is the action that counts).
    /// Kept on the inference so that counting reads no map per inference.
    pub actions: Vec<Override>,
    /// Whether some rendering refers to it.
    pub rendered: bool,
}

/// One stored override (an action on an inference).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub seq: i64,
    pub id: String,
    pub inference_id: String,
    pub recorded: OffsetDateTime,
    pub action: String,
    pub radiologist: String,
    /// As recorded, or the override's minus the inference's `recorded`.
    pub time_to_action_ms: Option<i64>,
}

/// One model version's deployment event.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub model: String,
    pub version: String,
    pub deployed_at: OffsetDateTime,
}

/// Every AI event of the ledger, as reports need them.
#[derive(Debug, Default)]
pub struct Dataset {
    /// In ledger order, each with its overrides and whether it was rendered.
    pub inferences: Vec<Inference>,
    pub deployments: Vec<Deployment>,
    /// Inference id → its index in `inferences` (the first of that id).
    by_id: HashMap<String, usize>,
    /// Overrides whose inference has not been seen yet, by inference id, in
    /// ledger order (they join it, and get their time, when it comes).
    pending_actions: HashMap<String, Vec<Override>>,
    /// Ids named by renderings whose inference has not been seen yet.
    pending_rendered: HashSet<String>,
}

impl Inference {
    /// The action that counts: its first override in ledger order (later
    /// ones are corrections of the same case).
    pub fn first_action(&self) -> Option<&Override> {
        self.actions.first()
    }
}

/// Entries read per page by [`walk`].
const PAGE: i64 = 5000;

/// What a report reads beside the counting columns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// The patient column (lists that show patients).
    pub patient: bool,
    /// Latency, CPU fallback, digest check, study and pixel digest.
    pub details: bool,
    /// Each inference's findings and confidences.
    pub findings: bool,
    /// The kinds of rows read (empty: all).
    pub kinds: &'static [SummaryKind],
}

impl Needs {
    /// Everything a report may read.
    pub const ALL: Needs = Needs {
        patient: true,
        details: true,
        findings: true,
        kinds: &[],
    };
}

/// Every AI event up to the current head, in ledger order, from the
/// summary rows (no body is parsed), with the columns of `needs`.
pub async fn load(ledger: &Ledger, needs: Needs) -> Result<Dataset, StoreError> {
    load_for(ledger, None, needs).await
}

/// [`load`], with the inference filters of `filters` applied by the
/// database (a superset: reports still apply the exact filters); overrides
/// and renderings of inferences not selected may be left out.
pub async fn load_for(
    ledger: &Ledger,
    filters: Option<&Filters>,
    needs: Needs,
) -> Result<Dataset, StoreError> {
    let q = query_of(filters, needs);
    let rows = ledger.summaries(&q).await?;
    let mut data = Dataset::default();
    data.extend(rows);
    Ok(data)
}

/// µs since the epoch, rounded down (the summary rows' `recorded_us`).
fn micros(t: OffsetDateTime) -> Option<i64> {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).ok()
}

/// The database side of `filters`: model, version, site, period, finding.
/// The radiologist (who acted first) is applied by the reports.
pub fn query_of(filters: Option<&Filters>, needs: Needs) -> SummaryQuery {
    let mut q = SummaryQuery {
        with_patient: needs.patient,
        skip_details: !needs.details,
        skip_findings: !needs.findings,
        kinds: needs.kinds.to_vec(),
        ..Default::default()
    };
    let Some(f) = filters else { return q };
    // Reports look at the overrides and renderings of the inferences they
    // count, never at others.
    q.related_only = true;
    q.model.extend(f.model.clone());
    match f.model_version.as_deref().map(|mv| mv.split_once('|')) {
        Some(Some((n, v))) => {
            q.model.push(n.to_string());
            q.version = Some(v.to_string());
        }
        Some(None) => q.version = f.model_version.clone(),
        None => {}
    }
    q.site = f.site.clone();
    // recorded >= from implies recorded_us >= from_us; recorded < to
    // implies recorded_us <= to_us.
    q.from_us = f.from.and_then(micros);
    q.to_us = f.to.and_then(micros);
    q.finding = f.finding.clone();
    q
}

/// Calls `each(seq, body)` for every entry up to the current head, in
/// ledger order, a page at a time.
pub async fn walk(ledger: &Ledger, mut each: impl FnMut(i64, &str)) -> Result<(), StoreError> {
    let head = ledger.head().await?.seq;
    let mut after = 0;
    while after < head {
        let page = ledger.entries_after(after, PAGE.min(head - after)).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            each(e.seq, &e.body);
        }
    }
    Ok(())
}

impl Dataset {
    /// Adds summary rows, in ledger order, after those already added: the
    /// result is the same as one [`load`] over all of them, so a dataset
    /// can follow the ledger's tail (`super::cache`).
    pub fn extend(&mut self, rows: impl IntoIterator<Item = (i64, Summary)>) {
        for (seq, s) in rows {
            self.add(seq, s);
        }
    }

    /// Adds one summary row.
    fn add(&mut self, seq: i64, s: Summary) {
        // A rendering is only ever looked up by the inference it names.
        if s.kind == SummaryKind::Rendering {
            if let Some(id) = s.refers_to {
                match self.by_id.get(&id) {
                    Some(&i) => self.inferences[i].rendered = true,
                    None => {
                        self.pending_rendered.insert(id);
                    }
                }
            }
            return;
        }
        let Ok(recorded) = OffsetDateTime::parse(&s.recorded, &Rfc3339) else {
            return;
        };
        match s.kind {
            SummaryKind::Inference => {
                let mut findings: Vec<String> = Vec::new();
                let mut confidences = Vec::new();
                for f in s.findings {
                    if let Some(c) = f.confidence {
                        confidences.push((f.code.clone(), c));
                    }
                    if !findings.contains(&f.code) {
                        findings.push(f.code);
                    }
                }
                let first_of_id = !self.by_id.contains_key(&s.event_id);
                let (mut actions, rendered) = if first_of_id {
                    (
                        self.pending_actions.remove(&s.event_id).unwrap_or_default(),
                        self.pending_rendered.remove(&s.event_id),
                    )
                } else {
                    (Vec::new(), false)
                };
                // Overrides that came before their inference get their time now.
                for o in actions.iter_mut().filter(|o| o.time_to_action_ms.is_none()) {
                    o.time_to_action_ms = time_to_action(recorded, o.recorded);
                }
                if first_of_id {
                    self.by_id.insert(s.event_id.clone(), self.inferences.len());
                }
                self.inferences.push(Inference {
                    seq,
                    id: s.event_id,
                    recorded,
                    model: s.model.unwrap_or_default(),
                    version: s.version.unwrap_or_default(),
                    site: s.site.unwrap_or_default(),
                    findings,
                    requester: s.actor.unwrap_or_default(),
                    patient: s.patient,
                    study_uid: s.study_uid,
                    pixel_sha256: s.pixel_sha256,
                    digest_check: s.digest_check,
                    latency_ms: s.latency_ms.and_then(|v| u64::try_from(v).ok()),
                    cpu_fallback: s.cpu_fallback,
                    confidences,
                    actions,
                    rendered,
                });
            }
            SummaryKind::Override => {
                let (Some(inference_id), Some(action)) = (s.refers_to, s.action) else {
                    return;
                };
                let mut o = Override {
                    seq,
                    id: s.event_id,
                    inference_id,
                    recorded,
                    action,
                    radiologist: s.actor.unwrap_or_default(),
                    time_to_action_ms: s.tta_ms,
                };
                match self.by_id.get(&o.inference_id) {
                    Some(&i) => {
                        let inf = &mut self.inferences[i];
                        if o.time_to_action_ms.is_none() {
                            o.time_to_action_ms = time_to_action(inf.recorded, o.recorded);
                        }
                        inf.actions.push(o);
                    }
                    None => self
                        .pending_actions
                        .entry(o.inference_id.clone())
                        .or_default()
                        .push(o),
                }
            }
            SummaryKind::Rendering => {}
            SummaryKind::Deployment => {
                if let (Some(model), Some(version)) = (s.model, s.version) {
                    self.deployments.push(Deployment {
                        model,
                        version,
                        deployed_at: recorded,
                    });
                }
            }
        }
    }
}

/// An override's missing time to action: its `recorded` minus its
/// inference's, when not negative.
fn time_to_action(inference: OffsetDateTime, action: OffsetDateTime) -> Option<i64> {
    let ms = (action - inference).whole_milliseconds();
    if ms >= 0 {
        i64::try_from(ms).ok()
    } else {
        None
    }
}

pub use crate::radiology::summary::{
    detail_b64, details, model_of, patient_what, referenced_inference, requester, study_entity,
    study_uid,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: SummaryKind, id: &str, recorded: &str) -> Summary {
        let t = OffsetDateTime::parse(recorded, &Rfc3339).unwrap();
        let us = i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap();
        Summary::new(kind, id.to_string(), recorded.to_string(), us)
    }

    fn action(id: &str, on: &str, recorded: &str, tta: Option<i64>) -> Summary {
        let mut o = row(SummaryKind::Override, id, recorded);
        o.refers_to = Some(on.to_string());
        o.action = Some("reject".into());
        o.actor = Some("rad-a".into());
        o.tta_ms = tta;
        o
    }

    fn rows() -> Vec<(i64, Summary)> {
        let mut inf = row(SummaryKind::Inference, "i1", "2026-03-01T10:00:00Z");
        inf.model = Some("m".into());
        inf.version = Some("1".into());
        let mut late = row(SummaryKind::Inference, "i2", "2026-03-01T10:00:01Z");
        late.model = Some("m".into());
        let mut rendering = row(SummaryKind::Rendering, "r1", "2026-03-01T10:00:02Z");
        rendering.refers_to = Some("i1".into());
        vec![
            (1, inf),
            // Acts on an inference the ledger holds only later (seq 5).
            (2, action("o0", "i2", "2026-03-01T10:00:04Z", None)),
            (3, action("o1", "i1", "2026-03-01T10:00:03Z", None)),
            (4, action("o2", "i1", "2026-03-01T10:00:05Z", Some(7))),
            (5, late),
            (6, rendering),
        ]
    }

    fn snapshot(d: &Dataset) -> String {
        let mut pending: Vec<_> = d.pending_actions.iter().collect();
        pending.sort_by_key(|(k, _)| k.as_str());
        let mut rendered: Vec<_> = d.pending_rendered.iter().collect();
        rendered.sort();
        format!(
            "{:?}\n{pending:?}\n{rendered:?}\n{:?}",
            d.inferences, d.deployments
        )
    }

    #[test]
    fn extending_piece_by_piece_equals_one_load() {
        let mut whole = Dataset::default();
        whole.extend(rows());
        // The missing times: from the inference's `recorded`, also for the
        // override that came before its inference.
        let tta = |d: &Dataset, inf: &str| -> Vec<Option<i64>> {
            d.inferences
                .iter()
                .find(|i| i.id == inf)
                .map(|i| i.actions.iter().map(|o| o.time_to_action_ms).collect())
                .unwrap_or_default()
        };
        assert_eq!(tta(&whole, "i1"), [Some(3000), Some(7)]);
        assert_eq!(tta(&whole, "i2"), [Some(3000)]);
        assert!(whole.pending_actions.is_empty());
        assert!(whole.inferences[0].rendered && !whole.inferences[1].rendered);
        for split in 0..=6 {
            let mut parts = Dataset::default();
            let all = rows();
            let (a, b) = all.split_at(split);
            parts.extend(a.to_vec());
            parts.extend(b.to_vec());
            assert_eq!(snapshot(&parts), snapshot(&whole), "split at {split}");
        }
    }

    #[test]
    fn an_override_of_an_unknown_inference_stays_untimed() {
        let mut d = Dataset::default();
        d.extend(vec![(
            1,
            action("o", "nowhere", "2026-03-01T10:00:00Z", None),
        )]);
        assert_eq!(d.pending_actions["nowhere"][0].time_to_action_ms, None);
        assert_eq!(d.pending_actions.len(), 1);
        // An inference recorded after its override gives no (negative) time.
        d.extend(vec![(
            2,
            row(SummaryKind::Inference, "nowhere", "2026-03-01T11:00:00Z"),
        )]);
        assert_eq!(d.inferences[0].actions[0].time_to_action_ms, None);
        assert!(d.pending_actions.is_empty());
    }
}
