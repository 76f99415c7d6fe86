//! `GET /reports/cases`: the forensic case list — one row per inference
//! that passes the filters (model, version, finding, radiologist, site,
//! period, and the first action). It answers "every case analysed with
//! model version X on day Y by radiologist Z" and "every case where the
//! model reported finding A and the radiologist rejected or edited it".

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::events::{Dataset, Inference, Override};
use super::overrides::{ParamError, Query, ACTIONS};
use super::patients::PatientView;

/// A query of the case list: the report filters, the actions, the format.
#[derive(Debug, Clone, Default)]
pub struct CaseQuery {
    pub base: Query,
    /// First actions to keep (`none` = never acted on); empty keeps all.
    pub actions: Vec<String>,
}

impl CaseQuery {
    /// From the URL's query pairs; `group_by` and unknown keys are refused.
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self, ParamError> {
        let mut actions = Vec::new();
        let mut rest = Vec::new();
        for (k, v) in pairs {
            match k {
                "action" => {
                    for a in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let a = match a {
                            // The two actions that change the AI's result.
                            "override" => vec!["reject", "accept_with_edit"],
                            "none" => vec!["none"],
                            a if ACTIONS.contains(&a) => vec![a],
                            other => return Err(ParamError::Action(other.to_string())),
                        };
                        for x in a {
                            if !actions.iter().any(|y| y == x) {
                                actions.push(x.to_string());
                            }
                        }
                    }
                }
                "group_by" => return Err(ParamError::Unknown(k.to_string())),
                _ => rest.push((k, v)),
            }
        }
        Ok(CaseQuery {
            base: Query::parse(rest.into_iter())?,
            actions,
        })
    }
}

/// One case.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Case {
    pub inference_seq: i64,
    pub inference_id: String,
    pub recorded: String,
    pub model: String,
    pub version: String,
    pub site: String,
    pub study_uid: String,
    /// As the caller may see it (see `patient_identifiers`).
    pub patient: String,
    pub requested_by: String,
    /// Who acted first, else who requested the inference.
    pub radiologist: String,
    pub findings: Vec<String>,
    /// The first action (`none` when never acted on).
    pub action: String,
    pub time_to_action_ms: Option<i64>,
    /// Every action on the case, in ledger order.
    pub all_actions: Vec<String>,
    pub override_ids: Vec<String>,
    pub rendered: bool,
    pub pixel_sha256: String,
    pub digest_check: String,
    /// `/fhir/AuditEvent/<id>` of the inference.
    pub link: String,
}

/// The answer: the cases in ledger order, and the stored `what` of every
/// patient they show (for the access record, never in the output).
#[derive(Debug, Clone, Serialize)]
pub struct CaseList {
    pub patient_identifiers: &'static str,
    pub count: usize,
    pub cases: Vec<Case>,
    #[serde(skip)]
    pub patients: Vec<Value>,
}

/// The first action of `inf` and who acted (or requested), when the
/// inference passes every filter of `q`.
fn selected<'d>(inf: &'d Inference, q: &CaseQuery) -> Option<(&'d [Override], &'d str, &'d str)> {
    let f = &q.base.filters;
    if !f.inference_passes(inf) {
        return None;
    }
    if f.finding
        .as_ref()
        .is_some_and(|want| !inf.findings.contains(want))
    {
        return None;
    }
    let acts = inf.actions.as_slice();
    let first = acts.first();
    let radiologist = first.map_or(inf.requester.as_str(), |o| o.radiologist.as_str());
    if f.radiologist.as_ref().is_some_and(|r| r != radiologist) {
        return None;
    }
    let action = first.map_or("none", |o| o.action.as_str());
    if !q.actions.is_empty() && !q.actions.iter().any(|a| a == action) {
        return None;
    }
    Some((acts, radiologist, action))
}

/// The seqs of the inferences `q` selects (whose patients the list shows).
pub fn selected_seqs(data: &Dataset, q: &CaseQuery) -> Vec<i64> {
    data.inferences
        .iter()
        .filter(|inf| selected(inf, q).is_some())
        .map(|inf| inf.seq)
        .collect()
}

/// Every inference of `selected` (seqs, ascending: what
/// [`selected_seqs`] gave) still passing `q`, as cases; each patient from
/// `patients_by_seq` or, when absent there, from the dataset itself.
/// Inferences added since the selection are left out: their patients were
/// not read.
pub fn compute(
    data: &Dataset,
    q: &CaseQuery,
    view: PatientView<'_>,
    patients_by_seq: &HashMap<i64, String>,
    selected_seqs: &[i64],
) -> CaseList {
    let mut cases = Vec::new();
    let mut patients: Vec<Value> = Vec::new();
    // Each patient once (by its stored JSON text).
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let chosen = data
        .inferences
        .iter()
        .filter(|inf| selected_seqs.binary_search(&inf.seq).is_ok());
    for inf in chosen {
        let Some((acts, radiologist, action)) = selected(inf, q) else {
            continue;
        };
        let first = acts.first();
        let text = patients_by_seq
            .get(&inf.seq)
            .map(String::as_str)
            .or(inf.patient.as_deref());
        let patient: Option<Value> = text.and_then(|t| serde_json::from_str(t).ok());
        if let (Some(p), Some(text)) = (&patient, text) {
            if seen.insert(text) {
                patients.push(p.clone());
            }
        }
        cases.push(Case {
            inference_seq: inf.seq,
            inference_id: inf.id.clone(),
            recorded: vellum_ledger::stamp(inf.recorded),
            model: inf.model.clone(),
            version: inf.version.clone(),
            site: inf.site.clone(),
            study_uid: inf.study_uid.clone().unwrap_or_default(),
            patient: view.show(patient.as_ref()),
            requested_by: inf.requester.clone(),
            radiologist: radiologist.to_string(),
            findings: inf.findings.clone(),
            action: action.to_string(),
            time_to_action_ms: first.and_then(|o| o.time_to_action_ms),
            all_actions: acts.iter().map(|o| o.action.clone()).collect(),
            override_ids: acts.iter().map(|o| o.id.clone()).collect(),
            rendered: inf.rendered,
            pixel_sha256: inf.pixel_sha256.clone().unwrap_or_default(),
            digest_check: inf.digest_check.clone().unwrap_or_default(),
            link: format!("/fhir/AuditEvent/{}", inf.id),
        });
    }
    CaseList {
        patient_identifiers: view.label(),
        count: cases.len(),
        cases,
        patients,
    }
}

/// The CSV columns, in order. Stable: new columns are only ever appended.
/// Lists inside a cell are joined with `;`.
pub const CSV_COLUMNS: [&str; 20] = [
    "inference_seq",
    "inference_id",
    "recorded",
    "model",
    "version",
    "site",
    "study_uid",
    "patient",
    "requested_by",
    "radiologist",
    "findings",
    "action",
    "time_to_action_ms",
    "all_actions",
    "override_ids",
    "rendered",
    "pixel_sha256",
    "digest_check",
    "link",
    "patient_identifiers",
];

pub fn to_csv(list: &CaseList) -> String {
    let mut out = String::new();
    super::csv::line(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    for c in &list.cases {
        super::csv::line(
            &mut out,
            [
                c.inference_seq.to_string(),
                c.inference_id.clone(),
                c.recorded.clone(),
                c.model.clone(),
                c.version.clone(),
                c.site.clone(),
                c.study_uid.clone(),
                c.patient.clone(),
                c.requested_by.clone(),
                c.radiologist.clone(),
                c.findings.join(";"),
                c.action.clone(),
                c.time_to_action_ms
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                c.all_actions.join(";"),
                c.override_ids.join(";"),
                c.rendered.to_string(),
                c.pixel_sha256.clone(),
                c.digest_check.clone(),
                c.link.clone(),
                list.patient_identifiers.to_string(),
            ],
        );
    }
    out
}
