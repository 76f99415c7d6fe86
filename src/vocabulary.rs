//! Every canonical URL, code system and extension URL vellum writes or
//! reads, in one place. Builders, validators and search use these names;
//! no module spells a URL of its own.

/// Canonical base of vellum's conformance resources (`profiles/`).
pub const CANONICAL_BASE: &str = "https://vellum-audit.org/fhir";

// Profiles (StructureDefinitions in `profiles/`).
pub const PROFILE_PREFIX: &str = "https://vellum-audit.org/fhir/StructureDefinition/";
pub const RECEIPT_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/hl7v2-message-receipt";
pub const INFERENCE_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-inference";
pub const OVERRIDE_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-override";
pub const RENDERING_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-rendering";
pub const DEPLOYMENT_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/ai-model-deployment";
pub const PIXEL_DIGEST_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/pixel-digest";
/// vellum's record of a read of its own log (IHE BALP Read/Query).
pub const ACCESS_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/audit-log-access";
/// vellum's alert that a model version's override rate drifted.
pub const DRIFT_ALERT_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-drift-alert";
/// vellum's alert that a detection rule fired over the committed stream.
pub const SECURITY_ALERT_PROFILE: &str =
    "https://vellum-audit.org/fhir/StructureDefinition/security-alert";
/// vellum's own AuditEvent profiles, in the CapabilityStatement's order.
pub const VELLUM_PROFILES: &[&str] = &[
    RECEIPT_PROFILE,
    INFERENCE_PROFILE,
    OVERRIDE_PROFILE,
    RENDERING_PROFILE,
    DEPLOYMENT_PROFILE,
    PIXEL_DIGEST_PROFILE,
    ACCESS_PROFILE,
    DRIFT_ALERT_PROFILE,
    SECURITY_ALERT_PROFILE,
];
pub const VALUESET_PREFIX: &str = "https://vellum-audit.org/fhir/ValueSet/";

// IHE Basic Audit Log Patterns profiles an access event also claims.
pub const BALP_READ: &str =
    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read";
pub const BALP_PATIENT_READ: &str =
    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead";
pub const BALP_QUERY: &str =
    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query";
pub const BALP_PATIENT_QUERY: &str =
    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery";

// vellum's code and identifier systems.
/// What an access to the log was (`subtype` of `audit-log-access`).
pub const LOG_OPERATION_SYSTEM: &str =
    "https://vellum-audit.org/fhir/CodeSystem/audit-log-operation";
/// vellum's roles (`agent.role` of the user in access events).
pub const ROLE_SYSTEM: &str = "https://vellum-audit.org/fhir/CodeSystem/role";
/// Authenticated subjects (token subjects, certificate subjects).
pub const SUBJECT_SYSTEM: &str = "https://vellum-audit.org/fhir/subject";
/// `meta.tag` system naming the authenticated sender of an event.
pub const SUBMITTER_SYSTEM: &str = "https://vellum-audit.org/fhir/CodeSystem/submitter";
/// `meta.tag` system of the idempotency key an event was stored under:
/// the code is the hex SHA-256 of the key's stem (the key without the digest
/// of the request), so `verify` can re-derive the key from the body without
/// the body holding the key (which may carry identifiers) itself.
pub const IDEMPOTENCY_KEY_SYSTEM: &str = "https://vellum-audit.org/fhir/CodeSystem/idempotency-key";
/// FHIR RESTful interactions (`subtype`).
pub const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
/// FHIR audit event types (`type` = rest).
pub const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
/// The kind of radiology AI event (`subtype`).
pub const AI_EVENT_SYSTEM: &str = "https://vellum-audit.org/fhir/CodeSystem/radiology-ai-event";
/// The detection rule a security alert names (`subtype`).
pub const DETECTION_RULE_SYSTEM: &str = "https://vellum-audit.org/fhir/CodeSystem/detection-rule";
/// `radiology-ai-event` code an AI gateway sends when a model's output was
/// flagged as containing PHI.
pub const AI_OUTPUT_PHI_FLAGGED: &str = "ai-output-phi-flagged";
/// `radiology-ai-event` code of a detected prompt-injection attempt.
pub const PROMPT_INJECTION_ATTEMPT: &str = "prompt-injection-attempt";
/// HL7 v2 message details (`entity.detail` types).
pub const HL7V2_SYSTEM: &str = "https://vellum-audit.org/fhir/CodeSystem/hl7v2";
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
/// Patient pseudonyms (`[privacy]`).
pub const PSEUDONYM_SYSTEM: &str = "https://vellum-audit.org/fhir/pseudonym";

// External code systems.
pub const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
pub const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
pub const SECURITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
pub const PARTICIPATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub const SOURCE_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub const SNOMED: &str = "http://snomed.info/sct";
/// `what.identifier.system` of a W3C trace id (`value`: 32 hex digits).
pub const TRACE_CONTEXT_SYSTEM: &str = "https://www.w3.org/TR/trace-context/";
/// `what.identifier.system` of a DICOM UID (`value`: `urn:oid:<uid>`).
pub const DICOM_UID_SYSTEM: &str = "urn:dicom:uid";
/// IHE BALP's Audit Record Repository CapabilityStatement.
pub const BALP_ARR: &str =
    "https://profiles.ihe.net/ITI/BALP/CapabilityStatement/IHE.BALP.ATNA.AuditRecordRepository";

// R4 core AuditEvent extensions for DICOM entities.
pub const EXT_ACCESSION: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-Accession";
pub const EXT_NUMBER_OF_INSTANCES: &str =
    "http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances";
pub const EXT_SOP_CLASS: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-SOPClass";

// `entity.detail` types of pixel digests.
pub const DETAIL_DIGEST: &str = "pixel-sha256";
pub const DETAIL_MISMATCH: &str = "pixel-sha256-mismatch";
pub const DETAIL_PENDING: &str = "pixel-sha256-pending";

// DICOM audit messages (ATNA syslog).
pub const EXT_CONTAINS_STUDY: &str =
    "http://hl7.org/fhir/StructureDefinition/auditevent-ParticipantObjectContainsStudy";
pub const EXT_INSTANCE: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-Instance";
pub const EXT_MPPS: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-MPPS";
pub const EXT_ENCRYPTED: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-Encrypted";
pub const EXT_ANONYMIZED: &str = "http://hl7.org/fhir/StructureDefinition/auditevent-Anonymized";
/// `entity.lifecycle` (ParticipantObjectDataLifeCycle).
pub const LIFECYCLE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/dicom-audit-lifecycle";
/// RFC 3881 code values (ParticipantObjectIDTypeCode 1–12).
pub const RFC3881_SYSTEM: &str = "urn:ietf:rfc:3881";
/// IHE transaction codes (EventTypeCode `ITI-20` …).
pub const IHE_EVENT_TYPE_SYSTEM: &str = "urn:ihe:event-type-code";
/// vellum's codes for received audit messages (parse failures,
/// `entity.detail` types of the raw message).
pub const ATNA_SYSTEM: &str = "https://vellum-audit.org/fhir/CodeSystem/atna";
