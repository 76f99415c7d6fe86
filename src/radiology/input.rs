//! What AI engines and viewers send to `/ai/v1` (plain JSON). Every struct
//! refuses unknown fields; every value is a validating domain type.

use std::net::IpAddr;

use serde::Deserialize;

use super::types::{
    Action, Confidence, Date, Digest, Instant, Label, Outcome, Reason, Text, Token, Uid, Uri,
};

/// The person (or system account) on whose behalf the call is made.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: Label,
    /// Namespace of `id` (e.g. `urn:oid:1.2.3` of the hospital directory).
    pub system: Option<Uri>,
    pub name: Option<Label>,
    /// e.g. `radiologist` (mapped to SNOMED CT 66862007), or any label.
    pub role: Option<Label>,
    pub session: Option<Label>,
}

/// The system the event comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The reporting system (AI orchestrator, viewer, PACS …).
    pub system: Label,
    pub site: Option<Label>,
    /// The user's workstation address.
    pub ip: Option<IpAddr>,
    /// The user's workstation name (when no IP is known).
    pub device: Option<Label>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    pub id: Label,
    pub system: Option<Uri>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: Token,
    pub version: Token,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub uid: Uid,
    pub accession: Option<Label>,
    /// The AI engine's own study digest (docs/dicom.md `study-pixel-sha256`).
    pub pixel_sha256: Option<Digest>,
    /// Number of instances the digest covers.
    pub instances: Option<u32>,
    /// SOP Class UID of the analysed instances.
    pub sop_class: Option<Uid>,
    /// Prior studies the model compared against.
    #[serde(default)]
    pub priors: Vec<Uid>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub code: Label,
    pub system: Option<Uri>,
    pub display: Option<Label>,
    pub confidence: Option<Confidence>,
}

/// `POST /ai/v1/inferences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inference {
    /// The engine's id of this event; also the idempotency key.
    pub event_id: Label,
    /// When the inference finished (defaults to the time of the call).
    pub time: Option<Instant>,
    pub started: Option<Instant>,
    pub user: User,
    pub source: Source,
    pub patient: Option<Patient>,
    #[serde(default)]
    pub access_policy: Vec<Uri>,
    #[serde(default)]
    pub outcome: Outcome,
    pub model: ModelRef,
    /// The endpoint actually called (defaults to the registered one).
    pub endpoint: Option<Uri>,
    pub study: Study,
    #[serde(default)]
    pub findings: Vec<Finding>,
    pub heatmap_time: Option<Instant>,
    pub latency_ms: Option<u64>,
    pub gpu_memory_mb: Option<u64>,
    pub cpu_fallback: Option<bool>,
    pub prompt_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Prompt body: stored only when `[privacy] store_content`; its
    /// SHA-256 always.
    pub prompt: Option<Text>,
    pub prompt_sha256: Option<Digest>,
    pub output: Option<Text>,
    pub output_sha256: Option<Digest>,
    pub redaction_policy: Option<Label>,
}

/// `POST /ai/v1/overrides`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub event_id: Label,
    pub time: Option<Instant>,
    pub user: User,
    pub source: Source,
    #[serde(default)]
    pub access_policy: Vec<Uri>,
    #[serde(default)]
    pub outcome: Outcome,
    /// The vellum id of the inference event (`AuditEvent/<id>`).
    pub inference_id: Label,
    pub action: Action,
    pub reason_code: Option<Reason>,
    pub reason_text: Option<Text>,
    /// Defaults to `time` minus the inference's `recorded`.
    pub time_to_action_ms: Option<u64>,
    /// The radiologist's edit as a diff (unified diff or JSON Patch text).
    pub edit_diff: Option<Text>,
}

/// `POST /ai/v1/renderings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendering {
    pub event_id: Label,
    pub time: Option<Instant>,
    pub user: User,
    pub source: Source,
    #[serde(default)]
    pub access_policy: Vec<Uri>,
    #[serde(default)]
    pub outcome: Outcome,
    pub inference_id: Label,
    /// Where the result was shown or sent (viewer, PACS, worklist …).
    pub destination: Label,
    /// e.g. `DICOM-SR`, `GSPS`, `DICOM-SC`, `PNG`, `HTML`.
    pub format: Label,
    /// Whether the user actually viewed it.
    pub viewed: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub metric: Label,
    pub value: super::types::Decimal,
    pub dataset: Option<Label>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// Where the validation report lives (URL, DOI, document id).
    pub reference: Option<Label>,
    #[serde(default)]
    pub results: Vec<Metric>,
}

/// `POST /ai/v1/models`: register (deploy) a model version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub name: Token,
    pub version: Token,
    pub provider: Label,
    pub endpoint: Option<Uri>,
    pub training_date: Date,
    pub validation: Validation,
    pub description: Option<Label>,
    /// When the site switched to this version (defaults to now).
    pub deployed_at: Option<Instant>,
    pub user: User,
    pub source: Source,
    #[serde(default)]
    pub access_policy: Vec<Uri>,
}

/// What an AI gateway's guard flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuardKind {
    /// A model's output contained protected health information.
    AiOutputPhiFlagged,
    /// A prompt carried an attempt to inject instructions.
    PromptInjectionAttempt,
}

impl GuardKind {
    pub fn code(self) -> &'static str {
        match self {
            GuardKind::AiOutputPhiFlagged => crate::vocabulary::AI_OUTPUT_PHI_FLAGGED,
            GuardKind::PromptInjectionAttempt => crate::vocabulary::PROMPT_INJECTION_ATTEMPT,
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            GuardKind::AiOutputPhiFlagged => "AI output flagged for PHI",
            GuardKind::PromptInjectionAttempt => "Prompt-injection attempt",
        }
    }
}

/// `POST /ai/v1/guard-events`: an AI gateway's guard flagged a prompt or
/// an output. Only the content's hash is ever sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardEvent {
    pub event_id: Label,
    pub time: Option<Instant>,
    pub kind: GuardKind,
    pub source: Source,
    /// The user whose request was flagged, when known.
    pub user: Option<User>,
    /// The model whose output or prompt was flagged, when known.
    pub model: Option<ModelRef>,
    /// The guard or filter that flagged it (name and version).
    pub detector: Option<Label>,
    /// SHA-256 of the flagged prompt or output.
    pub content_sha256: Option<Digest>,
}
