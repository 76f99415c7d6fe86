//! The report's view of the chained AI events: inferences, overrides,
//! renderings and deployments parsed from the stored bodies, read through
//! the ledger (`Ledger::entries_after`, in seq order). Nothing is kept between requests:
//! every report is recomputed from the ledger.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use vellum_ledger::store::StoreError;
use vellum_ledger::Ledger;

use crate::vocabulary::{
    DEPLOYMENT_PROFILE, INFERENCE_PROFILE, MODEL_VERSION_SYSTEM, OVERRIDE_PROFILE,
    RENDERING_PROFILE,
};

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
}

/// One stored override (an action on an inference).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub seq: i64,
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

/// Entries read per page while loading.
const PAGE: i64 = 5000;

/// Reads every AI event up to the current head, in ledger order. A plain
/// walk of the entries: reports need (nearly) every AI event, and in a
/// radiology store most entries are AI events, so walking the subtype
/// index would only add a probe per entry. Bodies that cannot name an AI
/// profile are skipped before they are parsed.
pub async fn load(ledger: &Ledger) -> Result<Dataset, StoreError> {
    let head = ledger.head().await?.seq;
    let mut data = Dataset::default();
    let mut pending: Vec<(String, Override)> = Vec::new();
    let mut after = 0;
    while after < head {
        let page = ledger.entries_after(after, PAGE.min(head - after)).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if may_be_ai_event(&e.body) {
                add(&mut data, &mut pending, e.seq, &e.body);
            }
        }
    }
    resolve_tta(&mut data, pending);
    Ok(data)
}

/// Cheap pre-check: an AI event's canonical body names its profile URL.
fn may_be_ai_event(body: &str) -> bool {
    [
        INFERENCE_PROFILE,
        OVERRIDE_PROFILE,
        RENDERING_PROFILE,
        DEPLOYMENT_PROFILE,
    ]
    .iter()
    .any(|p| body.contains(p))
}

/// Adds one stored body to `data`. Overrides are collected in `pending`
/// until every inference is known (their time to action may need it).
pub fn add(data: &mut Dataset, pending: &mut Vec<(String, Override)>, seq: i64, body: &str) {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return;
    };
    let profiles: Vec<&str> = v["meta"]["profile"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let recorded = v["recorded"]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
    let Some(recorded) = recorded else { return };
    if profiles.contains(&INFERENCE_PROFILE) {
        if let Some(i) = inference(&v, seq, recorded) {
            data.inferences.push(i);
        }
    } else if profiles.contains(&OVERRIDE_PROFILE) {
        if let Some(o) = override_of(&v, seq, recorded) {
            pending.push((o.inference_id.clone(), o));
        }
    } else if profiles.contains(&RENDERING_PROFILE) {
        if let Some(id) = referenced_inference(&v) {
            data.rendered.insert(id);
        }
    } else if profiles.contains(&DEPLOYMENT_PROFILE) {
        if let Some((model, version)) = model_of(&v) {
            data.deployments.push(Deployment {
                model,
                version,
                deployed_at: recorded,
            });
        }
    }
}

/// Files the overrides under their inferences; a missing time to action is
/// the override's `recorded` minus the inference's, when not negative.
pub fn resolve_tta(data: &mut Dataset, pending: Vec<(String, Override)>) {
    let recorded: HashMap<&str, OffsetDateTime> = data
        .inferences
        .iter()
        .map(|i| (i.id.as_str(), i.recorded))
        .collect();
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

fn details(entity: &Value) -> impl Iterator<Item = (&str, &str)> {
    entity["detail"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d["type"].as_str()?, d["valueString"].as_str()?)))
}

/// `name|version` from the model entity, else from the model agent
/// (`110150` Application; display "name version").
fn model_of(v: &Value) -> Option<(String, String)> {
    let entities = v["entity"].as_array().into_iter().flatten();
    for e in entities {
        if e["what"]["identifier"]["system"] == MODEL_VERSION_SYSTEM {
            if let Some((n, ver)) = e["what"]["identifier"]["value"]
                .as_str()
                .and_then(|s| s.split_once('|'))
            {
                return Some((n.to_string(), ver.to_string()));
            }
        }
    }
    v["agent"].as_array()?.iter().find_map(|a| {
        if a["type"]["coding"][0]["code"] != "110150" {
            return None;
        }
        let name = a["who"]["identifier"]["value"].as_str()?.to_string();
        let display = a["who"]["display"].as_str().unwrap_or("");
        let version = display
            .strip_prefix(name.as_str())
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Some((name, version))
    })
}

fn inference(v: &Value, seq: i64, recorded: OffsetDateTime) -> Option<Inference> {
    let (model, version) = model_of(v).unwrap_or_default();
    let mut findings: Vec<String> = Vec::new();
    for e in v["entity"].as_array().into_iter().flatten() {
        for (kind, value) in details(e) {
            if kind != "finding" {
                continue;
            }
            let code = serde_json::from_str::<Value>(value)
                .ok()
                .and_then(|f| f["code"].as_str().map(str::to_string));
            if let Some(c) = code {
                if !findings.contains(&c) {
                    findings.push(c);
                }
            }
        }
    }
    Some(Inference {
        seq,
        id: v["id"].as_str()?.to_string(),
        recorded,
        model,
        version,
        site: v["source"]["site"].as_str().unwrap_or("").to_string(),
        findings,
    })
}

/// The inference an override or rendering refers to (`AuditEvent/<id>`).
fn referenced_inference(v: &Value) -> Option<String> {
    v["entity"].as_array()?.iter().find_map(|e| {
        e["what"]["reference"]
            .as_str()?
            .strip_prefix("AuditEvent/")
            .map(str::to_string)
    })
}

fn override_of(v: &Value, seq: i64, recorded: OffsetDateTime) -> Option<Override> {
    let inference_id = referenced_inference(v)?;
    let reference = v["entity"]
        .as_array()?
        .iter()
        .find(|e| e["what"]["reference"].is_string())?;
    let mut action = None;
    let mut tta = None;
    for (k, val) in details(reference) {
        match k {
            "action" => action = Some(val.to_string()),
            "time-to-action-ms" => tta = val.parse::<i64>().ok(),
            _ => {}
        }
    }
    // The acting person: the requesting agent that is not the model.
    let radiologist = v["agent"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["requestor"] == true && a["type"]["coding"][0]["code"] != "110150")
        .and_then(|a| a["who"]["identifier"]["value"].as_str())
        .unwrap_or("")
        .to_string();
    Some(Override {
        seq,
        inference_id,
        recorded,
        action: action?,
        radiologist,
        time_to_action_ms: tta,
    })
}
