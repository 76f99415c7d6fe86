//! What one stored event means to the detection rules: for each rule it
//! counts towards, the subject it is counted under.

use serde_json::Value;

use crate::config::{DetectionSettings, RuleId};
use crate::vocabulary::{
    ACCESS_PROFILE, AI_EVENT_SYSTEM, AI_OUTPUT_PHI_FLAGGED, AUDIT_EVENT_TYPE, DCM, DETAIL_MISMATCH,
    OBJECT_ROLE, PROMPT_INJECTION_ATTEMPT, SECURITY_ALERT_PROFILE,
};

/// One event counted by one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub rule: RuleId,
    /// A user, a client address, `*` (every source) or, for rules that
    /// fire on each event, the event's own id.
    pub subject: String,
}

/// Event types that record an access to patient data: a FHIR RESTful
/// operation, DICOM Patient Record, DICOM Instances Accessed, Query.
const ACCESS_TYPES: &[(&str, &str)] = &[
    (AUDIT_EVENT_TYPE, "rest"),
    (DCM, "110110"),
    (DCM, "110103"),
    (DCM, "110112"),
];

fn has_profile(event: &Value, url: &str) -> bool {
    event["meta"]["profile"]
        .as_array()
        .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(url)))
}

fn entities(event: &Value) -> impl Iterator<Item = &Value> {
    event["entity"].as_array().into_iter().flatten()
}

fn names_patient(event: &Value) -> bool {
    entities(event).any(|e| {
        (e["role"]["system"] == OBJECT_ROLE && e["role"]["code"] == "1")
            || e["what"]["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("Patient/"))
    })
}

fn succeeded(event: &Value) -> bool {
    matches!(event["outcome"].as_str(), None | Some("0"))
}

/// A read of patient data: vellum's own record of a read of its log that
/// names a patient, or a successful access event (action R, or an access
/// event type) that names one.
fn is_phi_access(event: &Value) -> bool {
    if !names_patient(event) || !succeeded(event) {
        return false;
    }
    if has_profile(event, ACCESS_PROFILE) || event["action"] == "R" {
        return true;
    }
    let t = &event["type"];
    ACCESS_TYPES
        .iter()
        .any(|(system, code)| t["system"] == *system && t["code"] == *code)
}

/// The user who asked: the requestor agent's identifier
/// (`system|value`), reference or display.
fn user(event: &Value) -> Option<String> {
    let agent = event["agent"]
        .as_array()?
        .iter()
        .find(|a| a["requestor"] == true)?;
    let who = &agent["who"];
    if let Some(v) = who["identifier"]["value"].as_str() {
        return Some(match who["identifier"]["system"].as_str() {
            Some(s) => format!("{s}|{v}"),
            None => v.to_string(),
        });
    }
    who["reference"]
        .as_str()
        .or_else(|| who["display"].as_str())
        .map(str::to_string)
}

fn has_subtype(event: &Value, system: &str, code: &str) -> bool {
    event["subtype"]
        .as_array()
        .is_some_and(|s| s.iter().any(|c| c["system"] == system && c["code"] == code))
}

/// A digest check that found a mismatch: vellum's digest recorded beside
/// the sender's at intake, or a follow-up's `digest-check` of `mismatch`.
fn has_mismatch(event: &Value) -> bool {
    entities(event).any(|e| {
        e["detail"].as_array().is_some_and(|d| {
            d.iter().any(|x| {
                x["type"] == DETAIL_MISMATCH
                    || (x["type"] == "digest-check" && x["valueString"] == "mismatch")
            })
        })
    })
}

/// The client address a failed authentication came from.
fn client(event: &Value) -> String {
    event["agent"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|a| a["network"]["address"].as_str())
        .unwrap_or("unknown")
        .to_string()
}

/// Every rule `event` counts towards (only the rules that run). `outside`
/// says whether the event's time is outside working hours.
pub fn facts(
    event: &Value,
    id: &str,
    outside_hours: bool,
    settings: &DetectionSettings,
) -> Vec<Fact> {
    let mut out = Vec::new();
    // vellum's own alerts are never counted again.
    if has_profile(event, SECURITY_ALERT_PROFILE) {
        return out;
    }
    let mut push = |rule: RuleId, subject: String| {
        if settings.runs(rule) {
            out.push(Fact { rule, subject });
        }
    };
    if is_phi_access(event) {
        let who = user(event).unwrap_or_else(|| "unknown".into());
        if outside_hours {
            push(RuleId::AfterHoursAccess, who.clone());
        }
        push(RuleId::PhiReadVolume, who);
    }
    if has_subtype(event, AI_EVENT_SYSTEM, AI_OUTPUT_PHI_FLAGGED) {
        push(RuleId::AiOutputPhi, id.to_string());
    }
    if has_subtype(event, AI_EVENT_SYSTEM, PROMPT_INJECTION_ATTEMPT) {
        push(RuleId::PromptInjectionSpike, "*".into());
    }
    if has_mismatch(event) {
        push(RuleId::PixelDigestMismatch, id.to_string());
    }
    if event["type"]["system"] == DCM && event["type"]["code"] == "110114" && !succeeded(event) {
        push(RuleId::AuthFailures, client(event));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawDetection;
    use serde_json::json;

    fn settings() -> DetectionSettings {
        DetectionSettings::validate(&RawDetection::default()).unwrap()
    }

    #[test]
    fn an_inference_naming_a_patient_is_not_a_phi_read() {
        let e = json!({
            "type": {"system": DCM, "code": "110100"}, "action": "E", "outcome": "0",
            "agent": [{"who": {"display": "model"}, "requestor": true}],
            "entity": [{"what": {"reference": "Patient/p1"}}]
        });
        assert!(facts(&e, "x", true, &settings()).is_empty());
    }

    #[test]
    fn a_read_naming_a_patient_counts_for_its_user() {
        let e = json!({
            "type": {"system": DCM, "code": "110110"}, "action": "R", "outcome": "0",
            "agent": [{"who": {"identifier": {"system": "urn:u", "value": "dr-a"}}, "requestor": true}],
            "entity": [{"what": {"reference": "Patient/p1"}}]
        });
        let f = facts(&e, "x", true, &settings());
        assert_eq!(
            f,
            vec![
                Fact {
                    rule: RuleId::AfterHoursAccess,
                    subject: "urn:u|dr-a".into()
                },
                Fact {
                    rule: RuleId::PhiReadVolume,
                    subject: "urn:u|dr-a".into()
                },
            ]
        );
        // A refused read read nothing.
        let mut failed = e.clone();
        failed["outcome"] = json!("8");
        assert!(facts(&failed, "x", true, &settings()).is_empty());
    }

    #[test]
    fn failed_logins_count_per_client_address() {
        let e = json!({
            "type": {"system": DCM, "code": "110114"}, "outcome": "4",
            "agent": [{"who": {"display": "unauthenticated client"}, "requestor": true,
                       "network": {"address": "10.1.2.3", "type": "2"}}]
        });
        assert_eq!(
            facts(&e, "x", false, &settings()),
            vec![Fact {
                rule: RuleId::AuthFailures,
                subject: "10.1.2.3".into()
            }]
        );
    }
}
