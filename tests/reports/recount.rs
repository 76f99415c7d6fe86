//! An independent recount over the raw stored entries (read straight from
//! the store, parsed here without vellum's report code).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use vellum::store::{AnyStore, Store};

pub const MODEL_VERSION_SYSTEM_SUFFIX: &str = "model-version";

#[derive(Debug, Clone)]
pub struct Inf {
    pub id: String,
    pub recorded: String,
    pub model_version: String,
    pub site: String,
    pub findings: Vec<String>,
    pub requester: String,
    /// `system|value` of the patient entity.
    pub patient: String,
    pub study_uid: String,
}

#[derive(Debug, Clone)]
pub struct Act {
    pub id: String,
    pub action: String,
    pub radiologist: String,
    pub tta: i64,
}

#[derive(Debug, Default)]
pub struct Raw {
    pub inferences: Vec<Inf>,
    pub first_action: HashMap<String, Act>,
    /// Every action per inference id, in seq order.
    pub actions: HashMap<String, Vec<Act>>,
    pub rendered: HashSet<String>,
    /// Every entry, parsed, in seq order.
    pub entries: Vec<(i64, Value)>,
}

/// `system|value` of the first patient entity (type 1, role 1).
pub fn patient_of(v: &Value) -> Option<String> {
    v["entity"].as_array()?.iter().find_map(|e| {
        (e["type"]["code"] == "1" && e["role"]["code"] == "1").then(|| {
            let id = &e["what"]["identifier"];
            match id["value"].as_str() {
                Some(value) => format!("{}|{value}", id["system"].as_str().unwrap_or("")),
                None => e["what"]["reference"].as_str().unwrap_or("").to_string(),
            }
        })
    })
}

fn profile(v: &Value) -> &str {
    let p = v["meta"]["profile"][0].as_str().unwrap_or("");
    p.rsplit('/').next().unwrap_or("")
}

fn reference(v: &Value) -> Option<(String, &Value)> {
    v["entity"].as_array()?.iter().find_map(|e| {
        let r = e["what"]["reference"].as_str()?;
        Some((r.trim_start_matches("AuditEvent/").to_string(), e))
    })
}

fn detail<'a>(e: &'a Value, kind: &str) -> Vec<&'a str> {
    e["detail"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["type"] == kind)
        .filter_map(|d| d["valueString"].as_str())
        .collect()
}

/// Every entry of the store, in seq order, sorted into the three kinds.
pub async fn load(db_url: &str) -> Raw {
    let store = AnyStore::connect(&vellum::config::DatabaseUrl::parse(db_url).unwrap(), None)
        .await
        .unwrap();
    let entries = store.entries_after(0, 10_000_000).await.unwrap();
    let mut raw = Raw::default();
    for e in entries {
        let v: Value = serde_json::from_str(&e.body).unwrap();
        match profile(&v) {
            "radiology-ai-inference" => {
                let entities = v["entity"].as_array().unwrap();
                let mv = entities
                    .iter()
                    .find_map(|x| {
                        let id = &x["what"]["identifier"];
                        id["system"]
                            .as_str()?
                            .ends_with(MODEL_VERSION_SYSTEM_SUFFIX)
                            .then(|| id["value"].as_str().unwrap().to_string())
                    })
                    .unwrap();
                let mut findings = Vec::new();
                for x in entities {
                    for f in detail(x, "finding") {
                        let f: Value = serde_json::from_str(f).unwrap();
                        let code = f["code"].as_str().unwrap().to_string();
                        if !findings.contains(&code) {
                            findings.push(code);
                        }
                    }
                }
                let study_uid = entities
                    .iter()
                    .find_map(|x| {
                        let id = &x["what"]["identifier"];
                        (id["system"] == "urn:dicom:uid").then(|| {
                            id["value"]
                                .as_str()
                                .unwrap()
                                .trim_start_matches("urn:oid:")
                                .to_string()
                        })
                    })
                    .unwrap_or_default();
                raw.inferences.push(Inf {
                    id: v["id"].as_str().unwrap().to_string(),
                    recorded: v["recorded"].as_str().unwrap().to_string(),
                    model_version: mv,
                    site: v["source"]["site"].as_str().unwrap_or("").to_string(),
                    findings,
                    requester: v["agent"][0]["who"]["identifier"]["value"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    patient: patient_of(&v).unwrap_or_default(),
                    study_uid,
                });
            }
            "radiology-ai-override" => {
                let (id, e) = reference(&v).unwrap();
                let act = Act {
                    id: v["id"].as_str().unwrap().to_string(),
                    action: detail(e, "action")[0].to_string(),
                    radiologist: v["agent"][0]["who"]["identifier"]["value"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    tta: detail(e, "time-to-action-ms")[0].parse().unwrap(),
                };
                raw.actions.entry(id.clone()).or_default().push(act.clone());
                raw.first_action.entry(id).or_insert(act);
            }
            "radiology-ai-rendering" => {
                raw.rendered.insert(reference(&v).unwrap().0);
            }
            _ => {}
        }
        raw.entries.push((e.seq, v));
    }
    raw
}

/// What the report's row must say, recounted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Expected {
    pub inferences: u64,
    pub acted_on: u64,
    pub actions: BTreeMap<String, u64>,
    pub overrides: u64,
    pub times: Vec<i64>,
    pub fast_accepts: u64,
    pub never_rendered: u64,
    pub never_acted_on: u64,
}

pub fn nearest_rank(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let k = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[k.max(1) - 1])
}

/// Rows keyed by `key(inference, finding, action)` (None: not counted).
pub fn recount(
    raw: &Raw,
    per_finding: bool,
    fast_ms: i64,
    key: impl Fn(&Inf, &str, Option<&Act>) -> Option<String>,
) -> BTreeMap<String, Expected> {
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for inf in &raw.inferences {
        let act = raw.first_action.get(&inf.id);
        let findings: Vec<&str> = if per_finding {
            inf.findings.iter().map(String::as_str).collect()
        } else {
            vec![""]
        };
        for f in findings {
            let Some(k) = key(inf, f, act) else { continue };
            let row = out.entry(k).or_default();
            row.inferences += 1;
            if !raw.rendered.contains(&inf.id) {
                row.never_rendered += 1;
            }
            match act {
                None => row.never_acted_on += 1,
                Some(a) => {
                    row.acted_on += 1;
                    *row.actions.entry(a.action.clone()).or_default() += 1;
                    if a.action == "reject" || a.action == "accept_with_edit" {
                        row.overrides += 1;
                    }
                    row.times.push(a.tta);
                    if a.action == "accept" && a.tta < fast_ms {
                        row.fast_accepts += 1;
                    }
                }
            }
        }
    }
    for r in out.values_mut() {
        r.times.sort_unstable();
    }
    out
}
