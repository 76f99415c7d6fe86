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
    /// The user who requested the inference (agent identifier value).
    pub requester: String,
    /// The patient entity's `what`, as stored.
    pub patient: Option<Value>,
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

/// Entries read per page while loading.
const PAGE: i64 = 5000;

/// Reads every AI event up to the current head, in ledger order. A plain
/// walk of the entries: reports need (nearly) every AI event, and in a
/// radiology store most entries are AI events, so walking the subtype
/// index would only add a probe per entry. Bodies that cannot name an AI
/// profile are skipped before they are parsed.
pub async fn load(ledger: &Ledger) -> Result<Dataset, StoreError> {
    let mut data = Dataset::default();
    let mut pending: Vec<(String, Override)> = Vec::new();
    walk(ledger, |seq, body| {
        if may_be_ai_event(body) {
            add(&mut data, &mut pending, seq, body);
        }
    })
    .await?;
    resolve_tta(&mut data, pending);
    Ok(data)
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

pub fn details(entity: &Value) -> impl Iterator<Item = (&str, &str)> {
    entity["detail"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d["type"].as_str()?, d["valueString"].as_str()?)))
}

/// `name|version` from the model entity, else from the model agent
/// (`110150` Application; display "name version").
pub fn model_of(v: &Value) -> Option<(String, String)> {
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
    let mut confidences = Vec::new();
    let (mut latency_ms, mut cpu_fallback) = (None, None);
    for e in v["entity"].as_array().into_iter().flatten() {
        for (kind, value) in details(e) {
            match kind {
                "finding" => {
                    let Ok(f) = serde_json::from_str::<Value>(value) else {
                        continue;
                    };
                    let Some(c) = f["code"].as_str() else {
                        continue;
                    };
                    if let Some(conf) = f["confidence"].as_str() {
                        confidences.push((c.to_string(), conf.to_string()));
                    }
                    if !findings.iter().any(|x| x == c) {
                        findings.push(c.to_string());
                    }
                }
                "latency-ms" => latency_ms = value.parse().ok(),
                "cpu-fallback" => cpu_fallback = value.parse().ok(),
                _ => {}
            }
        }
    }
    let study = study_entity(v);
    Some(Inference {
        seq,
        id: v["id"].as_str()?.to_string(),
        recorded,
        model,
        version,
        site: v["source"]["site"].as_str().unwrap_or("").to_string(),
        findings,
        requester: requester(v),
        patient: patient_what(v).cloned(),
        study_uid: study.and_then(study_uid).map(str::to_string),
        pixel_sha256: study
            .and_then(|e| detail_b64(e, "pixel-sha256"))
            .map(str::to_string),
        digest_check: study
            .and_then(|e| details(e).find(|(k, _)| *k == "digest-check"))
            .map(|(_, v)| v.to_string()),
        latency_ms,
        cpu_fallback,
        confidences,
    })
}

/// The inference an override or rendering refers to (`AuditEvent/<id>`).
pub fn referenced_inference(v: &Value) -> Option<String> {
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
    let radiologist = requester(v);
    Some(Override {
        seq,
        id: v["id"].as_str()?.to_string(),
        inference_id,
        recorded,
        action: action?,
        radiologist,
        time_to_action_ms: tta,
    })
}

/// The requesting agent that is not the model: its identifier value, else
/// its display, else empty.
pub fn requester(v: &Value) -> String {
    v["agent"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["requestor"] == true && a["type"]["coding"][0]["code"] != "110150")
        .and_then(|a| {
            a["who"]["identifier"]["value"]
                .as_str()
                .or(a["who"]["display"].as_str())
        })
        .unwrap_or("")
        .to_string()
}

/// The `what` of the event's patient entity (type 1 Person, role 1 Patient).
pub fn patient_what(v: &Value) -> Option<&Value> {
    v["entity"]
        .as_array()?
        .iter()
        .find_map(|e| (e["type"]["code"] == "1" && e["role"]["code"] == "1").then_some(&e["what"]))
}

/// The study entity: its identifier is of type DCM 110180 Study Instance
/// UID.
pub fn study_entity(v: &Value) -> Option<&Value> {
    v["entity"].as_array()?.iter().find(|e| {
        e["what"]["identifier"]["type"]["coding"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["code"] == "110180"))
    })
}

/// The Study Instance UID of a study entity.
pub fn study_uid(entity: &Value) -> Option<&str> {
    entity["what"]["identifier"]["value"]
        .as_str()
        .map(|s| s.strip_prefix("urn:oid:").unwrap_or(s))
}

/// A base64 detail's value.
pub fn detail_b64<'a>(entity: &'a Value, kind: &str) -> Option<&'a str> {
    entity["detail"]
        .as_array()?
        .iter()
        .find(|d| d["type"] == kind)
        .and_then(|d| d["valueBase64Binary"].as_str())
}
