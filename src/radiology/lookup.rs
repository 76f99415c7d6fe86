//! Reading back what the API needs from stored events: registered model
//! versions (their deployment events, found by idempotency key) and the
//! inference an override or rendering refers to.

use serde_json::Value;

use vellum_ledger::store::StoreError;
use vellum_ledger::Ledger;

use super::build::{InferenceInfo, Registration};
use super::summary::{details, model_of};
use super::*;

fn model_entity(body: &Value) -> Option<&Value> {
    body["entity"]
        .as_array()?
        .iter()
        .find(|e| e["what"]["identifier"]["system"] == MODEL_VERSION_SYSTEM)
}

/// A deployment event body → its registration.
pub fn registration_of(id: &str, body: &str) -> Option<Registration> {
    let v: Value = serde_json::from_str(body).ok()?;
    let e = model_entity(&v)?;
    let mut r = Registration {
        event_id: id.to_string(),
        deployed_at: v["recorded"].as_str()?.to_string(),
        ..Registration::default()
    };
    for (k, val) in details(e) {
        let val = val.to_string();
        match k {
            "model-name" => r.name = val,
            "model-version" => r.version = val,
            "provider" => r.provider = Some(val),
            "endpoint" => r.endpoint = Some(val),
            "training-date" => r.training_date = Some(val),
            "validation-ref" => r.validation_ref = Some(val),
            _ => {}
        }
    }
    (!r.name.is_empty()).then_some(r)
}

/// Every registered model version, in deployment (ledger) order.
pub async fn registrations(ledger: &Ledger) -> Result<Vec<Registration>, StoreError> {
    let rows = ledger.read_by_key_prefix(MODEL_KEY_PREFIX).await?;
    Ok(rows
        .iter()
        .filter_map(|(_, e)| registration_of(&e.id, &e.body))
        .collect())
}

/// The registration of `name` `version` by `sender` (a sender's inferences
/// name only models it registered itself), if any.
pub async fn registration(
    ledger: &Ledger,
    name: &str,
    version: &str,
    sender: Option<&str>,
) -> Result<Option<Registration>, StoreError> {
    let prefix = crate::auth::key_scope::scoped_prefix(&model_key(name, version), sender);
    let rows = ledger.read_by_key_prefix(&prefix).await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|(_, e)| registration_of(&e.id, &e.body)))
}

/// Why a referenced inference cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InferenceLookupError {
    #[error("no event with id {0} is stored")]
    NotFound(String),
    #[error("event {0} is not a radiology-ai-inference event")]
    NotAnInference(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored inference `id`.
pub async fn inference(ledger: &Ledger, id: &str) -> Result<InferenceInfo, InferenceLookupError> {
    let entry = ledger
        .read(id)
        .await?
        .ok_or_else(|| InferenceLookupError::NotFound(id.to_string()))?;
    inference_of(&entry.body).ok_or_else(|| InferenceLookupError::NotAnInference(id.to_string()))
}

/// A stored body → what overrides and renderings copy from it; `None`
/// unless it names the inference profile.
pub fn inference_of(body: &str) -> Option<InferenceInfo> {
    let v: Value = serde_json::from_str(body).ok()?;
    let profiled = v["meta"]["profile"]
        .as_array()?
        .iter()
        .any(|p| p == INFERENCE_PROFILE);
    if !profiled {
        return None;
    }
    let entities = v["entity"].as_array()?;
    let model = model_of(&v);
    let study_uid = entities.iter().find_map(|e| {
        let id = &e["what"]["identifier"];
        (id["system"] == "urn:dicom:uid" && e["role"]["code"] == "3")
            .then(|| id["value"].as_str())
            .flatten()
            .map(|s| s.strip_prefix("urn:oid:").unwrap_or(s).to_string())
    });
    let patient_entity = entities
        .iter()
        .find(|e| e["role"]["code"] == "1" && e["type"]["code"] == "1")
        .and_then(|e| serde_json::to_string(e).ok());
    Some(InferenceInfo {
        id: v["id"].as_str()?.to_string(),
        recorded: v["recorded"].as_str()?.to_string(),
        model,
        study_uid,
        patient_entity,
    })
}
