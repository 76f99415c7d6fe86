//! `GET /reports/study-history?study=<Study Instance UID>`: every stored
//! event about one study, in ledger order — each inference (with its pixel
//! digest and digest check), rendering and override — each linked to the
//! raw event under `/fhir/AuditEvent/<id>`. An event belongs to the study
//! when one of its entities names the study, or when it refers to an event
//! that does (an override or rendering of one of its inferences); vellum's
//! own `audit-log-access` records of reads are not part of it.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vellum_ledger::store::search::RowMatch;
use vellum_ledger::store::{StoreError, StoredEntry};
use vellum_ledger::Ledger;

use super::events::{self, detail_b64, model_of, patient_what, requester, study_entity, study_uid};
use super::lookup;
use super::overrides::ParamError;
use super::patients::PatientView;

/// `study` (required, with or without `urn:oid:`) and `format`.
#[derive(Debug, Clone, Default)]
pub struct StudyQuery {
    pub study: String,
    pub format: Option<String>,
}

impl StudyQuery {
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self, ParamError> {
        let mut q = StudyQuery::default();
        for (k, v) in pairs {
            let v = v.trim();
            match k {
                "study" => q.study = v.strip_prefix("urn:oid:").unwrap_or(v).to_string(),
                "format" => q.format = parse_format(v)?,
                other => return Err(ParamError::Unknown(other.to_string())),
            }
        }
        if q.study.is_empty() {
            return Err(ParamError::Required("study"));
        }
        Ok(q)
    }
}

/// `json` or `csv` (empty: not given).
pub fn parse_format(v: &str) -> Result<Option<String>, ParamError> {
    match v {
        "json" | "csv" => Ok(Some(v.to_string())),
        "" => Ok(None),
        _ => Err(ParamError::Format),
    }
}

/// One event of the study's history.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryEvent {
    pub seq: i64,
    pub id: String,
    pub recorded: String,
    /// The profile's name (`radiology-ai-inference`, …), else the event
    /// type code.
    pub kind: String,
    /// The requesting user.
    pub actor: String,
    /// `name|version` of the model, when the event names one.
    pub model: String,
    /// The inference an override or rendering refers to.
    pub refers_to: String,
    pub findings: Vec<String>,
    pub action: String,
    pub time_to_action_ms: String,
    pub destination: String,
    pub format: String,
    pub viewed: String,
    pub pixel_sha256: String,
    pub digest_check: String,
    pub patient: String,
    pub link: String,
}

/// The answer, and the stored `what` of the patients it shows.
#[derive(Debug, Clone, Serialize)]
pub struct StudyHistory {
    pub study: String,
    pub patient_identifiers: &'static str,
    pub count: usize,
    pub events: Vec<HistoryEvent>,
    #[serde(skip)]
    pub patients: Vec<Value>,
}

/// The entries that may belong to the study, in ledger order: those whose
/// entity identifier is the study's UID (with or without `urn:oid:`), and,
/// repeatedly, those referring to one of them (found through the search
/// index; the exact rules are applied by [`compute`]).
async fn candidates(ledger: &Ledger, study: &str) -> Result<Vec<StoredEntry>, StoreError> {
    let head = ledger.head().await?.seq;
    let mut found = BTreeMap::new();
    let about = lookup::has(
        "entity:identifier",
        vec![
            lookup::value(study),
            lookup::value(&format!("urn:oid:{study}")),
        ],
    );
    let mut added = lookup::collect(ledger, about, head, &mut found).await?;
    // A chain of references is short (inference ← override); the bound
    // only guards against a cycle of forged references.
    for _ in 0..8 {
        let ids: Vec<RowMatch> = added
            .iter()
            .filter_map(|seq| found.get(seq))
            .map(|e| RowMatch::TypedId {
                ty: "AuditEvent".into(),
                id: e.id.clone(),
            })
            .collect();
        if ids.is_empty() {
            break;
        }
        added = Vec::new();
        for chunk in ids.chunks(200) {
            let refs = lookup::has("entity", chunk.to_vec());
            added.extend(lookup::collect(ledger, refs, head, &mut found).await?);
        }
    }
    Ok(found.into_values().collect())
}

/// The study's events: the candidates' bodies in ledger order, each kept
/// when it names the study or refers to an event kept before it.
pub async fn compute(
    ledger: &Ledger,
    q: &StudyQuery,
    view: PatientView<'_>,
) -> Result<StudyHistory, StoreError> {
    let mut ids: HashSet<String> = HashSet::new();
    let mut out = StudyHistory {
        study: q.study.clone(),
        patient_identifiers: view.label(),
        count: 0,
        events: Vec::new(),
        patients: Vec::new(),
    };
    let mut each = |seq: i64, body: &str| {
        let names_study = body.contains(q.study.as_str());
        if !names_study && !ids.iter().any(|id| body.contains(id.as_str())) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return;
        };
        // Reads of these events are accesses to the log, not part of the
        // study's history (the patient access report lists them).
        if kind_of(&v) == "audit-log-access" {
            return;
        }
        let about_study = study_entity(&v).and_then(study_uid) == Some(q.study.as_str());
        let refers_to = events::referenced_inference(&v).unwrap_or_default();
        if !about_study && !ids.contains(&refers_to) {
            return;
        }
        let Some(id) = v["id"].as_str() else { return };
        ids.insert(id.to_string());
        if let Some(p) = patient_what(&v) {
            if !out.patients.contains(p) {
                out.patients.push(p.clone());
            }
        }
        out.events.push(history_event(&v, seq, id, refers_to, view));
    };
    for e in candidates(ledger, &q.study).await? {
        each(e.seq, &e.body);
    }
    out.count = out.events.len();
    Ok(out)
}

/// The last segment of the event's first profile, else its type code.
pub fn kind_of(v: &Value) -> String {
    v["meta"]["profile"][0]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
        .or(v["type"]["code"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The first `valueString` detail of this type on any entity.
fn any_detail(v: &Value, kind: &str) -> String {
    v["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|e| events::details(e).find(|(k, _)| *k == kind).map(|(_, x)| x))
        .unwrap_or("")
        .to_string()
}

fn history_event(
    v: &Value,
    seq: i64,
    id: &str,
    refers_to: String,
    view: PatientView<'_>,
) -> HistoryEvent {
    let study = study_entity(v);
    let mut findings = Vec::new();
    for e in v["entity"].as_array().into_iter().flatten() {
        for (_, x) in events::details(e).filter(|(k, _)| *k == "finding") {
            let code = serde_json::from_str::<Value>(x)
                .ok()
                .and_then(|f| f["code"].as_str().map(str::to_string));
            if let Some(c) = code {
                if !findings.contains(&c) {
                    findings.push(c);
                }
            }
        }
    }
    let recorded = v["recorded"]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .map(vellum_ledger::stamp)
        .unwrap_or_default();
    HistoryEvent {
        seq,
        id: id.to_string(),
        recorded,
        kind: kind_of(v),
        actor: requester(v),
        model: model_of(v)
            .map(|(n, ver)| format!("{n}|{ver}"))
            .unwrap_or_default(),
        refers_to,
        findings,
        action: any_detail(v, "action"),
        time_to_action_ms: any_detail(v, "time-to-action-ms"),
        destination: any_detail(v, "destination"),
        format: any_detail(v, "format"),
        viewed: any_detail(v, "viewed"),
        pixel_sha256: study
            .and_then(|e| detail_b64(e, "pixel-sha256"))
            .unwrap_or("")
            .to_string(),
        digest_check: study
            .and_then(|e| events::details(e).find(|(k, _)| *k == "digest-check"))
            .map(|(_, x)| x.to_string())
            .unwrap_or_default(),
        patient: view.show(patient_what(v)),
        link: format!("/fhir/AuditEvent/{id}"),
    }
}

/// The CSV columns, in order. Stable: new columns are only ever appended.
pub const CSV_COLUMNS: [&str; 19] = [
    "study_uid",
    "seq",
    "id",
    "recorded",
    "kind",
    "actor",
    "model",
    "refers_to",
    "findings",
    "action",
    "time_to_action_ms",
    "destination",
    "format",
    "viewed",
    "pixel_sha256",
    "digest_check",
    "patient",
    "link",
    "patient_identifiers",
];

pub fn to_csv(h: &StudyHistory) -> String {
    let mut out = String::new();
    super::csv::line(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    for e in &h.events {
        super::csv::line(
            &mut out,
            [
                h.study.clone(),
                e.seq.to_string(),
                e.id.clone(),
                e.recorded.clone(),
                e.kind.clone(),
                e.actor.clone(),
                e.model.clone(),
                e.refers_to.clone(),
                e.findings.join(";"),
                e.action.clone(),
                e.time_to_action_ms.clone(),
                e.destination.clone(),
                e.format.clone(),
                e.viewed.clone(),
                e.pixel_sha256.clone(),
                e.digest_check.clone(),
                e.patient.clone(),
                e.link.clone(),
                h.patient_identifiers.to_string(),
            ],
        );
    }
    out
}
