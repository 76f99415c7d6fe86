//! Every message → `hl7v2-message-receipt` AuditEvent. The building blocks
//! (agents, source, message/patient/order entities) are shared with the AI
//! mappings.

use super::fields::{Cx, Hd, OrderNumber};
use super::{Inbound, HL7V2_SYSTEM, RECEIPT_PROFILE};
use vellum_json::write::{object, Arr, Obj};

pub(crate) use crate::vocabulary::{DCM, ENTITY_TYPE, OBJECT_ROLE, V2_0203};

pub fn event(inbound: &Inbound, recorded: &str) -> String {
    let h = &inbound.header;
    let (type_code, type_display) = event_type(&h.message_code);
    let mut out = String::with_capacity(2048);
    object(&mut out, |o| {
        o.str("resourceType", "AuditEvent")
            .obj("meta", |m| {
                m.arr("profile", |a| {
                    a.str(RECEIPT_PROFILE);
                });
            })
            .coding("type", DCM, type_code, type_display)
            .arr("subtype", |a| message_subtypes(a, inbound))
            .str("action", action(&h.message_code, &h.trigger))
            .str("recorded", recorded)
            .str("outcome", "0")
            .arr("agent", |a| {
                a.obj(|x| sender_agent(x, inbound, true));
                a.obj(|x| receiver_agent(x, inbound));
            })
            .obj("source", |s| source(s, inbound))
            .arr("entity", |a| {
                a.obj(|e| message_entity(e, inbound));
                patient_entity(a, inbound.fields.patient.as_ref());
                order_entities(a, &inbound.fields.orders);
            });
    });
    out
}

/// AuditEvent.type by message type: orders → DCM 110109 "Order Record";
/// everything else (ADT, ORU, …: they update a patient's record) →
/// DCM 110110 "Patient Record".
pub fn event_type(message_code: &str) -> (&'static str, &'static str) {
    match message_code {
        "ORM" | "OMG" | "OMI" | "OML" | "ORR" | "ORG" | "ORI" | "ORL" | "OMB" | "OMD" | "OMN"
        | "OMP" | "OMS" | "RDE" | "RDS" | "RGV" | "RAS" => ("110109", "Order Record"),
        _ => ("110110", "Patient Record"),
    }
}

/// AuditEvent.action: ADT updates (A08, A31…) → U, cancels/deletes → D,
/// everything else → C (the message creates information).
pub fn action(message_code: &str, trigger: &str) -> &'static str {
    if message_code == "ADT" {
        match trigger {
            "A08" | "A31" | "A40" | "A41" | "A42" | "A43" | "A44" | "A47" | "A18" | "A34"
            | "A35" | "A36" | "A39" => "U",
            "A11" | "A12" | "A13" | "A23" | "A27" | "A29" | "A32" | "A33" | "A38" => "D",
            _ => "C",
        }
    } else {
        "C"
    }
}

/// subtype: message type (HL7 table 0076) and trigger event (table 0003).
pub fn message_subtypes(a: &mut Arr, inbound: &Inbound) {
    let h = &inbound.header;
    a.coding(
        "http://terminology.hl7.org/CodeSystem/v2-0076",
        &h.message_code,
        "",
    );
    if !h.trigger.is_empty() {
        a.coding(
            "http://terminology.hl7.org/CodeSystem/v2-0003",
            &h.trigger,
            "",
        );
    }
}

fn hd_identifier(o: &mut Obj, hd: &Hd) {
    match hd.uri() {
        Some(uri) => o.str("system", "urn:ietf:rfc:3986").str("value", &uri),
        None => o.str("value", &hd.label()),
    };
}

/// `who` of an application agent: identifier and `app@facility`.
fn hd_reference(who: &mut Obj, app: &Hd, facility: &Hd) {
    if !app.is_empty() {
        who.obj("identifier", |i| hd_identifier(i, app));
    }
    let label = match (app.label(), facility.label()) {
        (a, f) if a.is_empty() && f.is_empty() => "unknown".to_string(),
        (a, f) if f.is_empty() => a,
        (a, f) if a.is_empty() => format!("@{f}"),
        (a, f) => format!("{a}@{f}"),
    };
    who.str("display", &label);
}

fn facility_location(o: &mut Obj, facility: &Hd) {
    if facility.is_empty() {
        return;
    }
    o.obj("location", |loc| {
        loc.str("display", &facility.label())
            .obj("identifier", |i| hd_identifier(i, facility));
    });
}

/// The sending system (MSH-3/MSH-4), with the peer's IP address.
pub fn sender_agent(a: &mut Obj, inbound: &Inbound, requestor: bool) {
    let h = &inbound.header;
    let facility = h.sending_facility();
    a.concept("type", DCM, "110153", "Source Role ID")
        .obj("who", |w| hd_reference(w, &h.sending_app(), &facility))
        .bool("requestor", requestor)
        .obj("network", |n| {
            n.str("address", &inbound.origin.peer.ip().to_string())
                .str("type", "2");
        });
    facility_location(a, &facility);
}

/// The receiving application named in MSH-5/MSH-6 (vellum's listener).
pub fn receiver_agent(a: &mut Obj, inbound: &Inbound) {
    let h = &inbound.header;
    let app = h.receiving_app();
    let facility = h.receiving_facility();
    a.concept("type", DCM, "110152", "Destination Role ID")
        .obj("who", |w| {
            if app.is_empty() && facility.is_empty() {
                w.str("display", "vellum");
            } else {
                hd_reference(w, &app, &facility);
            }
        })
        .bool("requestor", false)
        .obj("network", |n| {
            n.str("address", &inbound.origin.local.ip().to_string())
                .str("type", "2");
        });
    facility_location(a, &facility);
}

/// source: vellum, an application server (security-source-type 4).
pub fn source(s: &mut Obj, inbound: &Inbound) {
    s.obj("observer", |o| {
        o.str("display", "vellum");
    })
    .arr("type", |a| {
        a.coding(
            "http://terminology.hl7.org/CodeSystem/security-source-type",
            "4",
            "Application Server",
        );
    })
    .opt("site", &inbound.header.receiving_facility().label());
}

fn detail(a: &mut Arr, kind: &str, value: &str) {
    a.obj(|d| {
        d.str("type", kind).str("valueString", value);
    });
}

/// The message itself: control id, type, version, processing id, size and
/// the SHA-256 of the raw bytes (never the content).
pub fn message_entity(e: &mut Obj, inbound: &Inbound) {
    let h = &inbound.header;
    let mut msh9 = h.message_code.clone();
    for part in [&h.trigger, &h.structure] {
        if !part.is_empty() {
            msh9.push('^');
            msh9.push_str(part);
        }
    }
    e.obj("what", |w| {
        w.obj("identifier", |i| {
            i.concept("type", HL7V2_SYSTEM, "MSH-10", "Message Control ID")
                .str("value", &h.control_id());
        });
    })
    .coding("type", ENTITY_TYPE, "2", "System Object")
    .coding("role", OBJECT_ROLE, "20", "Job")
    .str("name", &msh9)
    .arr("detail", |a| {
        a.obj(|d| {
            d.str("type", "sha256")
                .str("valueBase64Binary", &inbound.sha256_b64);
        });
        detail(a, "MSH-9", &msh9);
        detail(a, "MSH-11", &h.processing_id());
        detail(a, "MSH-12", &h.version());
        detail(a, "byte-length", &inbound.byte_len.to_string());
        detail(
            a,
            "segment-count",
            &inbound.fields.segment_count.to_string(),
        );
        if !h.datetime.is_empty() {
            detail(a, "MSH-7", &h.datetime);
        }
        if !h.charset.is_empty() {
            detail(a, "MSH-18", &h.charset);
        }
    });
}

/// `[privacy] pseudonymise_patients`: replaces PID-3 by its HMAC-SHA-256
/// pseudonym (system `https://vellum-audit.org/fhir/pseudonym`) before
/// any mapping sees it; the identifier type and assigner go too (they say
/// which directory the number came from).
pub fn minimise_patient(inbound: &mut Inbound, privacy: &crate::config::PrivacySettings) {
    let Some(p) = inbound.fields.patient.as_mut() else {
        return;
    };
    let system = p.authority.uri().unwrap_or_else(|| p.authority.label());
    let stored = crate::radiology::privacy::patient_id(privacy, Some(&system), &p.id);
    if stored.pseudonymised {
        p.id = stored.value;
        p.authority = Hd {
            namespace: String::new(),
            universal_id: crate::radiology::privacy::PSEUDONYM_SYSTEM.to_string(),
            universal_id_type: "URI".to_string(),
        };
        p.type_code = String::new();
    }
}

/// The patient from PID-3 (the MR identifier when present), pseudonymised
/// by [`minimise_patient`] when configured.
pub fn patient_entity(a: &mut Arr, patient: Option<&Cx>) {
    let Some(p) = patient else {
        return;
    };
    a.obj(|e| {
        e.obj("what", |w| {
            w.obj("identifier", |id| {
                id.str("value", &p.id);
                if let Some(uri) = p.authority.uri() {
                    id.str("system", &uri);
                } else if !p.authority.is_empty() {
                    id.obj("assigner", |x| {
                        x.str("display", &p.authority.label());
                    });
                }
                if !p.type_code.is_empty() && !p.type_code.contains(char::is_whitespace) {
                    id.concept("type", V2_0203, &p.type_code, "");
                }
            });
        })
        .coding("type", ENTITY_TYPE, "1", "Person")
        .coding("role", OBJECT_ROLE, "1", "Patient");
    });
}

/// Placer/filler order numbers (ORC-2/3, OBR-2/3) and the accession
/// number (OBR-18), one entity each (duplicates removed).
pub fn order_entities(a: &mut Arr, orders: &[OrderNumber]) {
    for o in orders {
        let display = match o.type_code {
            "PLAC" => "Placer Identifier",
            "FILL" => "Filler Identifier",
            _ => "Accession ID",
        };
        a.obj(|e| {
            e.obj("what", |w| {
                w.obj("identifier", |id| {
                    id.concept("type", V2_0203, o.type_code, display)
                        .str("value", &o.value);
                    if let Some(uri) = o.authority.uri() {
                        id.str("system", &uri);
                    } else if !o.authority.is_empty() {
                        id.obj("assigner", |x| {
                            x.str("display", &o.authority.label());
                        });
                    }
                });
            })
            .coding("type", ENTITY_TYPE, "2", "System Object")
            .coding("role", OBJECT_ROLE, "4", "Domain Resource")
            .str("description", &o.source);
        });
    }
}
