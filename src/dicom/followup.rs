//! The follow-up `pixel-digest` event (profile
//! `https://vellum-audit.org/fhir/StructureDefinition/pixel-digest`,
//! docs/profiles.md): appended by the digest worker when the digest of a
//! study that an earlier event stored as pending is finally computed (or
//! when it gives up). It references the first event
//! (`entity.what.reference = AuditEvent/<id>`) and carries the study entity
//! as in docs/dicom.md. The first event is never changed (insert-only ledger).

use serde_json::{json, Value};

use vellum_json::{self as canonical, Json};

use super::enrich::{study_uid_of, DETAIL_DIGEST, NUMBER_OF_INSTANCES_URL};

pub use crate::vocabulary::PIXEL_DIGEST_PROFILE as PROFILE;
/// The sender's digest from the first event, when it differs from vellum's.
pub const DETAIL_SENDER_DIGEST: &str = "sender-pixel-sha256";
/// agree | mismatch | vellum-only | unavailable.
pub const DETAIL_CHECK: &str = "digest-check";
/// Why no digest could be computed (a "gave up" follow-up).
pub const DETAIL_UNAVAILABLE: &str = "pixel-sha256-unavailable";

use crate::vocabulary::{DCM, ENTITY_TYPE, OBJECT_ROLE, SOURCE_TYPE_SYSTEM as SOURCE_TYPE};

/// What the worker found for one pending study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Computed {
    Digest {
        base64: String,
        instances: usize,
    },
    /// The study stayed unavailable beyond `pending_give_up_after_s`.
    GaveUp(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FollowupError {
    #[error("the referenced event is not JSON")]
    NotJson,
    #[error("the referenced event has no entity for the study")]
    NoStudyEntity,
}

/// The follow-up event for `study_uid` of the stored event `event_id`
/// (`original` = its stored body), recorded at `recorded` (UTC instant).
/// Returns the JSON and whether a sender digest differed from vellum's.
pub fn build(
    original: &str,
    event_id: &str,
    study_uid: &str,
    result: &Computed,
    recorded: &str,
) -> Result<(String, bool), FollowupError> {
    let root = canonical::parse(original.as_bytes()).map_err(|_| FollowupError::NotJson)?;
    let entities = root
        .get("entity")
        .and_then(Json::as_array)
        .ok_or(FollowupError::NoStudyEntity)?;
    let study = entities
        .iter()
        .find(|e| study_uid_of(e).as_deref() == Some(study_uid))
        .ok_or(FollowupError::NoStudyEntity)?;
    // The study's identity exactly as the first event wrote it.
    let what: Value = study
        .get("what")
        .and_then(|w| serde_json::from_slice(&canonical::to_canonical(w)).ok())
        .ok_or(FollowupError::NoStudyEntity)?;
    let supplied = study
        .get("detail")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .find(|d| d.get("type").and_then(Json::as_str) == Some(DETAIL_DIGEST))
        .and_then(|d| d.get("valueBase64Binary").and_then(Json::as_str))
        .map(str::to_string);

    let mut details = Vec::new();
    let mut extensions = Vec::new();
    let mut mismatch = false;
    let (outcome, outcome_desc) = match result {
        Computed::Digest { base64, instances } => {
            details.push(json!({"type": DETAIL_DIGEST, "valueBase64Binary": base64}));
            extensions.push(json!({"url": NUMBER_OF_INSTANCES_URL, "valueInteger": instances}));
            let check = match &supplied {
                None => "vellum-only",
                Some(s) if s == base64 => "agree",
                Some(s) => {
                    mismatch = true;
                    details.push(json!({"type": DETAIL_SENDER_DIGEST, "valueBase64Binary": s}));
                    "mismatch"
                }
            };
            details.push(json!({"type": DETAIL_CHECK, "valueString": check}));
            if mismatch {
                (
                    "4",
                    Some("the sender-supplied pixel digest differs from vellum's".to_string()),
                )
            } else {
                ("0", None)
            }
        }
        Computed::GaveUp(why) => {
            details.push(json!({"type": DETAIL_UNAVAILABLE, "valueString": why}));
            details.push(json!({"type": DETAIL_CHECK, "valueString": "unavailable"}));
            ("4", Some(format!("pixel digest not computed: {why}")))
        }
    };
    let mut study_entity = json!({
        "what": what,
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
        "detail": details,
    });
    if !extensions.is_empty() {
        study_entity["extension"] = Value::Array(extensions);
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "meta": {"profile": [PROFILE]},
        "type": {"system": DCM, "code": "110103", "display": "DICOM Instances Accessed"},
        "action": "R",
        "recorded": recorded,
        "outcome": outcome,
        "agent": [{
            "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
            "who": {"display": "vellum"},
            "requestor": true
        }],
        "source": {
            "observer": {"display": "vellum"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]
        },
        "entity": [
            {
                "what": {"reference": format!("AuditEvent/{event_id}")},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
                "description": "the event whose study pixel digest was pending"
            },
            study_entity
        ]
    });
    if let Some(d) = outcome_desc {
        event["outcomeDesc"] = Value::String(d);
    }
    Ok((event.to_string(), mismatch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original(extra_detail: &str) -> String {
        format!(
            r#"{{"resourceType":"AuditEvent","entity":[{{"what":{{"identifier":{{"type":{{"coding":[{{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110180"}}]}},"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}}}},"detail":[{{"type":"pixel-sha256-pending","valueString":"x"}}{extra_detail}]}}]}}"#
        )
    }

    fn found() -> Computed {
        Computed::Digest {
            base64: "AAAA".into(),
            instances: 2,
        }
    }

    #[test]
    fn the_follow_up_references_the_event_and_carries_the_digest() {
        let (body, mismatch) = build(
            &original(""),
            "ev-1",
            "1.2.3",
            &found(),
            "2026-01-01T00:00:00.000000Z",
        )
        .unwrap();
        assert!(!mismatch);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["entity"][0]["what"]["reference"], "AuditEvent/ev-1");
        let study = &v["entity"][1];
        assert_eq!(study["what"]["identifier"]["value"], "urn:oid:1.2.3");
        assert_eq!(study["detail"][0]["type"], "pixel-sha256");
        assert_eq!(study["detail"][0]["valueBase64Binary"], "AAAA");
        assert_eq!(study["extension"][0]["valueInteger"], 2);
        assert_eq!(v["outcome"], "0");
    }

    #[test]
    fn a_differing_sender_digest_is_recorded_as_a_mismatch() {
        let o = original(r#",{"type":"pixel-sha256","valueBase64Binary":"BBBB"}"#);
        let (body, mismatch) =
            build(&o, "ev-1", "1.2.3", &found(), "2026-01-01T00:00:00.000000Z").unwrap();
        assert!(mismatch);
        let v: Value = serde_json::from_str(&body).unwrap();
        let d = &v["entity"][1]["detail"];
        assert_eq!(d[0]["valueBase64Binary"], "AAAA");
        assert_eq!(d[1]["type"], DETAIL_SENDER_DIGEST);
        assert_eq!(d[1]["valueBase64Binary"], "BBBB");
        assert_eq!(d[2]["valueString"], "mismatch");
        assert_eq!(v["outcome"], "4");
    }

    #[test]
    fn an_event_without_the_study_is_refused() {
        assert!(build(&original(""), "e", "9.9", &found(), "x").is_err());
    }
}
