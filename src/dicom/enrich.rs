//! Pixel digests in events (docs/dicom.md): for every entity whose
//! `what.identifier` is a Study Instance UID (`system` `urn:dicom:uid`,
//! `type` DCM 110180, `value` `urn:oid:<uid>`), the study digest is looked
//! up in the configured sources within a time budget and attached, before
//! the event is validated and chained:
//!
//! * `entity.detail` `{type: "pixel-sha256", valueBase64Binary: <digest>}`
//! * `entity.extension` `{url: "http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances", valueInteger: <n>}`
//!
//! A digest the sender supplied is never replaced: when vellum's differs,
//! vellum's is added as a `pixel-sha256-mismatch` detail and counted in
//! [`mismatches`]. When the study is not found, a source fails, or the budget
//! runs out, a `pixel-sha256-pending` detail (valueString: why) marks it.
//!
//! The event JSON is edited as vellum's own exact-number tree
//! (`ledger::canonical`), so numbers keep their source text.

use std::sync::atomic::{AtomicU64, Ordering};

use vellum_json::{self as canonical, Json, JsonView, Member, Value};

use super::check::DigestCheck;
use super::service::DicomService;

pub use crate::vocabulary::{
    DETAIL_DIGEST, DETAIL_MISMATCH, DETAIL_PENDING,
    EXT_NUMBER_OF_INSTANCES as NUMBER_OF_INSTANCES_URL,
};

static MISMATCHES: AtomicU64 = AtomicU64::new(0);

/// Sender-supplied digests that differed from vellum's, since start.
pub fn mismatches() -> u64 {
    MISMATCHES.load(Ordering::Relaxed)
}

/// The Study Instance UID an entity references, if it is a study entity.
pub fn study_uid_of(entity: &Json) -> Option<String> {
    study_uid_in(entity).map(str::to_string)
}

/// [`study_uid_of`] in either parsed form, borrowing.
fn study_uid_in<'a, J: JsonView<'a>>(entity: J) -> Option<&'a str> {
    let id = entity.get("what")?.get("identifier")?;
    if id.get("system")?.as_str()? != crate::vocabulary::DICOM_UID_SYSTEM {
        return None;
    }
    let is_study = id
        .get("type")
        .and_then(|t| t.get("coding"))
        .and_then(J::items)
        .is_some_and(|mut cs| cs.any(|c| c.get("code").and_then(J::as_str) == Some("110180")));
    if !is_study {
        return None;
    }
    let uid = id.get("value")?.as_str()?.strip_prefix("urn:oid:")?;
    (!uid.is_empty()).then_some(uid)
}

/// The Study Instance UID of a study entity stored with its digest pending
/// (a `pixel-sha256-pending` detail): work for the digest worker.
pub fn pending_study<'a, J: JsonView<'a>>(entity: J) -> Option<&'a str> {
    let pending = entity
        .get("detail")
        .and_then(J::items)?
        .any(|d| d.get("type").and_then(J::as_str) == Some(DETAIL_PENDING));
    if pending {
        study_uid_in(entity)
    } else {
        None
    }
}

/// Counts a sender digest that differs from vellum's (also used by the
/// follow-up events of src/dicom/followup.rs).
pub(crate) fn count_mismatch() {
    MISMATCHES.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("sender-supplied pixel digest differs from vellum's");
}

/// What the sources said about one study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found { base64: String, instances: usize },
    Pending(String),
}

fn obj(members: Vec<(&str, Json)>) -> Json {
    Json::new(Value::Object(
        members
            .into_iter()
            .map(|(k, v)| Member {
                key: k.to_string(),
                key_start: 0,
                value: v,
            })
            .collect(),
    ))
}

fn push(entity: &mut Json, key: &str, item: Json) {
    let mut items = entity
        .get(key)
        .and_then(Json::as_array)
        .map(<[Json]>::to_vec)
        .unwrap_or_default();
    items.push(item);
    entity.set(key, Json::new(Value::Array(items)));
}

/// Applies a lookup result to one entity (pure: the rules of the module doc).
pub fn apply(entity: &mut Json, lookup: &Lookup) {
    let details = entity.get("detail").and_then(Json::as_array).unwrap_or(&[]);
    let supplied = details
        .iter()
        .find(|d| d.get("type").and_then(Json::as_str) == Some(DETAIL_DIGEST))
        .map(|d| {
            d.get("valueBase64Binary")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        });
    match lookup {
        Lookup::Found { base64, instances } => {
            match DigestCheck::of(supplied.as_deref(), Some(base64.as_str())) {
                DigestCheck::Mismatch => {
                    count_mismatch();
                    push(
                        entity,
                        "detail",
                        obj(vec![
                            ("type", Json::string(DETAIL_MISMATCH)),
                            ("valueBase64Binary", Json::string(base64.clone())),
                        ]),
                    );
                }
                DigestCheck::VellumOnly => push(
                    entity,
                    "detail",
                    obj(vec![
                        ("type", Json::string(DETAIL_DIGEST)),
                        ("valueBase64Binary", Json::string(base64.clone())),
                    ]),
                ),
                DigestCheck::Agree | DigestCheck::SenderOnly | DigestCheck::Neither => {}
            }
            let has_count = entity
                .get("extension")
                .and_then(Json::as_array)
                .is_some_and(|es| {
                    es.iter().any(|e| {
                        e.get("url").and_then(Json::as_str) == Some(NUMBER_OF_INSTANCES_URL)
                    })
                });
            if !has_count {
                push(
                    entity,
                    "extension",
                    obj(vec![
                        ("url", Json::string(NUMBER_OF_INSTANCES_URL)),
                        (
                            "valueInteger",
                            Json::new(Value::Number(instances.to_string())),
                        ),
                    ]),
                );
            }
        }
        Lookup::Pending(why) => push(
            entity,
            "detail",
            obj(vec![
                ("type", Json::string(DETAIL_PENDING)),
                ("valueString", Json::string(why.clone())),
            ]),
        ),
    }
}

/// Looks a study up within the configured budget.
pub async fn lookup(service: &DicomService, study_uid: &str) -> Lookup {
    let budget = service.settings().budget;
    match tokio::time::timeout(budget, service.study(study_uid)).await {
        Ok(Ok(Some((found, _)))) if found.digest.instances > 0 => Lookup::Found {
            base64: found.digest.base64(),
            instances: found.digest.instances,
        },
        Ok(Ok(Some(_))) => Lookup::Pending("the study has no instance with pixel data".into()),
        Ok(Ok(None)) => Lookup::Pending("study not found in the configured sources".into()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "study source failed");
            Lookup::Pending(format!("study source failed: {e}"))
        }
        Err(_) => Lookup::Pending(format!(
            "digest not computed within the budget of {} ms",
            budget.as_millis()
        )),
    }
}

/// Marks the study `study_uid` of a built event pending (the AI API, whose
/// builder computes its own digest comparison): the worker then appends the
/// follow-up. `None` when the event has no such study entity.
pub fn mark_pending(body: &[u8], study_uid: &str, why: &str) -> Option<Vec<u8>> {
    let mut root = canonical::parse(body).ok()?;
    let mut entities = root.get("entity").and_then(Json::as_array)?.to_vec();
    let e = entities
        .iter_mut()
        .find(|e| study_uid_of(e).as_deref() == Some(study_uid))?;
    apply(e, &Lookup::Pending(why.to_string()));
    root.set("entity", Json::new(Value::Array(entities)));
    Some(canonical::to_canonical(&root))
}

/// Attaches digests to the study entities of a parsed event (the intake
/// path, after validation). True when anything was attached.
pub async fn enrich_root(service: &DicomService, root: &mut Json) -> bool {
    if !service.has_sources() {
        return false;
    }
    let Some(entities) = root.get("entity").and_then(Json::as_array) else {
        return false;
    };
    let targets: Vec<(usize, String)> = entities
        .iter()
        .enumerate()
        .filter_map(|(i, e)| study_uid_of(e).map(|u| (i, u)))
        .collect();
    if targets.is_empty() {
        return false;
    }
    let mut results: Vec<(String, Lookup)> = Vec::new();
    for (_, uid) in &targets {
        if !results.iter().any(|(u, _)| u == uid) {
            let l = lookup(service, uid).await;
            results.push((uid.clone(), l));
        }
    }
    let Some(mut entities) = root
        .get("entity")
        .and_then(Json::as_array)
        .map(<[Json]>::to_vec)
    else {
        return false;
    };
    for (i, uid) in &targets {
        if let (Some(e), Some((_, l))) =
            (entities.get_mut(*i), results.iter().find(|(u, _)| u == uid))
        {
            apply(e, l);
        }
    }
    root.set("entity", Json::new(Value::Array(entities)));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(extra: &str) -> Json {
        let src = format!(
            r#"{{"what":{{"identifier":{{"type":{{"coding":[{{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110180"}}]}},"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}}}}{extra}}}"#
        );
        canonical::parse(src.as_bytes()).unwrap()
    }

    fn text(j: &Json) -> String {
        String::from_utf8(canonical::to_canonical(j)).unwrap()
    }

    #[test]
    fn study_entities_are_recognised_by_system_type_and_oid() {
        assert_eq!(study_uid_of(&entity("")).as_deref(), Some("1.2.3"));
        let no_type = canonical::parse(
            br#"{"what":{"identifier":{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}}}"#,
        )
        .unwrap();
        assert_eq!(study_uid_of(&no_type), None);
    }

    #[test]
    fn digest_and_count_are_attached() {
        let mut e = entity("");
        apply(
            &mut e,
            &Lookup::Found {
                base64: "AAAA".into(),
                instances: 3,
            },
        );
        let t = text(&e);
        assert!(
            t.contains(r#""detail":[{"type":"pixel-sha256","valueBase64Binary":"AAAA"}]"#),
            "{t}"
        );
        assert!(t.contains(r#""extension":[{"url":"http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances","valueInteger":3}]"#), "{t}");
    }

    #[test]
    fn a_differing_sender_digest_is_kept_and_the_mismatch_recorded() {
        let mut e = entity(r#","detail":[{"type":"pixel-sha256","valueBase64Binary":"BBBB"}]"#);
        let before = mismatches();
        apply(
            &mut e,
            &Lookup::Found {
                base64: "AAAA".into(),
                instances: 1,
            },
        );
        let t = text(&e);
        assert!(
            t.contains(r#"{"type":"pixel-sha256","valueBase64Binary":"BBBB"}"#),
            "{t}"
        );
        assert!(
            t.contains(r#"{"type":"pixel-sha256-mismatch","valueBase64Binary":"AAAA"}"#),
            "{t}"
        );
        assert!(mismatches() > before);
    }

    #[test]
    fn pending_study_entities_are_recognised() {
        let e = entity(r#","detail":[{"type":"pixel-sha256-pending","valueString":"x"}]"#);
        assert_eq!(pending_study(&e), Some("1.2.3"));
        assert_eq!(pending_study(&entity("")), None);
    }

    #[test]
    fn an_equal_sender_digest_is_left_alone() {
        let mut e = entity(r#","detail":[{"type":"pixel-sha256","valueBase64Binary":"AAAA"}]"#);
        apply(
            &mut e,
            &Lookup::Found {
                base64: "AAAA".into(),
                instances: 1,
            },
        );
        assert!(!text(&e).contains("mismatch"));
    }
}
