//! ORU^R01 correcting (OBX-11 `C`) or rejecting (OBX-11 `X`) an AI result
//! → `radiology-ai-override` AuditEvent linked to the earlier inference
//! (`entity.what` = `AuditEvent/<id>`).
//!
//! The earlier inference is the latest `radiology-ai-inference` event for
//! the same Study Instance UID (ZDS-1); the listener finds it (see
//! `mllp::InferenceIndex`). When none is stored the message is kept as a
//! plain receipt event instead (nothing is lost; docs/hl7v2.md).

use sha2::Digest as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ai_result::{finding_detail, model_agent, study_entity};
use super::fields::AiResult;
use super::receipt::{
    message_entity, message_subtypes, order_entities, patient_entity, sender_agent, source, DCM,
    ENTITY_TYPE, OBJECT_ROLE,
};
use super::{Inbound, InferenceRef, AI_EVENT_SYSTEM, OVERRIDE_PROFILE};
use vellum_json::write::object;

/// The override action: any `X` → reject, else (`C`) accept_with_edit.
pub fn override_action(ai: &AiResult) -> &'static str {
    if ai.findings.iter().any(|f| f.status == "X") {
        "reject"
    } else {
        "accept_with_edit"
    }
}

pub fn event(inbound: &Inbound, ai: &AiResult, link: &InferenceRef, recorded: &str) -> String {
    let corrected: Vec<_> = ai
        .findings
        .iter()
        .filter(|f| matches!(f.status.as_str(), "C" | "X"))
        .collect();
    let reason_code = corrected
        .iter()
        .map(|f| f.note_code.as_str())
        .find(|c| !c.is_empty());
    let reason: Vec<&str> = corrected
        .iter()
        .flat_map(|f| f.notes.iter().map(String::as_str))
        .collect();
    let time_to_action = time_to_action_ms(&inbound.header.datetime, link);
    let radiologist = corrected
        .iter()
        .map(|f| f.observer.as_str())
        .find(|o| !o.is_empty());
    let mut out = String::with_capacity(3072);
    object(&mut out, |o| {
        o.str("resourceType", "AuditEvent")
            .obj("meta", |m| {
                m.arr("profile", |a| {
                    a.str(OVERRIDE_PROFILE);
                });
            })
            .coding("type", DCM, "110112", "Query")
            .arr("subtype", |a| {
                a.coding(AI_EVENT_SYSTEM, "override", "AI override");
                a.coding(
                    crate::radiology::OVERRIDE_ACTION_SYSTEM,
                    override_action(ai),
                    "",
                );
                message_subtypes(a, inbound);
            })
            .str("action", "U")
            .str("recorded", recorded)
            .str("outcome", "0")
            .arr("agent", |a| {
                if let Some(rad) = radiologist {
                    a.obj(|x| {
                        x.concept(
                            "type",
                            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "IRCP",
                            "information recipient",
                        )
                        .arr("role", |r| {
                            r.obj(|cc| {
                                cc.arr("coding", |c| {
                                    c.coding("http://snomed.info/sct", "66862007", "Radiologist");
                                });
                            });
                        })
                        .obj("who", |w| {
                            w.obj("identifier", |i| {
                                i.str("value", rad);
                            });
                        })
                        .bool("requestor", true);
                    });
                }
                a.obj(|x| sender_agent(x, inbound, radiologist.is_none()));
                a.obj(|x| model_agent(x, ai));
            })
            .obj("source", |s| source(s, inbound))
            .arr("entity", |a| {
                a.obj(|e| {
                    e.obj("what", |w| {
                        w.str("reference", &format!("AuditEvent/{}", link.id));
                    })
                    .coding("type", ENTITY_TYPE, "2", "System Object")
                    .coding("role", OBJECT_ROLE, "3", "Report")
                    .str(
                        "description",
                        "the AI inference this message corrects or rejects",
                    )
                    .arr("detail", |d| {
                        d.obj(|x| {
                            x.str("type", "action")
                                .str("valueString", override_action(ai));
                        });
                        if let Some(code) = reason_code {
                            d.obj(|x| {
                                x.str("type", "reason-code").str("valueString", code);
                            });
                        }
                        if !reason.is_empty() {
                            let text = reason.join("\n");
                            d.obj(|x| {
                                x.str("type", "reason-text-sha256").str(
                                    "valueBase64Binary",
                                    &super::fields::base64(&sha2::Sha256::digest(text.as_bytes())),
                                );
                            });
                            if inbound.keep_free_text {
                                d.obj(|x| {
                                    x.str("type", "reason-text").str("valueString", &text);
                                });
                            }
                        }
                        if let Some(ms) = time_to_action {
                            d.obj(|x| {
                                x.str("type", "time-to-action-ms")
                                    .str("valueString", &ms.to_string());
                            });
                        }
                        for f in &corrected {
                            finding_detail(d, f);
                        }
                    });
                });
                a.obj(|e| study_entity(e, inbound, ai, false));
                patient_entity(a, inbound.fields.patient.as_ref());
                a.obj(|e| message_entity(e, inbound));
                order_entities(a, &inbound.fields.orders);
            });
    });
    out
}

/// Time to action from clinical times, never receipt times: the
/// correction's MSH-7 minus the inference's own clinical time — its
/// message's MSH-7 when it came over HL7 v2, else its `recorded` (the AI
/// API records the engine's time there) — in ms, when both parse and the
/// difference is not negative. Receipt times stay in each event's
/// `recorded`.
pub fn time_to_action_ms(msh7: &str, inference: &InferenceRef) -> Option<i64> {
    let end = parse_ts(msh7)?;
    let start = match &inference.clinical_time {
        Some(t) => parse_ts(t)?,
        None => OffsetDateTime::parse(&inference.recorded, &Rfc3339).ok()?,
    };
    let ms = (end - start).whole_milliseconds();
    (ms >= 0).then(|| i64::try_from(ms).ok()).flatten()
}

/// HL7 DTM `YYYYMMDDHHMM[SS[.S+]][+/-ZZZZ]` (no zone = UTC).
pub fn parse_ts(s: &str) -> Option<OffsetDateTime> {
    let (body, zone) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (main, frac) = body.split_once('.').unwrap_or((body, ""));
    if main.len() < 12 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main.get(r).and_then(|x| x.parse::<u32>().ok());
    let month = time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(n(0..4)?).ok()?, month, n(6..8)? as u8)
        .ok()?;
    let sec = if main.len() >= 14 { n(12..14)? } else { 0 };
    let micros = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain("000000".chars()).take(6).collect();
        f.parse::<u32>().ok()?
    };
    let t =
        time::Time::from_hms_micro(n(8..10)? as u8, n(10..12)? as u8, sec as u8, micros).ok()?;
    let offset = match zone {
        None => time::UtcOffset::UTC,
        Some(z) if z.len() == 5 => {
            let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
            let h: i8 = z.get(1..3)?.parse().ok()?;
            let m: i8 = z.get(3..5)?.parse().ok()?;
            time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
        Some(_) => return None,
    };
    Some(time::PrimitiveDateTime::new(date, t).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_timestamps() {
        let t = parse_ts("20260314092653+0100").unwrap();
        assert_eq!(t.format(&Rfc3339).unwrap(), "2026-03-14T09:26:53+01:00");
        assert!(parse_ts("202603140926").is_some());
        assert!(parse_ts("20260314").is_none());
        assert!(parse_ts("20261314092653").is_none());
        let api = InferenceRef {
            id: "i".into(),
            recorded: "2026-03-14T09:26:53.000000Z".into(),
            clinical_time: None,
        };
        assert_eq!(time_to_action_ms("20260314092700.5", &api), Some(7500));
        // Received late (recorded after the correction's MSH-7): the
        // interval runs between the two messages' own times.
        let hl7 = InferenceRef {
            recorded: "2026-03-14T10:00:00.000000Z".into(),
            clinical_time: Some("20260314092653+0000".into()),
            ..api
        };
        assert_eq!(time_to_action_ms("20260314092700.5", &hl7), Some(7500));
    }
}
