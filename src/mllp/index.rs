//! Finding the earlier inference an AI correction refers to.
//!
//! An index Study Instance UID → latest stored `radiology-ai-inference`
//! event, built by reading the ledger forward (`entries_after`) from where
//! the last lookup stopped. It lives in memory and is rebuilt lazily after
//! a restart (the first lookup reads the ledger once); every later lookup
//! only reads the entries appended since. It sees inference events from
//! every way in (MLLP, REST, AI API) as long as they carry the profile and
//! the docs/dicom.md study identifier.

use std::collections::HashMap;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::hl7v2::{InferenceRef, INFERENCE_PROFILE};
use vellum_ledger::store::StoreError;
use vellum_ledger::Ledger;

const PAGE: i64 = 500;

#[derive(Default)]
struct State {
    scanned_to: i64,
    by_study: HashMap<String, InferenceRef>,
}

#[derive(Default)]
pub struct InferenceIndex {
    state: Mutex<State>,
}

impl InferenceIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest inference event for `study_uid`, reading what was
    /// appended since the previous lookup first.
    pub async fn find(
        &self,
        ledger: &Ledger,
        study_uid: &str,
    ) -> Result<Option<InferenceRef>, StoreError> {
        let mut st = self.state.lock().await;
        loop {
            let page = ledger.entries_after(st.scanned_to, PAGE).await?;
            let n = page.len();
            for e in page {
                st.scanned_to = e.seq;
                if !e.body.contains(INFERENCE_PROFILE) {
                    continue;
                }
                if let Some((uids, r)) = inference_of(&e.body) {
                    for uid in uids {
                        st.by_study.insert(uid, r.clone());
                    }
                }
            }
            if (n as i64) < PAGE {
                break;
            }
        }
        Ok(st.by_study.get(study_uid).cloned())
    }
}

/// The study UIDs and reference of a stored inference event body.
fn inference_of(body: &str) -> Option<(Vec<String>, InferenceRef)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let profiled = v["meta"]["profile"]
        .as_array()?
        .iter()
        .any(|p| p.as_str() == Some(INFERENCE_PROFILE));
    if !profiled {
        return None;
    }
    let uids: Vec<String> = v["entity"]
        .as_array()?
        .iter()
        .filter_map(|e| {
            let id = &e["what"]["identifier"];
            (id["system"].as_str() == Some("urn:dicom:uid"))
                .then(|| id["value"].as_str())
                .flatten()
                .map(|s| s.strip_prefix("urn:oid:").unwrap_or(s).to_string())
        })
        .collect();
    let clinical_time = v["entity"]
        .as_array()?
        .iter()
        .flat_map(|e| e["detail"].as_array().into_iter().flatten())
        .find(|d| d["type"] == "MSH-7")
        .and_then(|d| d["valueString"].as_str())
        .map(str::to_string);
    Some((
        uids,
        InferenceRef {
            id: v["id"].as_str()?.to_string(),
            recorded: v["recorded"].as_str()?.to_string(),
            clinical_time,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_study_uids_of_inference_events_only() {
        let body = format!(
            r#"{{"id":"e1","recorded":"2026-01-01T00:00:00Z","meta":{{"profile":["{INFERENCE_PROFILE}"]}},
            "entity":[{{"what":{{"identifier":{{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}}}}}},
                      {{"what":{{"reference":"Patient/x"}}}}]}}"#
        );
        let (uids, r) = inference_of(&body).unwrap();
        assert_eq!(uids, vec!["1.2.3".to_string()]);
        assert_eq!(r.id, "e1");
        assert!(inference_of(&body.replace(INFERENCE_PROFILE, "http://other")).is_none());
    }
}
