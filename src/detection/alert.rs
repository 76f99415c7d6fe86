//! The `security-alert` event of one firing (DCM 110113 Security Alert).

use serde_json::{json, Value};

use super::engine::Alert;
use crate::config::RuleId;
use crate::vocabulary::{
    DCM, DETECTION_RULE_SYSTEM, ENTITY_TYPE, OBJECT_ROLE, SECURITY_ALERT_PROFILE,
    SOURCE_TYPE_SYSTEM,
};

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn display(rule: RuleId) -> &'static str {
    match rule {
        RuleId::PhiReadVolume => "PHI read volume",
        RuleId::AfterHoursAccess => "PHI access outside working hours",
        RuleId::AiOutputPhi => "AI output flagged for PHI",
        RuleId::PromptInjectionSpike => "Prompt-injection attempt spike",
        RuleId::PixelDigestMismatch => "Pixel digest mismatch",
        RuleId::AuthFailures => "Failed authentications",
    }
}

/// The alert as a profiled AuditEvent. Its time is the commit time of the
/// entry that tripped the rule, so the same firing always gives the same
/// event.
pub fn alert_event(a: &Alert) -> String {
    let detail = |k: &str, v: String| json!({"type": k, "valueString": v});
    let mut entities = vec![json!({
        "what": {
            "identifier": {"system": DETECTION_RULE_SYSTEM, "value": a.rule.as_str()},
            "display": display(a.rule),
        },
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "13", "Security Resource"),
        "detail": [
            detail("subject", a.subject.clone()),
            detail("window-start", vellum_ledger::stamp(a.window_start)),
            detail("window-end", vellum_ledger::stamp(a.window_end)),
            detail("threshold", a.threshold.to_string()),
            detail("count", a.count.to_string()),
            detail("listed", a.events.len().to_string()),
        ],
    })];
    for t in &a.events {
        entities.push(json!({
            "what": {"reference": format!("AuditEvent/{}", t.id)},
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
        }));
    }
    let desc = if a.threshold == 0 && a.count == 1 {
        format!("{}: a triggering event was stored", a.rule.as_str())
    } else {
        format!(
            "{}: {} events in the window, more than {}",
            a.rule.as_str(),
            a.count,
            a.threshold
        )
    };
    json!({
        "resourceType": "AuditEvent",
        "meta": {"profile": [SECURITY_ALERT_PROFILE]},
        "type": coding(DCM, "110113", "Security Alert"),
        "subtype": [coding(DETECTION_RULE_SYSTEM, a.rule.as_str(), display(a.rule))],
        "action": "E",
        "recorded": a.committed,
        "outcome": "4",
        "outcomeDesc": desc,
        "agent": [{
            "type": {"coding": [coding(DCM, "110150", "Application")]},
            "who": {"display": "vellum detection rules"},
            "requestor": false,
        }],
        "source": {
            "observer": {"display": "vellum"},
            "type": [coding(SOURCE_TYPE_SYSTEM, "4", "Application Server")],
        },
        "entity": entities,
    })
    .to_string()
}
