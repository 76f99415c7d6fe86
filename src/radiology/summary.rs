//! The report summary row of a stored AI event (inference, override,
//! rendering, model deployment): the fields the QA reports use, derived
//! from the canonical body when the event is submitted and stored beside
//! the entry by the ledger's writer (`summary_event`, `summary_finding`).
//! The same function serves the upgrade back-fill and `vellum verify`,
//! which re-derive the rows from the stored bodies.
//!
//! Fields per kind: inference — model, version (from the model entity
//! `name|version`, else the model agent), site (`source.site`), actor (the
//! requesting user), latency-ms, cpu-fallback, the study's UID, pixel
//! digest and digest check, the patient entity's `what` (JSON), every
//! finding detail (code, confidence text) in order; override — refers_to
//! (the inference), action, actor (the radiologist), time-to-action-ms as
//! recorded; rendering — refers_to; deployment — model, version.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vellum_ledger::store::summary::{Summary, SummaryFinding, SummaryKind};

use crate::vocabulary::{
    DEPLOYMENT_PROFILE, INFERENCE_PROFILE, MODEL_VERSION_SYSTEM, OVERRIDE_PROFILE,
    RENDERING_PROFILE,
};

/// Cheap pre-check: an AI event's canonical body names its profile URL.
pub fn may_be_ai_event(body: &str) -> bool {
    [
        INFERENCE_PROFILE,
        OVERRIDE_PROFILE,
        RENDERING_PROFILE,
        DEPLOYMENT_PROFILE,
    ]
    .iter()
    .any(|p| body.contains(p))
}

/// The summary row of a canonical body, `None` when it is not an AI event
/// the reports count (no parsable `recorded`, an override without action
/// or inference, …). A draft's body (placeholder `lastUpdated`) and the
/// stored body give the same row.
pub fn of_body(body: &str) -> Option<Summary> {
    if !may_be_ai_event(body) {
        return None;
    }
    let v = serde_json::from_str::<Value>(body).ok()?;
    of_value(&v)
}

/// [`of_body`] of a parsed body.
pub fn of_value(v: &Value) -> Option<Summary> {
    let profiles: Vec<&str> = v["meta"]["profile"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let recorded_text = v["recorded"].as_str()?;
    let recorded = OffsetDateTime::parse(recorded_text, &Rfc3339).ok()?;
    let us = i64::try_from((recorded.unix_timestamp_nanos()).div_euclid(1000)).ok()?;
    let id = v["id"].as_str().unwrap_or("").to_string();
    let row = |kind| Summary::new(kind, id.clone(), recorded_text.to_string(), us);
    if profiles.contains(&INFERENCE_PROFILE) {
        v["id"].as_str()?;
        Some(inference(v, row(SummaryKind::Inference)))
    } else if profiles.contains(&OVERRIDE_PROFILE) {
        v["id"].as_str()?;
        override_of(v, row(SummaryKind::Override))
    } else if profiles.contains(&RENDERING_PROFILE) {
        let mut s = row(SummaryKind::Rendering);
        s.refers_to = Some(referenced_inference(v)?);
        Some(s)
    } else if profiles.contains(&DEPLOYMENT_PROFILE) {
        let (model, version) = model_of(v)?;
        let mut s = row(SummaryKind::Deployment);
        s.model = Some(model);
        s.version = Some(version);
        Some(s)
    } else {
        None
    }
}

fn inference(v: &Value, mut s: Summary) -> Summary {
    let (model, version) = model_of(v).unwrap_or_default();
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
                    s.findings.push(SummaryFinding {
                        code: c.to_string(),
                        confidence: f["confidence"].as_str().map(str::to_string),
                    });
                }
                // The last one recorded counts; a value that does not
                // parse clears it.
                "latency-ms" => {
                    s.latency_ms = value
                        .parse::<u64>()
                        .ok()
                        .and_then(|n| i64::try_from(n).ok())
                }
                "cpu-fallback" => s.cpu_fallback = value.parse().ok(),
                _ => {}
            }
        }
    }
    let study = study_entity(v);
    s.model = Some(model);
    s.version = Some(version);
    s.site = Some(v["source"]["site"].as_str().unwrap_or("").to_string());
    s.actor = Some(requester(v));
    s.patient = patient_what(v).map(Value::to_string);
    s.study_uid = study.and_then(study_uid).map(str::to_string);
    s.pixel_sha256 = study
        .and_then(|e| detail_b64(e, "pixel-sha256"))
        .map(str::to_string);
    s.digest_check = study
        .and_then(|e| details(e).find(|(k, _)| *k == "digest-check"))
        .map(|(_, v)| v.to_string());
    s
}

fn override_of(v: &Value, mut s: Summary) -> Option<Summary> {
    let inference_id = referenced_inference(v)?;
    let reference = v["entity"]
        .as_array()?
        .iter()
        .find(|e| e["what"]["reference"].is_string())?;
    for (k, val) in details(reference) {
        match k {
            "action" => s.action = Some(val.to_string()),
            "time-to-action-ms" => s.tta_ms = val.parse::<i64>().ok(),
            _ => {}
        }
    }
    s.action.as_ref()?;
    s.refers_to = Some(inference_id);
    // The acting person: the requesting agent that is not the model.
    s.actor = Some(requester(v));
    Some(s)
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

/// The inference an override or rendering refers to (`AuditEvent/<id>`).
pub fn referenced_inference(v: &Value) -> Option<String> {
    v["entity"].as_array()?.iter().find_map(|e| {
        e["what"]["reference"]
            .as_str()?
            .strip_prefix("AuditEvent/")
            .map(str::to_string)
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
