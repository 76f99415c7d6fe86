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
use vellum_json::tape::{Node, Tape};
use vellum_json::JsonView;
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
/// stored body give the same row. The body is read with the borrowing
/// parse (strings stay slices of it): this runs for every AI event on the
/// write path and again in `vellum verify`.
pub fn of_body(body: &str) -> Option<Summary> {
    if !may_be_ai_event(body) {
        return None;
    }
    let tape = Tape::parse(body.as_bytes()).ok()?;
    of_value(tape.root())
}

/// [`of_body`] of a body's borrowing parse: the store's summarizer (the
/// ledger's back-fill and `vellum verify` hand it the parse they hold).
pub fn of_tape(root: Node<'_>) -> Option<Summary> {
    of_value(root)
}

/// [`of_body`] of a parsed body (any [`JsonView`]: a tape, vellum's tree or
/// a serde_json value give the same row).
pub fn of_value<'a, V: JsonView<'a>>(v: V) -> Option<Summary> {
    let profiles = v.get("meta").and_then(|m| m.get("profile"));
    let named = |url: &str| {
        profiles
            .and_then(|p| p.items())
            .into_iter()
            .flatten()
            .any(|p| p.as_str() == Some(url))
    };
    let recorded_text = str_at(v, &["recorded"])?;
    let recorded = OffsetDateTime::parse(recorded_text, &Rfc3339).ok()?;
    let us = i64::try_from((recorded.unix_timestamp_nanos()).div_euclid(1000)).ok()?;
    let id = str_at(v, &["id"]);
    let row = |kind| {
        Summary::new(
            kind,
            id.unwrap_or("").to_string(),
            recorded_text.to_string(),
            us,
        )
    };
    if named(INFERENCE_PROFILE) {
        id?;
        Some(inference(v, row(SummaryKind::Inference)))
    } else if named(OVERRIDE_PROFILE) {
        id?;
        override_of(v, row(SummaryKind::Override))
    } else if named(RENDERING_PROFILE) {
        let mut s = row(SummaryKind::Rendering);
        s.refers_to = Some(referenced_inference(v)?);
        Some(s)
    } else if named(DEPLOYMENT_PROFILE) {
        let (model, version) = model_of(v)?;
        let mut s = row(SummaryKind::Deployment);
        s.model = Some(model);
        s.version = Some(version);
        Some(s)
    } else {
        None
    }
}

/// The string at `path` below `v`.
fn str_at<'a, V: JsonView<'a>>(v: V, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |node, key| node.get(key))
        .and_then(|n| n.as_str())
}

/// The items of the array member `key` (none when it is absent or not an
/// array).
fn items_of<'a, V: JsonView<'a>>(v: V, key: &str) -> impl Iterator<Item = V> + use<'a, V> {
    v.get(key).and_then(|a| a.items()).into_iter().flatten()
}

fn inference<'a, V: JsonView<'a>>(v: V, mut s: Summary) -> Summary {
    let (model, version) = model_of(v).unwrap_or_default();
    for e in items_of(v, "entity") {
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
    s.site = Some(str_at(v, &["source", "site"]).unwrap_or("").to_string());
    s.actor = Some(requester(v));
    // A patient entity without `what` is recorded as `null`, as the rows
    // stored by earlier versions have it.
    s.patient = patient_entity(v).map(|e| {
        e.get("what")
            .map_or_else(|| "null".into(), JsonView::to_text)
    });
    s.study_uid = study.and_then(study_uid).map(str::to_string);
    s.pixel_sha256 = study
        .and_then(|e| detail_b64(e, "pixel-sha256"))
        .map(str::to_string);
    s.digest_check = study
        .and_then(|e| details(e).find(|(k, _)| *k == "digest-check"))
        .map(|(_, v)| v.to_string());
    s
}

fn override_of<'a, V: JsonView<'a>>(v: V, mut s: Summary) -> Option<Summary> {
    let inference_id = referenced_inference(v)?;
    let reference = items_of(v, "entity").find(|e| str_at(*e, &["what", "reference"]).is_some())?;
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

/// An entity's details as (type, valueString).
pub fn details<'a, V: JsonView<'a>>(entity: V) -> impl Iterator<Item = (&'a str, &'a str)> {
    items_of(entity, "detail")
        .filter_map(|d| Some((str_at(d, &["type"])?, str_at(d, &["valueString"])?)))
}

/// The code of an agent's first `type.coding`.
fn agent_type_code<'a, V: JsonView<'a>>(agent: V) -> Option<&'a str> {
    items_of(agent.get("type")?, "coding")
        .next()
        .and_then(|c| str_at(c, &["code"]))
}

/// `name|version` from the model entity, else from the model agent
/// (`110150` Application; display "name version").
pub fn model_of<'a, V: JsonView<'a>>(v: V) -> Option<(String, String)> {
    for e in items_of(v, "entity") {
        if str_at(e, &["what", "identifier", "system"]) == Some(MODEL_VERSION_SYSTEM) {
            if let Some((n, ver)) =
                str_at(e, &["what", "identifier", "value"]).and_then(|s| s.split_once('|'))
            {
                return Some((n.to_string(), ver.to_string()));
            }
        }
    }
    v.get("agent")?.items()?.find_map(|a| {
        if agent_type_code(a) != Some("110150") {
            return None;
        }
        let name = str_at(a, &["who", "identifier", "value"])?.to_string();
        let display = str_at(a, &["who", "display"]).unwrap_or("");
        let version = display
            .strip_prefix(name.as_str())
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Some((name, version))
    })
}

/// The inference an override or rendering refers to (`AuditEvent/<id>`).
pub fn referenced_inference<'a, V: JsonView<'a>>(v: V) -> Option<String> {
    v.get("entity")?.items()?.find_map(|e| {
        str_at(e, &["what", "reference"])?
            .strip_prefix("AuditEvent/")
            .map(str::to_string)
    })
}

/// The requesting agent that is not the model: its identifier value, else
/// its display, else empty.
pub fn requester<'a, V: JsonView<'a>>(v: V) -> String {
    items_of(v, "agent")
        .find(|a| {
            a.get("requestor").and_then(|r| r.as_bool()) == Some(true)
                && agent_type_code(*a) != Some("110150")
        })
        .and_then(|a| str_at(a, &["who", "identifier", "value"]).or(str_at(a, &["who", "display"])))
        .unwrap_or("")
        .to_string()
}

/// The event's patient entity (type 1 Person, role 1 Patient).
fn patient_entity<'a, V: JsonView<'a>>(v: V) -> Option<V> {
    items_of(v, "entity").find(|e| {
        str_at(*e, &["type", "code"]) == Some("1") && str_at(*e, &["role", "code"]) == Some("1")
    })
}

/// The `what` of the event's patient entity.
pub fn patient_what<'a, V: JsonView<'a>>(v: V) -> Option<V> {
    patient_entity(v).and_then(|e| e.get("what"))
}

/// The study entity: its identifier is of type DCM 110180 Study Instance
/// UID.
pub fn study_entity<'a, V: JsonView<'a>>(v: V) -> Option<V> {
    items_of(v, "entity").find(|e| {
        e.get("what")
            .and_then(|w| w.get("identifier"))
            .and_then(|i| i.get("type"))
            .is_some_and(|t| items_of(t, "coding").any(|c| str_at(c, &["code"]) == Some("110180")))
    })
}

/// The Study Instance UID of a study entity.
pub fn study_uid<'a, V: JsonView<'a>>(entity: V) -> Option<&'a str> {
    str_at(entity, &["what", "identifier", "value"])
        .map(|s| s.strip_prefix("urn:oid:").unwrap_or(s))
}

/// A base64 detail's value.
pub fn detail_b64<'a, V: JsonView<'a>>(entity: V, kind: &str) -> Option<&'a str> {
    items_of(entity, "detail")
        .find(|d| str_at(*d, &["type"]) == Some(kind))
        .and_then(|d| str_at(d, &["valueBase64Binary"]))
}
