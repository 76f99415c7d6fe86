//! `vellum hash --verify <event id>`: re-hash now every study a stored
//! event recorded a pixel digest for, and say whether the images still
//! match.

use serde::Serialize;

use vellum_json::{self as canonical, Json};

use super::enrich::{study_uid_of, DETAIL_DIGEST, NUMBER_OF_INSTANCES_URL};
use super::service::DicomService;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The images hash to the recorded digest.
    Match,
    /// They do not: the images changed (or the recorded digest was wrong).
    Mismatch,
    /// The study could not be hashed now (not found, source failing).
    Unavailable,
    /// The event names the study but recorded no digest for it.
    NotRecorded,
}

impl Verdict {
    /// The verdict in words, for a terminal.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Mismatch => "MISMATCH",
            Verdict::Unavailable => "cannot check",
            Verdict::NotRecorded => "no digest recorded",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyCheck {
    pub study_instance_uid: String,
    pub recorded: Option<String>,
    pub recorded_instances: Option<u64>,
    pub now: Option<String>,
    pub now_instances: Option<usize>,
    pub verdict: Verdict,
    pub detail: String,
}

fn recorded(entity: &Json) -> (Option<String>, Option<u64>) {
    let digest = entity
        .get("detail")
        .and_then(Json::as_array)
        .and_then(|ds| {
            ds.iter()
                .find(|d| d.get("type").and_then(Json::as_str) == Some(DETAIL_DIGEST))
        })
        .and_then(|d| d.get("valueBase64Binary"))
        .and_then(Json::as_str)
        .map(str::to_string);
    let count = entity
        .get("extension")
        .and_then(Json::as_array)
        .and_then(|es| {
            es.iter()
                .find(|e| e.get("url").and_then(Json::as_str) == Some(NUMBER_OF_INSTANCES_URL))
        })
        .and_then(|e| match &e.get("valueInteger")?.value {
            canonical::Value::Number(n) => n.parse().ok(),
            _ => None,
        });
    (digest, count)
}

/// Checks every study entity of the stored event `body`.
pub async fn verify_event(service: &DicomService, body: &[u8]) -> Vec<StudyCheck> {
    let Ok(root) = canonical::parse(body) else {
        return Vec::new();
    };
    let entities = root.get("entity").and_then(Json::as_array).unwrap_or(&[]);
    let mut out = Vec::new();
    for e in entities {
        let Some(uid) = study_uid_of(e) else { continue };
        let (digest, count) = recorded(e);
        let mut check = StudyCheck {
            study_instance_uid: uid.clone(),
            recorded: digest.clone(),
            recorded_instances: count,
            now: None,
            now_instances: None,
            verdict: Verdict::Unavailable,
            detail: String::new(),
        };
        match service.study(&uid).await {
            Ok(Some((found, kind))) => {
                check.now = Some(found.digest.base64());
                check.now_instances = Some(found.digest.instances);
                check.detail = format!("hashed from {kind}");
                check.verdict = match &digest {
                    None => Verdict::NotRecorded,
                    Some(d) if *d == found.digest.base64() => Verdict::Match,
                    Some(_) => Verdict::Mismatch,
                };
            }
            Ok(None) => check.detail = "study not found in the configured sources".into(),
            Err(err) => check.detail = err.to_string(),
        }
        out.push(check);
    }
    out
}
