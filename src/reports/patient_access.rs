//! `GET /reports/patient-access?patient=…&from=…&to=…`: the accounting of
//! accesses to one patient's data (GDPR Art. 15, HIPAA accounting of
//! disclosures). Every stored event in the period whose patient entity is
//! the patient: the `audit-log-access` events vellum recorded when someone
//! read, searched or reported on the log and got this patient's data
//! (category `access`), and the events about the patient themselves — AI
//! inferences, renderings, overrides, message receipts (category `event`).
//! Auditors only: the answer names the patient in clear.

use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use vellum_ledger::store::search::{RowMatch, SystemMatch};
use vellum_ledger::store::{StoreError, StoredEntry};
use vellum_ledger::Ledger;

use super::events::requester;
use super::history::{kind_of, parse_format};
use super::lookup;
use super::overrides::{parse_time, ParamError};
use super::patients;
use crate::fhir::search_index::split_reference;
use crate::radiology::privacy::{pseudonym, PSEUDONYM_SYSTEM};
use crate::vocabulary::{ACCESS_PROFILE, LOG_OPERATION_SYSTEM};

/// `patient` (required: `system|value`, a bare value, or `Patient/<id>`),
/// `from` (inclusive), `to` (exclusive), `format`.
#[derive(Debug, Clone, Default)]
pub struct PatientQuery {
    pub patient: String,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub format: Option<String>,
}

impl PatientQuery {
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self, ParamError> {
        let mut q = PatientQuery::default();
        for (k, v) in pairs {
            let v = v.trim();
            match k {
                "patient" => q.patient = v.to_string(),
                "from" if !v.is_empty() => q.from = Some(parse_time(v)?),
                "to" if !v.is_empty() => q.to = Some(parse_time(v)?),
                "from" | "to" => {}
                "format" => q.format = parse_format(v)?,
                other => return Err(ParamError::Unknown(other.to_string())),
            }
        }
        if q.patient.is_empty() {
            return Err(ParamError::Required("patient"));
        }
        Ok(q)
    }
}

/// One recorded access or event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessRow {
    pub seq: i64,
    pub id: String,
    pub recorded: String,
    /// `access` (an `audit-log-access` event) or `event`.
    pub category: &'static str,
    pub kind: String,
    /// For an access: read, vread, search, report, export, …; for an
    /// event: its first subtype code, else its type code.
    pub operation: String,
    /// Who: the requesting user.
    pub user: String,
    pub roles: Vec<String>,
    /// The client's network address.
    pub client: String,
    pub outcome: String,
    /// For a search, report, export …: the request as recorded (method,
    /// path and query).
    pub request: String,
    /// For a read: the events read (`AuditEvent/<id>`).
    pub events_read: Vec<String>,
    pub link: String,
}

/// The answer, and the stored `what`s that matched (for the access record).
#[derive(Debug, Clone, Serialize)]
pub struct PatientAccess {
    pub patient: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub accesses: usize,
    pub events: usize,
    pub rows: Vec<AccessRow>,
    #[serde(skip)]
    pub patients: Vec<Value>,
}

/// Texts a matching body must contain (a cheap test before parsing): the
/// value asked for, and its pseudonym when a key is configured.
fn needles(wanted: &str, key: Option<&[u8]>) -> Vec<String> {
    let escaped = |s: &str| {
        let j = serde_json::to_string(s).unwrap_or_default();
        j.trim_matches('"').to_string()
    };
    let (system, value) = match wanted.split_once('|') {
        Some((s, v)) => (Some(s), v),
        None => (None, wanted),
    };
    let mut n = vec![escaped(value)];
    if let (Some(k), Some(_)) = (key, system) {
        n.push(pseudonym(k, system, value));
    }
    n
}

/// The entries whose entity names the patient (found through the search
/// index), in ledger order: by the reference as written, by the identifier
/// value (of the system asked for, or any when none was given), and by its
/// pseudonym when a key is configured. [`compute`] applies the exact rule.
async fn candidates(
    ledger: &Ledger,
    wanted: &str,
    key: Option<&[u8]>,
) -> Result<Vec<StoredEntry>, StoreError> {
    let head = ledger.head().await?.seq;
    let mut found = BTreeMap::new();
    // By reference: `Type/id` (relative or absolute) through the indexed
    // type and id (a superset of the reference as written; the exact rule
    // is applied below); an identifier `system|value` is never a
    // reference; anything else (urn:uuid:…) by the reference as written,
    // which the index can only scan for.
    let by_reference = match split_reference(wanted) {
        (Some(ty), Some(id)) => Some(RowMatch::TypedId { ty, id }),
        _ if wanted.contains('|') => None,
        _ => Some(RowMatch::Exact(wanted.to_string())),
    };
    if let Some(m) = by_reference {
        lookup::collect(ledger, lookup::has("entity", vec![m]), head, &mut found).await?;
    }
    let mut ids = Vec::new();
    match wanted.split_once('|') {
        Some((system, value)) => {
            ids.push(RowMatch::Value {
                val: value.to_string(),
                sys: SystemMatch::Is(system.to_string()),
            });
            if let Some(k) = key {
                ids.push(RowMatch::Value {
                    val: pseudonym(k, Some(system), value),
                    sys: SystemMatch::Is(PSEUDONYM_SYSTEM.to_string()),
                });
            }
        }
        None => ids.push(lookup::value(wanted)),
    }
    lookup::collect(
        ledger,
        lookup::has("entity:identifier", ids),
        head,
        &mut found,
    )
    .await?;
    Ok(found.into_values().collect())
}

pub async fn compute(
    ledger: &Ledger,
    q: &PatientQuery,
    key: Option<&[u8]>,
) -> Result<PatientAccess, StoreError> {
    let needles = needles(&q.patient, key);
    let mut out = PatientAccess {
        patient: q.patient.clone(),
        from: q.from.map(vellum_ledger::stamp),
        to: q.to.map(vellum_ledger::stamp),
        accesses: 0,
        events: 0,
        rows: Vec::new(),
        patients: Vec::new(),
    };
    let mut each = |seq: i64, body: &str| {
        if !needles.iter().any(|n| body.contains(n.as_str())) {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return;
        };
        let Some(recorded) = v["recorded"]
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        else {
            return;
        };
        if q.from.is_some_and(|f| recorded < f) || q.to.is_some_and(|t| recorded >= t) {
            return;
        }
        let matched: Vec<&Value> = patient_whats(&v)
            .filter(|w| patients::matches(w, &q.patient, key))
            .collect();
        if matched.is_empty() {
            return;
        }
        for w in matched {
            if !out.patients.contains(w) {
                out.patients.push(w.clone());
            }
        }
        out.rows.push(row(&v, seq, recorded));
    };
    for e in candidates(ledger, &q.patient, key).await? {
        each(e.seq, &e.body);
    }
    out.accesses = out.rows.iter().filter(|r| r.category == "access").count();
    out.events = out.rows.len() - out.accesses;
    Ok(out)
}

/// The `what` of every patient entity (type 1 Person, role 1 Patient).
fn patient_whats(v: &Value) -> impl Iterator<Item = &Value> {
    v["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"]["code"] == "1" && e["role"]["code"] == "1")
        .map(|e| &e["what"])
}

fn row(v: &Value, seq: i64, recorded: OffsetDateTime) -> AccessRow {
    let is_access = v["meta"]["profile"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p == ACCESS_PROFILE));
    let subtypes = v["subtype"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let subtype = if is_access {
        subtypes
            .iter()
            .find(|c| c["system"] == LOG_OPERATION_SYSTEM)
            .and_then(|c| c["code"].as_str())
    } else {
        subtypes.first().and_then(|c| c["code"].as_str())
    };
    let operation = subtype
        .or(v["type"]["code"].as_str())
        .unwrap_or("")
        .to_string();
    let agents = v["agent"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let user = agents.iter().find(|a| a["requestor"] == true);
    let roles = user
        .and_then(|u| u["role"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r["coding"][0]["code"].as_str().or(r["text"].as_str()))
        .map(str::to_string)
        .collect();
    // The client: DCM 110153 Source Role ID on an access, else the user's.
    let client = agents
        .iter()
        .find(|a| a["type"]["coding"][0]["code"] == "110153")
        .or(user)
        .and_then(|a| a["network"]["address"].as_str())
        .unwrap_or("")
        .to_string();
    let request = if is_access {
        v["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e["query"].as_str())
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let events_read = if is_access {
        v["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["what"]["reference"].as_str())
            .filter(|r| r.starts_with("AuditEvent/"))
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    let id = v["id"].as_str().unwrap_or("").to_string();
    AccessRow {
        events_read,
        seq,
        recorded: vellum_ledger::stamp(recorded),
        category: if is_access { "access" } else { "event" },
        kind: kind_of(v),
        operation,
        user: requester(v),
        roles,
        client,
        outcome: v["outcome"].as_str().unwrap_or("").to_string(),
        request,
        link: format!("/fhir/AuditEvent/{id}"),
        id,
    }
}

/// The CSV columns, in order. Stable: new columns are only ever appended.
pub const CSV_COLUMNS: [&str; 14] = [
    "patient",
    "seq",
    "id",
    "recorded",
    "category",
    "kind",
    "operation",
    "user",
    "roles",
    "client",
    "outcome",
    "request",
    "link",
    "events_read",
];

pub fn to_csv(r: &PatientAccess) -> String {
    let mut out = String::new();
    super::csv::line(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    for x in &r.rows {
        super::csv::line(
            &mut out,
            [
                r.patient.clone(),
                x.seq.to_string(),
                x.id.clone(),
                x.recorded.clone(),
                x.category.to_string(),
                x.kind.clone(),
                x.operation.clone(),
                x.user.clone(),
                x.roles.join(";"),
                x.client.clone(),
                x.outcome.clone(),
                x.request.clone(),
                x.link.clone(),
                x.events_read.join(";"),
            ],
        );
    }
    out
}
