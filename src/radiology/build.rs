//! Input (already validated) → profiled AuditEvent JSON. The result still
//! goes through `fhir::create::prepare_audit_event` (base R4 and profile
//! validation) before it is appended.

use crate::config::PrivacySettings;
use vellum_json::write::{object, Arr, Obj};

use super::input::{self, Source, User};
use super::privacy::{keep_content, patient_id};
use super::types::{Digest, Instant, Outcome, Uri};
use super::*;

/// What the API knows about a registered model version (from its
/// deployment event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub version: String,
    pub provider: Option<String>,
    pub endpoint: Option<String>,
    pub training_date: Option<String>,
    pub validation_ref: Option<String>,
    /// The deployment event's id.
    pub event_id: String,
    pub deployed_at: String,
}

/// What an override or rendering needs from the inference it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceInfo {
    pub id: String,
    pub recorded: String,
    pub model: Option<(String, String)>,
    pub study_uid: Option<String>,
    /// The inference's patient entity, as stored (already minimised).
    pub patient_entity: Option<String>,
}

use crate::dicom::check::DigestCheck;
pub use crate::dicom::study::StudyDigest;

fn meta(o: &mut Obj, profile: &str, ai_asserted: bool) {
    o.obj("meta", |m| {
        m.arr("profile", |a| {
            a.str(profile);
        });
        if ai_asserted {
            m.arr("security", |a| {
                a.coding(SECURITY_SYSTEM, "AIAST", "Artificial Intelligence asserted");
            });
        }
    });
}

fn subtype(a: &mut Arr, code: &str, display: &str) {
    a.coding(AI_EVENT_SYSTEM, code, display);
}

fn detail(a: &mut Arr, kind: &str, value: &str) {
    a.obj(|d| {
        d.str("type", kind).str("valueString", value);
    });
}

fn detail_b64(a: &mut Arr, kind: &str, digest: &Digest) {
    a.obj(|d| {
        d.str("type", kind)
            .str("valueBase64Binary", &digest.base64());
    });
}

/// The requesting person: IRCP, role, identifier, policy, workstation.
fn user_agent(a: &mut Arr, user: &User, source: &Source, policy: &[Uri]) {
    a.obj(|x| {
        x.concept(
            "type",
            PARTICIPATION_SYSTEM,
            "IRCP",
            "information recipient",
        );
        if let Some(role) = &user.role {
            x.arr("role", |r| {
                r.obj(|cc| role_concept(cc, role.as_str()));
            });
        }
        x.obj("who", |w| {
            w.obj("identifier", |i| {
                if let Some(s) = &user.system {
                    i.str("system", s.as_str());
                }
                i.str("value", user.id.as_str());
            });
            if let Some(n) = &user.name {
                w.str("display", n.as_str());
            }
        })
        .bool("requestor", true);
        if !policy.is_empty() {
            x.arr("policy", |p| {
                for u in policy {
                    p.str(u.as_str());
                }
            });
        }
        if let Some(ip) = &source.ip {
            x.obj("network", |n| {
                n.str("address", &ip.to_string()).str("type", "2");
            });
        } else if let Some(dev) = &source.device {
            x.obj("network", |n| {
                n.str("address", dev.as_str()).str("type", "1");
            });
        }
    });
}

/// `radiologist` → SNOMED CT 66862007; anything else as text.
fn role_concept(cc: &mut Obj, role: &str) {
    if role.eq_ignore_ascii_case("radiologist") {
        cc.arr("coding", |c| {
            c.coding(SNOMED, "66862007", "Radiologist");
        });
    }
    cc.str("text", role);
}

/// The model as an AI device-like application agent with its exact
/// version (HL7 AI Transparency: the Device that asserted the output).
pub fn model_agent(a: &mut Obj, name: &str, version: &str) {
    let display = if version.is_empty() {
        name.to_string()
    } else {
        format!("{name} {version}")
    };
    a.concept("type", DCM, "110150", "Application")
        .obj("who", |w| {
            w.obj("identifier", |i| {
                i.str("system", MODEL_SYSTEM).str("value", name);
            })
            .str("display", &display);
        })
        .bool("requestor", false);
}

/// The model version as an entity: `name|version` and what the
/// registration recorded about it.
pub fn model_entity(e: &mut Obj, name: &str, version: &str, reg: Option<&Registration>) {
    e.obj("what", |w| {
        w.obj("identifier", |i| {
            i.str("system", MODEL_VERSION_SYSTEM)
                .str("value", &format!("{name}|{version}"));
        })
        .str("display", &format!("{name} {version}"));
    })
    .coding("type", ENTITY_TYPE, "2", "System Object")
    .coding("role", OBJECT_ROLE, "4", "Domain Resource")
    .arr_opt("detail", |d| {
        detail(d, "model-name", name);
        detail(d, "model-version", version);
        if let Some(r) = reg {
            for (k, v) in [
                ("provider", &r.provider),
                ("endpoint", &r.endpoint),
                ("training-date", &r.training_date),
                ("validation-ref", &r.validation_ref),
            ] {
                if let Some(v) = v {
                    detail(d, k, v);
                }
            }
            if !r.event_id.is_empty() {
                detail(d, "deployment-event", &format!("AuditEvent/{}", r.event_id));
            }
        }
    });
}

/// docs/dicom.md study entity (System Object / Report, DCM 110180 UID).
pub fn study_identity(e: &mut Obj, uid: &str) {
    e.obj("what", |w| {
        w.obj("identifier", |i| {
            i.concept("type", DCM, "110180", "Study Instance UID")
                .str("system", "urn:dicom:uid")
                .str("value", &format!("urn:oid:{uid}"));
        });
    })
    .coding("type", ENTITY_TYPE, "2", "System Object")
    .coding("role", OBJECT_ROLE, "3", "Report");
}

/// One finding as compact JSON (keys sorted, confidence as exact text),
/// the same shape the HL7 v2 mapping writes.
pub fn finding_json(f: &input::Finding) -> String {
    let mut v = String::with_capacity(128);
    object(&mut v, |o| {
        o.str("code", f.code.as_str());
        if let Some(c) = &f.confidence {
            o.str("confidence", c.as_str());
        }
        if let Some(d) = &f.display {
            o.str("display", d.as_str());
        }
        if let Some(s) = &f.system {
            o.str("system", s.as_str());
        }
    });
    v
}

/// The digest check's code (agree / mismatch / vellum-only / unverified /
/// none, the one rule of `dicom::check`) and which digest is `pixel-sha256`.
pub fn digest_check(
    engine: Option<&Digest>,
    vellum: Option<&StudyDigest>,
) -> (&'static str, Option<Digest>) {
    let ours = vellum.map(|v| Digest(v.sha256));
    let check = DigestCheck::of(engine, ours.as_ref());
    let recorded = match check {
        DigestCheck::SenderOnly => engine.copied(),
        _ => ours,
    };
    (check.code(), recorded)
}

fn patient_entity_from(a: &mut Arr, privacy: &PrivacySettings, p: &input::Patient) {
    let id = patient_id(privacy, p.system.as_ref().map(Uri::as_str), p.id.as_str());
    a.obj(|e| {
        e.obj("what", |w| {
            w.obj("identifier", |i| {
                if let Some(s) = &id.system {
                    i.str("system", s);
                }
                i.str("value", &id.value);
            });
        })
        .coding("type", ENTITY_TYPE, "1", "Person")
        .coding("role", OBJECT_ROLE, "1", "Patient");
    });
}

/// The request itself (BALP `transaction`-like): the sender's event id,
/// session and whatever else `more` adds.
fn request_entity(a: &mut Arr, event_id: &str, session: Option<&str>, more: impl FnOnce(&mut Arr)) {
    a.obj(|e| {
        e.obj("what", |w| {
            w.obj("identifier", |i| {
                i.str("system", EVENT_ID_SYSTEM).str("value", event_id);
            });
        })
        .coding("type", ENTITY_TYPE, "2", "System Object")
        .coding("role", OBJECT_ROLE, "20", "Job")
        .arr_opt("detail", |d| {
            if let Some(s) = session {
                detail(d, "session-id", s);
            }
            more(d);
        });
    });
}

fn source(o: &mut Obj, s: &Source) {
    o.obj("source", |x| {
        if let Some(site) = &s.site {
            x.str("site", site.as_str());
        }
        x.obj("observer", |ob| {
            ob.obj("identifier", |i| {
                i.str("value", s.system.as_str());
            })
            .str("display", s.system.as_str());
        })
        .arr("type", |t| {
            t.coding(SOURCE_TYPE_SYSTEM, "4", "Application Server");
        });
    });
}

#[allow(clippy::too_many_arguments)] // each is one element of the head
fn common_head(
    o: &mut Obj,
    profile: &str,
    ai: bool,
    kind: (&str, &str),
    type_: (&str, &str),
    action: &str,
    recorded: &Instant,
    outcome: Outcome,
    more_subtypes: impl FnOnce(&mut Arr),
) {
    o.str("resourceType", "AuditEvent");
    meta(o, profile, ai);
    o.coding("type", DCM, type_.0, type_.1)
        .arr("subtype", |a| {
            subtype(a, kind.0, kind.1);
            more_subtypes(a);
        })
        .str("action", action)
        .str("recorded", &recorded.stamp())
        .str("outcome", outcome.code());
}

/// `radiology-ai-inference` from the API.
pub fn inference(
    x: &input::Inference,
    reg: &Registration,
    vellum_digest: Option<&StudyDigest>,
    privacy: &PrivacySettings,
    now: Instant,
) -> String {
    let recorded = x.time.unwrap_or(now);
    let mut out = String::with_capacity(4096);
    object(&mut out, |o| {
        common_head(
            o,
            INFERENCE_PROFILE,
            true,
            ("inference", "AI inference"),
            ("110112", "Query"),
            "E",
            &recorded,
            x.outcome,
            |_| {},
        );
        if let Some(start) = &x.started {
            o.obj("period", |p| {
                p.str("start", &start.stamp()).str("end", &recorded.stamp());
            });
        }
        o.arr("agent", |a| {
            user_agent(a, &x.user, &x.source, &x.access_policy);
            a.obj(|m| model_agent(m, x.model.name.as_str(), x.model.version.as_str()));
        });
        source(o, &x.source);
        o.arr("entity", |a| {
            a.obj(|e| {
                study_identity(e, x.study.uid.as_str());
                let (check, digest) = digest_check(x.study.pixel_sha256.as_ref(), vellum_digest);
                let instances = vellum_digest
                    .map(|v| u32::try_from(v.instances).unwrap_or(u32::MAX))
                    .or(x.study.instances);
                e.arr_opt("extension", |ext| {
                    if let Some(acc) = &x.study.accession {
                        ext.obj(|v| {
                            v.str("url", EXT_ACCESSION).obj("valueIdentifier", |i| {
                                i.str("value", acc.as_str());
                            });
                        });
                    }
                    if let Some(n) = instances {
                        ext.obj(|v| {
                            v.str("url", EXT_NUMBER_OF_INSTANCES)
                                .raw("valueInteger", &n.to_string());
                        });
                    }
                    if let Some(sop) = &x.study.sop_class {
                        ext.obj(|v| {
                            v.str("url", EXT_SOP_CLASS).obj("valueReference", |r| {
                                r.obj("identifier", |i| {
                                    i.str("system", "urn:dicom:uid")
                                        .str("value", &format!("urn:oid:{}", sop.as_str()));
                                });
                            });
                        });
                    }
                });
                e.arr_opt("detail", |d| {
                    if let Some(dg) = &digest {
                        detail_b64(d, "pixel-sha256", dg);
                    }
                    if check == "mismatch" {
                        if let Some(eng) = &x.study.pixel_sha256 {
                            detail_b64(d, "engine-pixel-sha256", eng);
                        }
                    }
                    detail(d, "digest-check", check);
                    for p in &x.study.priors {
                        detail(d, "prior-study", p.as_str());
                    }
                    for f in &x.findings {
                        detail(d, "finding", &finding_json(f));
                    }
                });
            });
            if let Some(p) = &x.patient {
                patient_entity_from(a, privacy, p);
            }
            a.obj(|e| {
                let mut r = reg.clone();
                if let Some(ep) = &x.endpoint {
                    r.endpoint = Some(ep.as_str().to_string());
                }
                model_entity(e, x.model.name.as_str(), x.model.version.as_str(), Some(&r));
            });
            request_entity(
                a,
                x.event_id.as_str(),
                x.user.session.as_ref().map(|s| s.as_str()),
                |d| {
                    let num = |d: &mut Arr, k: &str, v: Option<u64>| {
                        if let Some(v) = v {
                            detail(d, k, &v.to_string());
                        }
                    };
                    num(d, "latency-ms", x.latency_ms);
                    num(d, "gpu-memory-mb", x.gpu_memory_mb);
                    if let Some(c) = x.cpu_fallback {
                        detail(d, "cpu-fallback", if c { "true" } else { "false" });
                    }
                    num(d, "prompt-tokens", x.prompt_tokens);
                    num(d, "output-tokens", x.output_tokens);
                    if let Some(t) = &x.heatmap_time {
                        detail(d, "heatmap-time", &t.stamp());
                    }
                    for (kind, body, digest) in [
                        ("prompt", &x.prompt, &x.prompt_sha256),
                        ("output", &x.output, &x.output_sha256),
                    ] {
                        let hash = body
                            .as_ref()
                            .map(|b| Digest::of(b.as_str().as_bytes()))
                            .or(*digest);
                        if let Some(h) = hash {
                            detail_b64(d, &format!("{kind}-sha256"), &h);
                        }
                        if let Some(text) = body
                            .as_ref()
                            .and_then(|b| keep_content(privacy, b.as_str()))
                        {
                            detail(d, kind, text);
                        }
                    }
                    if let Some(r) = &x.redaction_policy {
                        detail(d, "redaction-policy", r.as_str());
                    }
                },
            );
        });
    });
    out
}

/// The reference entity every override/rendering starts with.
fn inference_ref_entity(
    a: &mut Arr,
    inf: &InferenceInfo,
    what: &str,
    details: impl FnOnce(&mut Arr),
) {
    a.obj(|e| {
        e.obj("what", |w| {
            w.str("reference", &format!("AuditEvent/{}", inf.id));
        })
        .coding("type", ENTITY_TYPE, "2", "System Object")
        .coding("role", OBJECT_ROLE, "3", "Report")
        .str("description", what)
        .arr_opt("detail", details);
    });
}

/// Study and patient copied from the inference (reports join on them).
fn copied_entities(a: &mut Arr, inf: &InferenceInfo) {
    if let Some(uid) = &inf.study_uid {
        a.obj(|e| study_identity(e, uid));
    }
    if let Some(p) = &inf.patient_entity {
        a.raw_item(p);
    }
}

/// `radiology-ai-override` from the API.
pub fn override_event(
    x: &input::Override,
    inf: &InferenceInfo,
    privacy: &PrivacySettings,
    now: Instant,
) -> String {
    let recorded = x.time.unwrap_or(now);
    let tta = x.time_to_action_ms.map(|v| v.to_string()).or_else(|| {
        let start = Instant::from_stamp(&inf.recorded)?;
        let ms = recorded.millis_since(&start);
        (ms >= 0).then(|| ms.to_string())
    });
    let mut out = String::with_capacity(3072);
    object(&mut out, |o| {
        common_head(
            o,
            OVERRIDE_PROFILE,
            false,
            ("override", "AI override"),
            ("110112", "Query"),
            "U",
            &recorded,
            x.outcome,
            // The action as a coded subtype (required binding).
            |a| {
                a.coding(OVERRIDE_ACTION_SYSTEM, x.action.code(), x.action.display());
            },
        );
        o.arr("agent", |a| {
            user_agent(a, &x.user, &x.source, &x.access_policy);
            if let Some((name, version)) = &inf.model {
                a.obj(|m| model_agent(m, name, version));
            }
        });
        source(o, &x.source);
        o.arr("entity", |a| {
            inference_ref_entity(a, inf, "the AI inference acted on", |d| {
                detail(d, "action", x.action.code());
                if let Some(r) = x.reason_code {
                    detail(d, "reason-code", r.code());
                }
                for (kind, text) in [("reason-text", &x.reason_text), ("edit-diff", &x.edit_diff)] {
                    if let Some(t) = text {
                        detail_b64(
                            d,
                            &format!("{kind}-sha256"),
                            &Digest::of(t.as_str().as_bytes()),
                        );
                        if let Some(kept) = keep_content(privacy, t.as_str()) {
                            detail(d, kind, kept);
                        }
                    }
                }
                if let Some(ms) = &tta {
                    detail(d, "time-to-action-ms", ms);
                }
            });
            copied_entities(a, inf);
            request_entity(
                a,
                x.event_id.as_str(),
                x.user.session.as_ref().map(|s| s.as_str()),
                |_| {},
            );
        });
    });
    out
}

/// `radiology-ai-rendering` from the API.
pub fn rendering(x: &input::Rendering, inf: &InferenceInfo, now: Instant) -> String {
    let recorded = x.time.unwrap_or(now);
    let mut out = String::with_capacity(2048);
    object(&mut out, |o| {
        common_head(
            o,
            RENDERING_PROFILE,
            false,
            ("rendering", "AI result rendered"),
            ("110106", "Export"),
            "R",
            &recorded,
            x.outcome,
            |_| {},
        );
        o.arr("agent", |a| {
            user_agent(a, &x.user, &x.source, &x.access_policy);
            a.obj(|d| {
                d.concept("type", DCM, "110152", "Destination Role ID")
                    .obj("who", |w| {
                        w.obj("identifier", |i| {
                            i.str("value", x.destination.as_str());
                        })
                        .str("display", x.destination.as_str());
                    })
                    .bool("requestor", false);
            });
        });
        source(o, &x.source);
        o.arr("entity", |a| {
            inference_ref_entity(a, inf, "the AI inference rendered", |d| {
                detail(d, "destination", x.destination.as_str());
                detail(d, "format", x.format.as_str());
                detail(d, "viewed", if x.viewed { "true" } else { "false" });
            });
            copied_entities(a, inf);
            request_entity(
                a,
                x.event_id.as_str(),
                x.user.session.as_ref().map(|s| s.as_str()),
                |_| {},
            );
        });
    });
    out
}

/// `ai-model-deployment` from `POST /ai/v1/models`.
pub fn deployment(x: &input::Model, now: Instant) -> String {
    let recorded = x.deployed_at.unwrap_or(now);
    let reg = Registration {
        name: x.name.as_str().into(),
        version: x.version.as_str().into(),
        provider: Some(x.provider.as_str().into()),
        endpoint: x.endpoint.as_ref().map(|e| e.as_str().into()),
        training_date: Some(x.training_date.as_str().into()),
        validation_ref: x.validation.reference.as_ref().map(|r| r.as_str().into()),
        event_id: String::new(),
        deployed_at: recorded.stamp(),
    };
    let mut out = String::with_capacity(2048);
    object(&mut out, |o| {
        common_head(
            o,
            DEPLOYMENT_PROFILE,
            false,
            ("model-deployment", "AI model deployment"),
            ("110100", "Application Activity"),
            "C",
            &recorded,
            Outcome::Success,
            |_| {},
        );
        o.arr("agent", |a| {
            user_agent(a, &x.user, &x.source, &x.access_policy);
            a.obj(|m| model_agent(m, x.name.as_str(), x.version.as_str()));
        });
        source(o, &x.source);
        o.arr("entity", |a| {
            a.obj(|e| {
                model_entity(e, x.name.as_str(), x.version.as_str(), Some(&reg));
                if let Some(d) = &x.description {
                    e.str("description", d.as_str());
                }
            });
            a.obj(|e| {
                e.obj("what", |w| {
                    w.str("display", "validation results");
                })
                .coding("type", ENTITY_TYPE, "2", "System Object")
                .coding("role", OBJECT_ROLE, "3", "Report")
                .arr_opt("detail", |d| {
                    if let Some(r) = &x.validation.reference {
                        detail(d, "validation-ref", r.as_str());
                    }
                    for m in &x.validation.results {
                        let mut v = String::new();
                        object(&mut v, |j| {
                            if let Some(ds) = &m.dataset {
                                j.str("dataset", ds.as_str());
                            }
                            j.str("metric", m.metric.as_str())
                                .str("value", m.value.as_str());
                        });
                        detail(d, "validation-result", &v);
                    }
                });
            });
        });
    });
    out
}

/// The event of `POST /ai/v1/guard-events`: DCM 110113 Security Alert with
/// the guard's finding as a `radiology-ai-event` subtype (outcome 4: the
/// request or output was flagged).
pub fn guard_event(x: &input::GuardEvent, now: Instant) -> String {
    let recorded = x.time.unwrap_or(now);
    let mut out = String::with_capacity(1024);
    object(&mut out, |o| {
        o.str("resourceType", "AuditEvent");
        o.coding("type", DCM, "110113", "Security Alert")
            .arr("subtype", |a| {
                subtype(a, x.kind.code(), x.kind.display());
            })
            .str("action", "E")
            .str("recorded", &recorded.stamp())
            .str("outcome", "4")
            .str("outcomeDesc", x.kind.display());
        o.arr("agent", |a| {
            a.obj(|g| {
                g.concept("type", DCM, "110150", "Application")
                    .obj("who", |w| {
                        w.str(
                            "display",
                            x.detector.as_ref().map_or("AI guard", |d| d.as_str()),
                        );
                    })
                    .bool("requestor", x.user.is_none());
            });
            if let Some(u) = &x.user {
                user_agent(a, u, &x.source, &[]);
            }
            if let Some(m) = &x.model {
                a.obj(|d| model_agent(d, m.name.as_str(), m.version.as_str()));
            }
        });
        source(o, &x.source);
        o.arr("entity", |a| {
            request_entity(
                a,
                x.event_id.as_str(),
                x.user
                    .as_ref()
                    .and_then(|u| u.session.as_ref())
                    .map(|s| s.as_str()),
                |d| {
                    if let Some(h) = &x.content_sha256 {
                        detail_b64(d, "content-sha256", h);
                    }
                },
            );
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_agreement_is_recorded_never_replaced() {
        let a = Digest([1; 32]);
        let b = Digest([2; 32]);
        let ours = |d: Digest| StudyDigest {
            study_instance_uid: "1.2.3".into(),
            sha256: d.0,
            instances: 3,
        };
        assert_eq!(digest_check(Some(&a), Some(&ours(a))), ("agree", Some(a)));
        // vellum's own digest is the study digest; the engine's is kept
        // beside it (engine-pixel-sha256) by the builder.
        assert_eq!(
            digest_check(Some(&b), Some(&ours(a))),
            ("mismatch", Some(a))
        );
        assert_eq!(digest_check(Some(&b), None), ("unverified", Some(b)));
        assert_eq!(digest_check(None, Some(&ours(a))), ("vellum-only", Some(a)));
        assert_eq!(digest_check(None, None), ("none", None));
    }

    #[test]
    fn a_digest_mismatch_is_recorded_in_a_valid_inference() {
        let x: input::Inference = serde_json::from_str(
            r#"{"event_id":"e1","user":{"id":"u"},"source":{"system":"s"},
               "model":{"name":"m","version":"1"},
               "study":{"uid":"1.2.3","pixel_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}"#,
        )
        .unwrap();
        let ours = StudyDigest {
            study_instance_uid: "1.2.3".into(),
            sha256: [7; 32],
            instances: 2,
        };
        let reg = Registration {
            name: "m".into(),
            version: "1".into(),
            ..Registration::default()
        };
        let body = inference(
            &x,
            &reg,
            Some(&ours),
            &PrivacySettings::default(),
            Instant::now(),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let study = &v["entity"][0];
        let get = |t: &str| {
            study["detail"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["type"] == t)
                .cloned()
                .unwrap()
        };
        assert_eq!(get("digest-check")["valueString"], "mismatch");
        assert_eq!(get("pixel-sha256")["valueBase64Binary"], ours.base64());
        assert_eq!(
            get("engine-pixel-sha256")["valueBase64Binary"],
            "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
        );
        assert_eq!(study["extension"][0]["valueInteger"], 2);
        assert!(crate::fhir::create::prepare_audit_event(body.as_bytes()).is_ok());
    }
}
