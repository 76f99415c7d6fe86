//! Radiology AI events: inference, override, rendering and model
//! deployment → profiled AuditEvents (docs/profiles.md), shared by the `/ai/v1`
//! API and (model agent, study entity) the HL7 v2 mapping.
//!
//! - [`types`]: validating domain types (UIDs, confidences, instants …);
//! - [`input`]: the API's JSON inputs;
//! - [`build`]: the AuditEvent builders;
//! - [`lookup`]: what the API reads back from the ledger (registered
//!   models, referenced inferences);
//! - [`privacy`]: content minimisation and patient pseudonyms.

pub mod build;
pub mod drift_alert;
pub mod input;
pub mod lookup;
pub mod privacy;
pub mod summary;
pub mod types;

pub use crate::vocabulary::{
    AI_EVENT_SYSTEM, CANONICAL_BASE, DCM, DEPLOYMENT_PROFILE, ENTITY_TYPE, EVENT_ID_SYSTEM,
    EXT_ACCESSION, EXT_NUMBER_OF_INSTANCES, EXT_SOP_CLASS, INFERENCE_PROFILE, MODEL_SYSTEM,
    MODEL_VERSION_SYSTEM, OBJECT_ROLE, OVERRIDE_ACTION_SYSTEM, OVERRIDE_PROFILE,
    OVERRIDE_REASON_SYSTEM, PARTICIPATION_SYSTEM, RENDERING_PROFILE, SECURITY_SYSTEM, SNOMED,
    SOURCE_TYPE_SYSTEM,
};

/// The idempotency key of a model version's deployment event.
pub fn model_key(name: &str, version: &str) -> String {
    format!("{MODEL_KEY_PREFIX}{name}|{version}")
}

/// Prefix of every model-version key (listing models scans it).
pub const MODEL_KEY_PREFIX: &str = "ai-model:";

/// The idempotency key of an AI API event (the sender's event id, per kind).
pub fn event_key(kind: &str, event_id: &str) -> String {
    format!("ai-{kind}:{event_id}")
}
