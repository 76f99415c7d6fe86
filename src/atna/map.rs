//! The FHIR R4 DICOM ↔ AuditEvent mapping (R4 AuditEvent "dicom" mapping
//! column), written with vellum's JSON writer.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vellum_json::write::{object, Arr, Obj};

use super::xml::Element;
use super::{Received, DETAIL_MESSAGE, DETAIL_MESSAGE_SHA256, DETAIL_SENDER};
use crate::vocabulary::{
    ATNA_SYSTEM, DCM, DICOM_UID_SYSTEM, ENTITY_TYPE, EXT_ACCESSION, EXT_ANONYMIZED,
    EXT_CONTAINS_STUDY, EXT_ENCRYPTED, EXT_INSTANCE, EXT_MPPS, EXT_NUMBER_OF_INSTANCES,
    EXT_SOP_CLASS, IHE_EVENT_TYPE_SYSTEM, LIFECYCLE_SYSTEM, OBJECT_ROLE, RFC3881_SYSTEM,
    SOURCE_TYPE_SYSTEM,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A coded value as DICOM (`csd-code`, `codeSystemName`, `originalText`)
/// or RFC 3881 (`code`, `codeSystemName`, `displayName`) writes it.
pub(super) struct Code<'a> {
    code: &'a str,
    system: Option<&'static str>,
    display: Option<&'a str>,
}

pub(super) fn code_of(el: &Element) -> Option<Code<'_>> {
    let code = el.attr("csd-code").or_else(|| el.attr("code"))?.trim();
    let display = el.attr("originalText").or_else(|| el.attr("displayName"));
    let system = match el.attr("codeSystemName").map(str::trim) {
        Some("DCM") => Some(DCM),
        Some("RFC-3881" | "RFC3881" | "RFC 3881") => Some(RFC3881_SYSTEM),
        Some("IHE Transactions" | "IHE" | "IHE-XDS") => Some(IHE_EVENT_TYPE_SYSTEM),
        // DICOM's own codes are six digits starting 1; senders often leave
        // the system name out.
        None if code.len() == 6 && code.starts_with('1') => Some(DCM),
        // Other (local) systems have no URI; the code and text are kept.
        _ => None,
    };
    Some(Code {
        code,
        system,
        display,
    })
}

fn write_coding(c: &mut Obj, code: &Code) {
    if let Some(s) = code.system {
        c.str("system", s);
    }
    c.str("code", code.code);
    if let Some(d) = code.display {
        c.str("display", d);
    }
}

fn concept(o: &mut Obj, key: &str, code: &Code) {
    o.obj(key, |cc| {
        cc.arr("coding", |a| {
            a.obj(|c| write_coding(c, code));
        });
    });
}

/// The stored instant of a DICOM `xs:dateTime` with a zone; `None` when
/// it has none (FHIR `instant` needs one).
fn instant(text: &str) -> Option<String> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(vellum_ledger::stamp)
}

fn parse_bool(v: Option<&str>) -> bool {
    matches!(v.map(str::trim), Some("true" | "1" | "TRUE" | "True"))
}

/// Base64 text as it may be stored in `base64Binary` (whitespace removed),
/// or `None` if it is not base64.
fn base64_text(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(compact.as_bytes()).ok().map(|_| compact)
}

fn in_range(v: Option<&str>, max: u32) -> Option<&str> {
    let v = v?.trim();
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .map(|_| v)
}

/// The AuditEvent for a message [`super::parse`] accepted.
pub fn to_audit_event(msg: &Element, rx: &Received) -> String {
    let ev = msg.child("EventIdentification");
    let date_text = ev.and_then(|e| e.attr("EventDateTime"));
    let recorded = date_text.and_then(instant);
    let mut out = String::with_capacity(4096);
    object(&mut out, |o| {
        o.str("resourceType", "AuditEvent");
        if let Some(ev) = ev {
            event_identification(o, ev, recorded.as_deref().unwrap_or(&rx.received));
        }
        o.arr("agent", |a| {
            for p in msg.all("ActiveParticipant") {
                a.obj(|x| participant(x, p));
            }
        });
        if let Some(s) = msg.child("AuditSourceIdentification") {
            o.obj("source", |x| source(x, s));
        }
        o.arr("entity", |a| {
            for p in msg.all("ParticipantObjectIdentification") {
                a.obj(|x| participant_object(x, p, rx));
            }
            let unparsed_date = date_text.filter(|_| recorded.is_none());
            a.obj(|x| message_entity(x, rx, unparsed_date));
        });
    });
    out
}

fn event_identification(o: &mut Obj, ev: &Element, recorded: &str) {
    if let Some(code) = ev.child("EventID").and_then(code_of) {
        o.obj("type", |c| write_coding(c, &code));
    }
    o.arr_opt("subtype", |a| {
        for t in ev.all("EventTypeCode").filter_map(code_of) {
            a.obj(|c| write_coding(c, &t));
        }
    });
    if let Some(action) = ev.attr("EventActionCode") {
        o.str("action", action.trim());
    }
    o.str("recorded", recorded);
    if let Some(outcome) = ev.attr("EventOutcomeIndicator") {
        o.str("outcome", outcome.trim());
    }
    if let Some(desc) = ev.child_text("EventOutcomeDescription") {
        o.str("outcomeDesc", desc);
    }
    o.arr_opt("purposeOfEvent", |a| {
        for p in ev.all("PurposeOfUse").filter_map(code_of) {
            a.obj(|cc| {
                cc.arr("coding", |c| {
                    c.obj(|x| write_coding(x, &p));
                });
            });
        }
    });
}

fn participant(x: &mut Obj, p: &Element) {
    let roles: Vec<Code> = p.all("RoleIDCode").filter_map(code_of).collect();
    if let Some(first) = roles.first() {
        concept(x, "type", first);
    }
    x.arr_opt("role", |a| {
        for r in &roles {
            a.obj(|cc| {
                cc.arr("coding", |c| {
                    c.obj(|y| write_coding(y, r));
                });
            });
        }
    });
    if let Some(user) = p.attr("UserID") {
        x.obj("who", |w| {
            w.obj("identifier", |i| {
                i.str("value", user);
            });
        });
    }
    if let Some(alt) = p.attr("AlternativeUserID") {
        x.str("altId", alt);
    }
    if let Some(name) = p.attr("UserName") {
        x.str("name", name);
    }
    x.bool("requestor", parse_bool(p.attr("UserIsRequestor")));
    if let Some(m) = p
        .child("MediaIdentifier")
        .and_then(|m| m.child("MediaType"))
        .and_then(code_of)
    {
        x.obj("media", |c| write_coding(c, &m));
    }
    if let Some(addr) = p.attr("NetworkAccessPointID") {
        x.obj("network", |n| {
            n.str("address", addr);
            if let Some(t) = in_range(p.attr("NetworkAccessPointTypeCode"), 5) {
                n.str("type", t);
            }
        });
    }
    x.arr_opt("purposeOfUse", |a| {
        for purpose in p.all("PurposeOfUse").filter_map(code_of) {
            a.obj(|cc| {
                cc.arr("coding", |c| {
                    c.obj(|y| write_coding(y, &purpose));
                });
            });
        }
    });
}

fn source_type_display(code: &str) -> &'static str {
    match code {
        "1" => "User Device",
        "2" => "Data Interface",
        "3" => "Web Server",
        "4" => "Application Server",
        "5" => "Database Server",
        "6" => "Security Server",
        "7" => "Network Device",
        "8" => "Network Router",
        _ => "Other",
    }
}

fn source(x: &mut Obj, s: &Element) {
    if let Some(site) = s.attr("AuditEnterpriseSiteID") {
        x.str("site", site);
    }
    x.obj("observer", |r| {
        r.obj("identifier", |i| {
            i.str("value", s.attr("AuditSourceID").unwrap_or("unknown"));
        });
    });
    // The type codes: child elements (DICOM, RFC 3881) or, in some older
    // senders, an attribute.
    let codes: Vec<String> = s
        .all("AuditSourceTypeCode")
        .filter_map(|c| c.attr("csd-code").or_else(|| c.attr("code")))
        .chain(s.attr("AuditSourceTypeCode"))
        .map(|c| c.trim().to_string())
        .collect();
    x.arr_opt("type", |a| {
        for c in &codes {
            if in_range(Some(c), 9).is_some() {
                a.coding(SOURCE_TYPE_SYSTEM, c, source_type_display(c));
            }
        }
    });
}

fn ext_identifier(a: &mut Arr, url: &str, system: Option<&str>, value: &str) {
    a.obj(|e| {
        e.str("url", url).obj("valueIdentifier", |i| {
            if let Some(s) = system {
                i.str("system", s);
            }
            i.str("value", value);
        });
    });
}

fn uid_value(uid: &str) -> String {
    format!("urn:oid:{}", uid.trim())
}

/// The DICOM object description: children of `ParticipantObjectDescription`
/// (RFC 3881 / older DICOM) or of the identification itself (PS3.15 today).
fn dicom_extensions(a: &mut Arr, p: &Element) {
    let holders: Vec<&Element> = std::iter::once(p)
        .chain(p.all("ParticipantObjectDescription"))
        .collect();
    let mut instances: u64 = 0;
    let mut counted = false;
    for h in &holders {
        for m in h.all("MPPS").filter_map(|m| m.attr("UID")) {
            ext_identifier(a, EXT_MPPS, Some(DICOM_UID_SYSTEM), &uid_value(m));
        }
        for acc in h.all("Accession").filter_map(|m| m.attr("Number")) {
            ext_identifier(a, EXT_ACCESSION, None, acc);
        }
        for sop in h.all("SOPClass") {
            if let Some(uid) = sop.attr("UID") {
                a.obj(|e| {
                    e.str("url", EXT_SOP_CLASS).obj("valueReference", |r| {
                        r.obj("identifier", |i| {
                            i.str("system", DICOM_UID_SYSTEM)
                                .str("value", &uid_value(uid));
                        });
                    });
                });
            }
            if let Some(n) = sop
                .attr("NumberOfInstances")
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                instances = instances.saturating_add(n);
                counted = true;
            }
            for i in sop.all("Instance").filter_map(|i| i.attr("UID")) {
                ext_identifier(a, EXT_INSTANCE, Some(DICOM_UID_SYSTEM), &uid_value(i));
            }
        }
        for c in h.all("ParticipantObjectContainsStudy") {
            for s in c.all("StudyIDs").filter_map(|s| s.attr("UID")) {
                ext_identifier(a, EXT_CONTAINS_STUDY, Some(DICOM_UID_SYSTEM), &uid_value(s));
            }
        }
        for (name, url) in [("Encrypted", EXT_ENCRYPTED), ("Anonymized", EXT_ANONYMIZED)] {
            if let Some(el) = h.child(name) {
                let v = parse_bool(Some(el.text.trim()));
                a.obj(|e| {
                    e.str("url", url).bool("valueBoolean", v);
                });
            }
        }
    }
    if counted {
        // FHIR integer is 32-bit.
        let n = instances.min(i32::MAX as u64);
        a.obj(|e| {
            e.str("url", EXT_NUMBER_OF_INSTANCES)
                .raw("valueInteger", &n.to_string());
        });
    }
}

fn participant_object(x: &mut Obj, p: &Element, rx: &Received) {
    let type_code = in_range(p.attr("ParticipantObjectTypeCode"), 4);
    let role = in_range(p.attr("ParticipantObjectTypeCodeRole"), 24);
    let id_type = p.child("ParticipantObjectIDTypeCode").and_then(code_of);
    let is_study = id_type
        .as_ref()
        .is_some_and(|c| c.code == "110180" && c.system == Some(DCM));
    let is_patient = type_code == Some("1") && role == Some("1");
    let pseudonymise = is_patient && rx.privacy.pseudonym_key.is_some();
    x.arr_opt("extension", |a| dicom_extensions(a, p));
    if let Some(id) = p.attr("ParticipantObjectID") {
        x.obj("what", |w| {
            w.obj("identifier", |i| {
                if let Some(t) = &id_type {
                    concept(i, "type", t);
                }
                if is_study {
                    // The form pixel digests are attached to.
                    i.str("system", DICOM_UID_SYSTEM)
                        .str("value", &uid_value(id));
                } else if is_patient {
                    let stored = crate::radiology::privacy::patient_id(&rx.privacy, None, id);
                    if let Some(s) = &stored.system {
                        i.str("system", s);
                    }
                    i.str("value", &stored.value);
                } else {
                    i.str("value", id);
                }
            });
        });
    }
    if let Some(t) = type_code {
        x.coding("type", ENTITY_TYPE, t, "");
    }
    if let Some(r) = role {
        x.coding("role", OBJECT_ROLE, r, "");
    }
    if let Some(l) = in_range(p.attr("ParticipantObjectDataLifeCycle"), 15) {
        x.coding("lifecycle", LIFECYCLE_SYSTEM, l, "");
    }
    if let Some(s) = p.attr("ParticipantObjectSensitivity") {
        x.arr("securityLabel", |a| {
            a.obj(|c| {
                c.str("code", s);
            });
        });
    }
    // A name or a query, never both (R4 constraint sev-1).
    let query = p.child_text("ParticipantObjectQuery");
    match query {
        Some(q) => {
            let b64 = base64_text(q).unwrap_or_else(|| B64.encode(q.as_bytes()));
            x.str("query", &b64);
        }
        None => {
            if let Some(name) = p.child_text("ParticipantObjectName") {
                if !pseudonymise {
                    x.str("name", name);
                }
            }
        }
    }
    let description = p
        .all("ParticipantObjectDescription")
        .map(|d| d.text.trim())
        .find(|t| !t.is_empty());
    if let Some(d) = description {
        x.str("description", d);
    }
    x.arr_opt("detail", |a| {
        for d in p.all("ParticipantObjectDetail") {
            let Some(t) = d.attr("type") else { continue };
            let value = d.attr("value").unwrap_or("");
            a.obj(|o| {
                o.str("type", t);
                match base64_text(value).filter(|v| !v.is_empty()) {
                    Some(b) => o.str("valueBase64Binary", &b),
                    None => o.str("valueString", if value.is_empty() { "-" } else { value }),
                };
            });
        }
    });
}

/// The received message: its SHA-256 (always), its bytes (only with
/// `store_content`), and how it arrived.
fn message_entity(x: &mut Obj, rx: &Received, unparsed_date: Option<&str>) {
    let digest = Sha256::digest(rx.raw);
    x.obj("what", |w| {
        w.obj("identifier", |i| {
            i.str("system", ATNA_SYSTEM)
                .str("value", &format!("sha256:{}", hex::encode(digest)));
        });
    });
    x.coding("type", ENTITY_TYPE, "2", "System Object");
    x.str("description", "audit message as received over syslog");
    x.arr("detail", |a| {
        a.obj(|o| {
            o.str("type", DETAIL_MESSAGE_SHA256)
                .str("valueBase64Binary", &B64.encode(digest));
        });
        a.obj(|o| {
            o.str("type", DETAIL_SENDER).str("valueString", &rx.peer);
        });
        a.obj(|o| {
            o.str("type", "syslog-transport")
                .str("valueString", rx.transport);
        });
        if let Some(h) = &rx.hostname {
            a.obj(|o| {
                o.str("type", "syslog-hostname").str("valueString", h);
            });
        }
        if let Some(h) = &rx.app_name {
            a.obj(|o| {
                o.str("type", "syslog-app-name").str("valueString", h);
            });
        }
        if let Some(pri) = rx.priority {
            a.obj(|o| {
                o.str("type", "syslog-pri")
                    .str("valueString", &pri.to_string());
            });
        }
        if let Some(id) = &rx.msg_id {
            a.obj(|o| {
                o.str("type", "syslog-msgid").str("valueString", id);
            });
        }
        if let Some(d) = unparsed_date {
            a.obj(|o| {
                o.str("type", "event-datetime").str("valueString", d);
            });
        }
        if rx.privacy.store_content && !rx.raw.is_empty() {
            a.obj(|o| {
                o.str("type", DETAIL_MESSAGE)
                    .str("valueBase64Binary", &B64.encode(rx.raw));
            });
        }
    });
}

/// The event for a message that is not a readable DICOM audit message:
/// a Security Alert naming the sender, with the raw bytes' hash.
pub fn parse_failure_event(rx: &Received, reason: &str) -> String {
    let mut out = String::with_capacity(2048);
    let ip = rx
        .peer
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(&rx.peer);
    object(&mut out, |o| {
        o.str("resourceType", "AuditEvent")
            .coding("type", DCM, "110113", "Security Alert")
            .arr("subtype", |a| {
                a.coding(
                    ATNA_SYSTEM,
                    "parse-failure",
                    "Audit message could not be read",
                );
            })
            .str("action", "E")
            .str("recorded", &rx.received)
            .str("outcome", "8")
            .str(
                "outcomeDesc",
                &format!("the syslog message is not a valid DICOM audit message: {reason}"),
            )
            .arr("agent", |a| {
                a.obj(|x| {
                    x.concept("type", DCM, "110153", "Source Role ID");
                    x.obj("who", |w| {
                        w.obj("identifier", |i| {
                            i.str("value", rx.hostname.as_deref().unwrap_or(ip));
                        });
                    });
                    if let Some(app) = &rx.app_name {
                        x.str("altId", app);
                    }
                    x.bool("requestor", true);
                    x.obj("network", |n| {
                        n.str("address", ip).str("type", "2");
                    });
                });
            })
            .obj("source", |s| {
                s.obj("observer", |r| {
                    r.str("display", "vellum ATNA syslog receiver");
                })
                .arr("type", |a| {
                    a.coding(SOURCE_TYPE_SYSTEM, "4", "Application Server");
                });
            })
            .arr("entity", |a| {
                a.obj(|x| message_entity(x, rx, None));
            });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atna::{parse, XmlLimits};

    fn rx(raw: &[u8]) -> Received<'_> {
        Received {
            raw,
            peer: "127.0.0.1:5000".into(),
            transport: "tcp",
            hostname: Some("pacs".into()),
            app_name: None,
            priority: Some(85),
            msg_id: Some("IHE+RFC-3881".into()),
            received: "2026-01-01T00:00:00.000000Z".into(),
            privacy: Default::default(),
        }
    }

    #[test]
    fn maps_a_study_access() {
        let xml = br#"<AuditMessage><EventIdentification EventActionCode="R" EventDateTime="2024-03-01T10:00:00.5+01:00" EventOutcomeIndicator="0"><EventID csd-code="110103" codeSystemName="DCM" originalText="DICOM Instances Accessed"/></EventIdentification><ActiveParticipant UserID="alice" UserIsRequestor="true" NetworkAccessPointID="10.0.0.1" NetworkAccessPointTypeCode="2"/><AuditSourceIdentification AuditSourceID="DCM4CHEE"><AuditSourceTypeCode csd-code="4"/></AuditSourceIdentification><ParticipantObjectIdentification ParticipantObjectID="1.2.3" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3"><ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/><ParticipantObjectDescription><Accession Number="A1"/><SOPClass UID="1.2.840.10008.5.1.4.1.1.2" NumberOfInstances="3"/></ParticipantObjectDescription></ParticipantObjectIdentification></AuditMessage>"#;
        let msg = parse(xml, XmlLimits::default()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&to_audit_event(&msg, &rx(xml))).unwrap();
        assert_eq!(json["recorded"], "2024-03-01T09:00:00.500000Z");
        assert_eq!(json["type"]["code"], "110103");
        assert_eq!(json["agent"][0]["network"]["type"], "2");
        let study = &json["entity"][0];
        assert_eq!(study["what"]["identifier"]["value"], "urn:oid:1.2.3");
        assert_eq!(study["extension"].as_array().unwrap().len(), 3);
        assert_eq!(
            json["entity"][1]["detail"][0]["type"],
            DETAIL_MESSAGE_SHA256
        );
    }

    #[test]
    fn purpose_of_use_and_the_syslog_header_are_kept() {
        let xml = br#"<AuditMessage><EventIdentification EventActionCode="R" EventDateTime="2024-03-01T10:00:00Z" EventOutcomeIndicator="0"><EventID csd-code="110110" codeSystemName="DCM" originalText="Patient Record"/></EventIdentification><ActiveParticipant UserID="alice" UserIsRequestor="true"><PurposeOfUse csd-code="TREAT" codeSystemName="2.16.840.1.113883.5.8" originalText="treatment"/></ActiveParticipant><AuditSourceIdentification AuditSourceID="RIS"/></AuditMessage>"#;
        let msg = parse(xml, XmlLimits::default()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&to_audit_event(&msg, &rx(xml))).unwrap();
        let purpose = &json["agent"][0]["purposeOfUse"][0]["coding"][0];
        assert_eq!(purpose["code"], "TREAT", "{json}");
        assert_eq!(purpose["display"], "treatment", "{json}");
        let details = json["entity"][0]["detail"].as_array().unwrap();
        let value = |t: &str| {
            details
                .iter()
                .find(|d| d["type"] == t)
                .map(|d| d["valueString"].clone())
        };
        assert_eq!(value("syslog-pri"), Some("85".into()), "{json}");
        assert_eq!(value("syslog-msgid"), Some("IHE+RFC-3881".into()));
    }
}
