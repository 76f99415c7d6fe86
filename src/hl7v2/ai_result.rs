//! ORU^R01 carrying AI results → `radiology-ai-inference` AuditEvent.
//!
//! Study from ZDS-1 (docs/dicom.md study entity), one `finding` detail per OBX
//! whose OBX-18 names a model, model identity/version from OBX-18.1/18.2.

use super::fields::{AiResult, Finding};
use super::receipt::{
    message_entity, message_subtypes, order_entities, patient_entity, sender_agent, source, DCM,
    ENTITY_TYPE, OBJECT_ROLE,
};
use super::{Inbound, AI_EVENT_SYSTEM, INFERENCE_PROFILE};
use vellum_json::write::{object, Arr, Obj};

pub fn event(inbound: &Inbound, ai: &AiResult, recorded: &str) -> String {
    let mut out = String::with_capacity(3072);
    object(&mut out, |o| {
        o.str("resourceType", "AuditEvent")
            .obj("meta", |m| {
                m.arr("profile", |a| {
                    a.str(INFERENCE_PROFILE);
                })
                .arr("security", |a| {
                    a.coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                        "AIAST",
                        "Artificial Intelligence asserted",
                    );
                });
            })
            .coding("type", DCM, "110112", "Query")
            .arr("subtype", |a| {
                a.coding(AI_EVENT_SYSTEM, "inference", "AI inference");
                message_subtypes(a, inbound);
            })
            .str("action", "E")
            .str("recorded", recorded)
            .str("outcome", "0")
            .arr("agent", |a| {
                a.obj(|x| sender_agent(x, inbound, true));
                a.obj(|x| model_agent(x, ai));
            })
            .obj("source", |s| source(s, inbound))
            .arr("entity", |a| {
                a.obj(|e| study_entity(e, inbound, ai, true));
                patient_entity(a, inbound.fields.patient.as_ref());
                a.obj(|e| message_entity(e, inbound));
                order_entities(a, &inbound.fields.orders);
                a.obj(|e| {
                    let (model, version) = model_and_version(ai);
                    crate::radiology::build::model_entity(e, &model, &version, None);
                });
            });
    });
    out
}

/// Model name and version from OBX-18 (`unspecified` when the sender
/// gives no version: the profile needs one).
pub fn model_and_version(ai: &AiResult) -> (String, String) {
    let (model, version) = ai.model();
    let version = if version.is_empty() {
        "unspecified".to_string()
    } else {
        version
    };
    (model, version)
}

/// The model as an AI device-like application agent (OBX-18), the same
/// agent the AI API writes.
pub fn model_agent(a: &mut Obj, ai: &AiResult) {
    let (model, version) = ai.model();
    crate::radiology::build::model_agent(a, &model, &version);
}

/// docs/dicom.md: the study as a System Object / Report with its Study Instance
/// UID; with `findings`, the findings as `finding` details.
pub fn study_entity(e: &mut Obj, inbound: &Inbound, ai: &AiResult, findings: bool) {
    e.obj("what", |w| {
        w.obj("identifier", |i| {
            i.concept("type", DCM, "110180", "Study Instance UID")
                .str("system", "urn:dicom:uid")
                .str("value", &format!("urn:oid:{}", ai.study_uid));
        });
    })
    .coding("type", ENTITY_TYPE, "2", "System Object")
    .coding("role", OBJECT_ROLE, "3", "Report");
    if findings {
        e.arr("detail", |a| {
            for f in &ai.findings {
                finding_detail(a, f);
            }
        });
        if let Some(acc) = inbound.fields.orders.iter().find(|o| o.type_code == "ACSN") {
            e.arr("extension", |a| {
                a.obj(|x| {
                    x.str(
                        "url",
                        "http://hl7.org/fhir/StructureDefinition/auditevent-Accession",
                    )
                    .obj("valueIdentifier", |v| {
                        v.str("value", &acc.value);
                    });
                });
            });
        }
    }
}

/// One finding as compact JSON in `valueString` (keys sorted): code,
/// confidence (exact source text), display, model, modelVersion, obx,
/// status, system.
pub fn finding_detail(a: &mut Arr, f: &Finding) {
    let mut v = String::with_capacity(160);
    object(&mut v, |o| {
        o.str("code", &f.code);
        if let Some(c) = &f.confidence {
            o.str("confidence", c);
        }
        o.opt("display", &f.display)
            .str("model", &f.model)
            .opt("modelVersion", &f.model_version)
            .raw("obx", &f.obx.to_string())
            .opt("status", &f.status)
            .opt("system", &f.system);
    });
    a.obj(|d| {
        d.str("type", "finding").str("valueString", &v);
    });
}
