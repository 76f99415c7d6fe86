//! vellum's record of who read its log: `audit-log-access` events in the
//! IHE BALP Read / PatientRead / Query / PatientQuery patterns (one event per
//! patient found), and the security alerts of refused requests.

use base64::Engine;
use serde_json::{json, Value};

use crate::auth::policy::Access;
use crate::auth::RoleSet;
use crate::vocabulary::{
    ACCESS_PROFILE, AUDIT_EVENT_TYPE, BALP_PATIENT_QUERY, BALP_PATIENT_READ, BALP_QUERY, BALP_READ,
    DCM, ENTITY_TYPE, LOG_OPERATION_SYSTEM, OBJECT_ROLE, PARTICIPATION_SYSTEM, RESTFUL_INTERACTION,
    ROLE_SYSTEM, SOURCE_TYPE_SYSTEM, SUBJECT_SYSTEM,
};

/// Who asked, from where, for what.
#[derive(Debug, Clone)]
pub struct Accessor<'a> {
    pub subject: &'a str,
    pub roles: RoleSet,
    /// The client's IP address as the server saw it.
    pub client_addr: Option<String>,
    /// The server's base URL.
    pub server: &'a str,
    /// `meta.lastUpdated`-style instant of the access.
    pub recorded: &'a str,
}

/// One access to the log, as the handler saw it.
#[derive(Debug, Clone)]
pub struct AccessFacts<'a> {
    pub access: Access,
    /// The raw request (method, path and query, and a form body), recorded
    /// base64 in the query entity.
    pub request: &'a [u8],
    /// Ids of the AuditEvents returned (reads; searches leave it empty:
    /// BALP does not list results).
    pub data: &'a [String],
    /// The `what` of every distinct patient in what was returned.
    pub patients: &'a [Value],
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn is_read(access: Access) -> bool {
    matches!(access, Access::Read | Access::VRead)
}

/// The `audit-log-access` events of one access: one per patient, or one
/// without a patient when none was found.
pub fn access_events(who: &Accessor<'_>, facts: &AccessFacts<'_>) -> Vec<String> {
    if facts.patients.is_empty() {
        return vec![access_event(who, facts, None).to_string()];
    }
    facts
        .patients
        .iter()
        .map(|p| access_event(who, facts, Some(p)).to_string())
        .collect()
}

fn access_event(who: &Accessor<'_>, facts: &AccessFacts<'_>, patient: Option<&Value>) -> Value {
    let read = is_read(facts.access);
    let balp = match (read, patient.is_some()) {
        (true, false) => BALP_READ,
        (true, true) => BALP_PATIENT_READ,
        (false, false) => BALP_QUERY,
        (false, true) => BALP_PATIENT_QUERY,
    };
    let interaction = match facts.access {
        Access::Read => coding(RESTFUL_INTERACTION, "read", "read"),
        Access::VRead => coding(RESTFUL_INTERACTION, "vread", "vread"),
        Access::Search => coding(RESTFUL_INTERACTION, "search-type", "search type"),
        _ => coding(RESTFUL_INTERACTION, "operation", "operation"),
    };
    let operation = coding(
        LOG_OPERATION_SYSTEM,
        facts.access.code(),
        facts.access.code(),
    );
    let mut entities = Vec::new();
    if read {
        for id in facts.data {
            entities.push(json!({
                "what": {"reference": format!("AuditEvent/{id}")},
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
            }));
        }
    } else {
        entities.push(json!({
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "24", "Query"),
            "query": base64::engine::general_purpose::STANDARD.encode(facts.request),
        }));
    }
    if let Some(p) = patient {
        entities.push(json!({
            "what": p,
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        }));
    }
    json!({
        "resourceType": "AuditEvent",
        "meta": {"profile": [ACCESS_PROFILE, balp]},
        "type": coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": [interaction, operation],
        "action": if read { "R" } else { "E" },
        "recorded": who.recorded,
        "outcome": "0",
        "agent": agents(who),
        "source": source(who),
        "entity": entities,
    })
}

/// Client (DCM 110153 Source Role ID), server (110152 Destination Role ID)
/// and the user (information recipient, requestor) with its roles.
fn agents(who: &Accessor<'_>) -> Value {
    let mut client = json!({
        "type": {"coding": [coding(DCM, "110153", "Source Role ID")]},
        "who": {"display": who.client_addr.as_deref().unwrap_or("unknown")},
        "requestor": false,
    });
    if let Some(addr) = &who.client_addr {
        client["network"] = json!({"address": addr, "type": "2"});
    }
    let roles: Vec<Value> = who
        .roles
        .iter()
        .map(|r| json!({"coding": [coding(ROLE_SYSTEM, r.as_str(), r.as_str())]}))
        .collect();
    let mut user = json!({
        "type": {"coding": [coding(PARTICIPATION_SYSTEM, "IRCP", "information recipient")]},
        "who": {"identifier": {"system": SUBJECT_SYSTEM, "value": who.subject}},
        "requestor": true,
    });
    if !roles.is_empty() {
        user["role"] = Value::Array(roles);
    }
    json!([
        client,
        {
            "type": {"coding": [coding(DCM, "110152", "Destination Role ID")]},
            "who": {"display": "vellum"},
            "requestor": false,
            "network": {"address": who.server, "type": "5"},
        },
        user,
    ])
}

fn source(who: &Accessor<'_>) -> Value {
    json!({
        "site": who.server,
        "observer": {"display": "vellum"},
        "type": [coding(SOURCE_TYPE_SYSTEM, "4", "Application Server")],
    })
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No credentials, or credentials vellum does not accept (401).
    Authentication,
    /// A known caller without the role the endpoint needs (403).
    Authorization,
}

/// The security alert of a refused request: DCM 110114 User Authentication
/// (failed login) or DCM 110113 Security Alert with 110132 Use of
/// Restricted Function; outcome 4 (minor failure). `subject` is the
/// authenticated caller of a 403, unknown for a 401.
pub fn security_alert(
    denial: Denial,
    subject: Option<&str>,
    client_addr: Option<&str>,
    server: &str,
    request_line: &str,
    recorded: &str,
) -> String {
    let (kind, subtype) = match denial {
        Denial::Authentication => (
            coding(DCM, "110114", "User Authentication"),
            coding(DCM, "110122", "Login"),
        ),
        Denial::Authorization => (
            coding(DCM, "110113", "Security Alert"),
            coding(DCM, "110132", "Use of Restricted Function"),
        ),
    };
    let mut user = json!({
        "type": {"coding": [coding(PARTICIPATION_SYSTEM, "IRCP", "information recipient")]},
        "requestor": true,
    });
    match subject {
        Some(s) => user["who"] = json!({"identifier": {"system": SUBJECT_SYSTEM, "value": s}}),
        None => user["who"] = json!({"display": "unauthenticated client"}),
    }
    if let Some(addr) = client_addr {
        user["network"] = json!({"address": addr, "type": "2"});
    }
    json!({
        "resourceType": "AuditEvent",
        "type": kind,
        "subtype": [subtype],
        "action": "E",
        "recorded": recorded,
        "outcome": "4",
        "outcomeDesc": match denial {
            Denial::Authentication => "missing or unknown credentials",
            Denial::Authorization => "the caller's roles do not allow this request",
        },
        "agent": [user],
        "source": source(&Accessor {
            subject: "",
            roles: RoleSet::EMPTY,
            client_addr: None,
            server,
            recorded,
        }),
        "entity": [{
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "24", "Query"),
            "query": base64::engine::general_purpose::STANDARD.encode(request_line.as_bytes()),
        }],
    })
    .to_string()
}

/// The `what` of each distinct patient entity (type 1 Person, role 1
/// Patient) of stored event bodies, in first-seen order.
pub fn patients_in<'a>(bodies: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    let mut found: Vec<Value> = Vec::new();
    for body in bodies {
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            continue;
        };
        let Some(entities) = v.get("entity").and_then(Value::as_array) else {
            continue;
        };
        for e in entities {
            let code = |k: &str| e.get(k).and_then(|c| c.get("code")).and_then(Value::as_str);
            if code("type") == Some("1") && code("role") == Some("1") {
                if let Some(what) = e.get("what") {
                    if !found.contains(what) {
                        found.push(what.clone());
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn who() -> Accessor<'static> {
        Accessor {
            subject: "auditor-1",
            roles: RoleSet::of(&[Role::Auditor]),
            client_addr: Some("10.1.2.3".into()),
            server: "https://vellum.example/fhir",
            recorded: "2026-12-03T10:00:00.000000Z",
        }
    }

    #[test]
    fn a_patient_query_gives_one_event_per_patient() {
        let bodies = [
            r#"{"entity":[{"what":{"reference":"Patient/a"},"type":{"code":"1"},"role":{"code":"1"}}]}"#,
            r#"{"entity":[{"what":{"reference":"Patient/b"},"type":{"code":"1"},"role":{"code":"1"}},{"what":{"reference":"Patient/a"},"type":{"code":"1"},"role":{"code":"1"}}]}"#,
        ];
        let patients = patients_in(bodies);
        assert_eq!(patients.len(), 2);
        let facts = AccessFacts {
            access: Access::Search,
            request: b"GET /fhir/AuditEvent?patient=a",
            data: &[],
            patients: &patients,
        };
        let events = access_events(&who(), &facts);
        assert_eq!(events.len(), 2);
        let e: Value = serde_json::from_str(&events[1]).unwrap();
        assert_eq!(e["meta"]["profile"][1], BALP_PATIENT_QUERY);
        assert_eq!(e["action"], "E");
        assert_eq!(e["entity"][1]["what"]["reference"], "Patient/b");
        assert_eq!(e["agent"][2]["who"]["identifier"]["value"], "auditor-1");
    }

    #[test]
    fn a_read_without_patient_names_the_event_read() {
        let data = ["abc".to_string()];
        let facts = AccessFacts {
            access: Access::Read,
            request: b"GET /fhir/AuditEvent/abc",
            data: &data,
            patients: &[],
        };
        let events = access_events(&who(), &facts);
        let e: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(e["meta"]["profile"][1], BALP_READ);
        assert_eq!(e["action"], "R");
        assert_eq!(e["entity"][0]["what"]["reference"], "AuditEvent/abc");
    }
}
