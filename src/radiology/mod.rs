//! Radiology AI events: inference, override, rendering and model
//! deployment → profiled AuditEvents (DESIGN §4), shared by the `/ai/v1`
//! API and (model agent, study entity) the HL7 v2 mapping.
//!
//! - [`types`]: validating domain types (UIDs, confidences, instants …);
//! - [`input`]: the API's JSON inputs;
//! - [`build`]: the AuditEvent builders;
//! - [`lookup`]: what the API reads back from the ledger (registered
//!   models, referenced inferences);
//! - [`privacy`]: content minimisation and patient pseudonyms.

pub mod build;
pub mod input;
pub mod lookup;
pub mod privacy;
pub mod types;

pub use crate::hl7v2::{AI_EVENT_SYSTEM, INFERENCE_PROFILE, OVERRIDE_PROFILE};

/// Canonical base of vellum's conformance resources.
pub const CANONICAL_BASE: &str = "https://vellum-audit.org/fhir";
pub const RENDERING_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-rendering";
pub const DEPLOYMENT_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/ai-model-deployment";
/// Override actions (subtype slice `action`, required binding).
pub const OVERRIDE_ACTION_SYSTEM: &str =
    "https://vellum-audit.org/fhir/CodeSystem/ai-override-action";
/// Override reasons (`reason-code` detail).
pub const OVERRIDE_REASON_SYSTEM: &str =
    "https://vellum-audit.org/fhir/CodeSystem/ai-override-reason";
/// `agent.who.identifier.system` of a model (value: the model name).
pub const MODEL_SYSTEM: &str = "https://vellum-audit.org/fhir/ai-model";
/// `entity.what.identifier.system` of a model version (`name|version`).
pub const MODEL_VERSION_SYSTEM: &str = "https://vellum-audit.org/fhir/ai-model-version";
/// `entity.what.identifier.system` of the sender's own event id.
pub const EVENT_ID_SYSTEM: &str = "https://vellum-audit.org/fhir/ai-event-id";

pub(crate) const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub(crate) const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
pub(crate) const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
pub(crate) const SECURITY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
pub(crate) const PARTICIPATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub(crate) const SOURCE_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/security-source-type";
pub(crate) const SNOMED: &str = "http://snomed.info/sct";
pub const EXT_ACCESSION: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-Accession";
pub const EXT_NUMBER_OF_INSTANCES: &str =
    "http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances";
pub const EXT_SOP_CLASS: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-SOPClass";

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
