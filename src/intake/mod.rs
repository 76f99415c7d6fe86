//! The one submit path. Every way in — REST create, each Bundle entry, the
//! AI API, HL7 v2 over MLLP, the DICOM follow-up worker — hands its event to
//! [`Intake::submit`] (or [`Intake::prepare`] + [`Intake::commit_all`] for a
//! transaction), which
//!
//! 1. validates it first, parsing it once (on the blocking pool: a body may
//!    be megabytes and the async workers must stay free);
//! 2. enriches the parsed tree: DICOM pixel digests of referenced studies,
//!    or a pending mark the follow-up worker completes — only for events
//!    already known to be valid, since a lookup may download a study;
//! 3. assigns id and `meta`, derives the search-index rows and the
//!    idempotency key (an explicit key, or one derived from `If-None-Exist`);
//! 4. appends it through the ledger's single writer, returning only after
//!    the commit.
//!
//! Mapping [`IntakeError`] to HTTP statuses, OperationOutcomes and HL7 ACK
//! codes stays at each edge.

pub mod conditional;
pub mod keys;
pub mod sender;
mod tags;
pub mod trace;

use std::sync::Arc;

use vellum_json::Limits;
use vellum_ledger::store::StoredEntry;
use vellum_ledger::{AppendError, Committed, Draft, Ledger};

use crate::dicom::service::DicomService;
use crate::fhir::create::{self, Rejection};
use conditional::{ConditionError, Found};

/// Who wrote the event's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client: every check, within the configured request limits.
    Client,
    /// vellum's own mapping (HL7 v2, the AI API, follow-ups): its element
    /// names and JSON types are fixed in code, so the fhirbolt structure
    /// parse (a third of the per-message CPU) runs only in debug builds,
    /// and every test.
    Vellum,
}

/// One event on its way in.
#[derive(Debug, Clone)]
pub struct Submission {
    body: Vec<u8>,
    origin: Origin,
    key: Option<String>,
    if_none_exist: Option<Vec<u8>>,
    enrich: bool,
    /// The authenticated sender: recorded in the event (`meta.tag`), and
    /// the scope of its idempotency key and `If-None-Exist`.
    sender: Option<String>,
    /// SHA-256 of the request the event was made from; a replay under the
    /// same key with another digest is a conflict, not a retry.
    request_digest: Option<[u8; 32]>,
    /// The caller's W3C trace context, recorded as an entity.
    trace: Option<trace::TraceParentValue>,
}

impl Submission {
    /// An AuditEvent as a client sent it (FHIR JSON).
    pub fn fhir(body: impl Into<Vec<u8>>) -> Self {
        Submission {
            body: body.into(),
            origin: Origin::Client,
            key: None,
            if_none_exist: None,
            enrich: true,
            sender: None,
            request_digest: None,
            trace: None,
        }
    }

    /// An AuditEvent vellum's own mapping wrote.
    pub fn mapped(body: impl Into<Vec<u8>>) -> Self {
        Submission {
            origin: Origin::Vellum,
            ..Submission::fhir(body)
        }
    }

    /// An idempotency key: if an entry is already stored under it, that
    /// entry is the answer and nothing new is stored.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// FHIR conditional create: the criteria of `If-None-Exist`.
    pub fn if_none_exist(mut self, criteria: impl Into<Vec<u8>>) -> Self {
        self.if_none_exist = Some(criteria.into());
        self
    }

    /// The authenticated sender (a token's, certificate's or JWT's
    /// subject). Keys and `If-None-Exist` then only ever match what this
    /// sender stored: another sender can neither answer nor block its calls.
    pub fn from_sender(mut self, subject: impl Into<String>) -> Self {
        self.sender = Some(subject.into());
        self
    }

    /// The request the event was made from (the HL7 message, the AI API
    /// body): a later submission under the same key is a retry only if its
    /// request is the same; otherwise it is refused as a conflict.
    pub fn from_request(mut self, request: &[u8]) -> Self {
        use sha2::Digest;
        self.request_digest = Some(sha2::Sha256::digest(request).into());
        self
    }

    /// The request's checked `traceparent`: the stored event records it
    /// (see [`trace`]), so the hash covers it.
    pub fn with_trace(mut self, trace: Option<trace::TraceParentValue>) -> Self {
        self.trace = trace;
        self
    }

    /// Skips DICOM enrichment (events whose digests were computed by the
    /// caller, such as the follow-up worker's).
    pub fn without_enrichment(mut self) -> Self {
        self.enrich = false;
        self
    }
}

/// What a submission became before the commit.
#[derive(Debug)]
pub enum Prepared {
    /// Ready to append.
    Draft(Box<Draft>),
    /// `If-None-Exist` matched exactly this stored entry: nothing to append.
    Existing(StoredEntry),
}

/// What a submission became.
#[derive(Debug)]
pub enum Stored {
    /// Committed now, or (`created == false`) the entry its key names.
    Committed(Committed),
    /// `If-None-Exist` matched this entry; nothing was appended.
    Existing(StoredEntry),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The event is not an acceptable AuditEvent.
    #[error("the event was refused")]
    Rejected(Rejection),
    /// `If-None-Exist` could not be decided.
    #[error(transparent)]
    Condition(ConditionError),
    /// The ledger did not commit.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The blocking pool that validates events is gone (shutting down).
    #[error("the server is busy")]
    Busy,
    /// The key names an entry made from a different request (a reused
    /// message control id or event id): nothing was stored.
    #[error("the key was already used for a different request (AuditEvent/{})", .existing.id)]
    Conflict { existing: Box<StoredEntry> },
}

/// The submit path, shared by every way in.
#[derive(Clone)]
pub struct Intake {
    ledger: Ledger,
    dicom: Option<Arc<DicomService>>,
    limits: Limits,
}

impl Intake {
    pub fn new(ledger: Ledger, dicom: Option<Arc<DicomService>>, limits: Limits) -> Self {
        Intake {
            ledger,
            dicom,
            limits,
        }
    }

    /// The same path with these study sources for enrichment.
    pub fn with_dicom(mut self, dicom: Option<Arc<DicomService>>) -> Self {
        self.dicom = dicom;
        self
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Validates, enriches, keys and appends one event.
    pub async fn submit(&self, submission: Submission) -> Result<Stored, IntakeError> {
        match self.prepare(submission).await? {
            Prepared::Draft(draft) => Ok(Stored::Committed(self.ledger.append(*draft).await?)),
            Prepared::Existing(entry) => Ok(Stored::Existing(entry)),
        }
    }

    /// Steps 1–3 of [`Intake::submit`]: the draft, or the entry an
    /// `If-None-Exist` already names.
    pub async fn prepare(&self, submission: Submission) -> Result<Prepared, IntakeError> {
        let Submission {
            body,
            origin,
            key,
            if_none_exist,
            enrich,
            sender,
            mut request_digest,
            trace,
        } = submission;
        let (structure, limits) = match origin {
            Origin::Client => (true, self.limits),
            Origin::Vellum => (cfg!(debug_assertions), Limits::INTERNAL),
        };
        let mut checked =
            tokio::task::spawn_blocking(move || create::check(&body, structure, limits))
                .await
                .map_err(|_| IntakeError::Busy)?
                .map_err(IntakeError::Rejected)?;
        if enrich {
            if let Some(service) = self.dicom.as_deref() {
                crate::dicom::enrich::enrich_root(service, checked.root_mut()).await;
            }
        }
        if let Some(subject) = &sender {
            sender::stamp(checked.root_mut(), subject);
        }
        if let Some(t) = &trace {
            trace::stamp(checked.root_mut(), t);
        }
        // The key's stem (the key without the request digest) is known
        // before the body is final, so the body can record it (keys::stamp).
        let mut stem = key.map(|k| sender::scoped_key(&k, sender.as_deref()));
        let mut existing = None;
        if let Some(criteria) = if_none_exist {
            let criteria = sender::scoped_criteria(&criteria, sender.as_deref());
            match conditional::existing(&criteria, &self.ledger)
                .await
                .map_err(IntakeError::Condition)?
            {
                // The condition's key replaces an explicit one, digest and all.
                Found::None(key) => {
                    stem = Some(key);
                    request_digest = None;
                }
                Found::One(entry) => existing = Some(entry),
            }
        }
        keys::stamp(checked.root_mut(), stem.as_deref());
        let mut draft = create::finish(checked).map_err(IntakeError::Rejected)?;
        if let Some(entry) = existing {
            return Ok(Prepared::Existing(entry));
        }
        // Derived here, above the ledger, like the index rows.
        let summary = std::str::from_utf8(draft.body())
            .ok()
            .and_then(crate::radiology::summary::of_body);
        draft = draft.with_summary(summary);
        if let Some(stem) = stem {
            let key = match request_digest {
                Some(digest) => self.keyed_by_request(&stem, &digest).await?,
                None => stem,
            };
            draft = draft.with_key(key);
        }
        Ok(Prepared::Draft(Box::new(draft)))
    }

    /// The key of a submission made from the request with `digest`: the
    /// key and the digest. An entry under the key with another digest makes
    /// this submission a conflict. (Two different requests racing under one
    /// key can both be stored; identical ones never are.)
    async fn keyed_by_request(&self, key: &str, digest: &[u8; 32]) -> Result<String, IntakeError> {
        let prefix = format!("{key}{}", sender::DIGEST_SEPARATOR);
        let full = format!("{prefix}{}", hex::encode(digest));
        let stored = self.ledger.read_by_key_prefix(&prefix).await.map_err(|e| {
            tracing::error!(error = %e, "idempotency key look-up failed");
            IntakeError::Append(AppendError::Store(e.to_string()))
        })?;
        match stored.into_iter().find(|(k, _)| *k != full) {
            Some((_, existing)) => Err(IntakeError::Conflict {
                existing: Box::new(existing),
            }),
            None => Ok(full),
        }
    }

    /// Appends prepared drafts in one transaction: all of them or none.
    pub async fn commit_all(&self, drafts: Vec<Draft>) -> Result<Vec<Committed>, AppendError> {
        self.ledger.append_all(drafts).await
    }

    /// Appends one prepared draft.
    pub async fn commit(&self, draft: Draft) -> Result<Committed, AppendError> {
        self.ledger.append(draft).await
    }
}
