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
    /// In ledger order.
    pub inferences: Vec<Inference>,
    /// Per inference id, its overrides in ledger order.
    pub overrides: HashMap<String, Vec<Override>>,
    /// Ids of inferences some rendering refers to.
    pub rendered: HashSet<String>,
    pub deployments: Vec<Deployment>,
}

impl Dataset {
    /// The action that counts for an inference: its first override in
    /// ledger order (later ones are corrections of the same case).
    pub fn first_action(&self, inference_id: &str) -> Option<&Override> {
        self.overrides.get(inference_id).and_then(|v| v.first())
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

    /// What the drift verdicts read: inferences and their first actions.
    pub const DRIFT: Needs = Needs {
        patient: false,
        details: false,
        findings: false,
        kinds: &[SummaryKind::Inference, SummaryKind::Override],
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
    let mut pending: Vec<(String, Override)> = Vec::new();
    for (seq, s) in rows {
        add_summary(&mut data, &mut pending, seq, s);
    }
    resolve_tta(&mut data, pending);
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

/// Adds one summary row to `data`. Overrides are collected in `pending`
/// until every inference is known (their time to action may need it).
fn add_summary(data: &mut Dataset, pending: &mut Vec<(String, Override)>, seq: i64, s: Summary) {
    // A rendering is only ever looked up by the inference it names.
    if s.kind == SummaryKind::Rendering {
        if let Some(id) = s.refers_to {
            data.rendered.insert(id);
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
            data.inferences.push(Inference {
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
            });
        }
        SummaryKind::Override => {
            let (Some(inference_id), Some(action)) = (s.refers_to, s.action) else {
                return;
            };
            pending.push((
                inference_id.clone(),
                Override {
                    seq,
                    id: s.event_id,
                    inference_id,
                    recorded,
                    action,
                    radiologist: s.actor.unwrap_or_default(),
                    time_to_action_ms: s.tta_ms,
                },
            ));
        }
        SummaryKind::Rendering => {}
        SummaryKind::Deployment => {
            if let (Some(model), Some(version)) = (s.model, s.version) {
                data.deployments.push(Deployment {
                    model,
                    version,
                    deployed_at: recorded,
                });
            }
        }
    }
}

/// Files the overrides under their inferences; a missing time to action is
/// the override's `recorded` minus the inference's, when not negative.
pub fn resolve_tta(data: &mut Dataset, pending: Vec<(String, Override)>) {
    // Only overrides that do not record their time to action need it.
    let recorded: HashMap<&str, OffsetDateTime> =
        if pending.iter().any(|(_, o)| o.time_to_action_ms.is_none()) {
            data.inferences
                .iter()
                .map(|i| (i.id.as_str(), i.recorded))
                .collect()
        } else {
            HashMap::new()
        };
    let mut by_inf: HashMap<String, Vec<Override>> = HashMap::new();
    for (id, mut o) in pending {
        if o.time_to_action_ms.is_none() {
            if let Some(start) = recorded.get(id.as_str()) {
                let ms = (o.recorded - *start).whole_milliseconds();
                if ms >= 0 {
                    o.time_to_action_ms = i64::try_from(ms).ok();
                }
            }
        }
        by_inf.entry(id).or_default().push(o);
    }
    data.overrides = by_inf;
}

pub use crate::radiology::summary::{
    detail_b64, details, model_of, patient_what, referenced_inference, requester, study_entity,
    study_uid,
};
