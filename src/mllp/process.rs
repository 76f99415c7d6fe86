//! One message: read → map → append → ACK. AA/CA is built only after
//! `Ledger::append` returned, i.e. after the entry's transaction committed.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use crate::hl7v2::{self, AckCode, ErrCode, Inbound, Kind, Origin, Refusal};
use crate::intake::{Intake, IntakeError, Stored, Submission};
use vellum_ledger::{AppendError, Ledger};

use super::ack;
use super::index::InferenceIndex;

/// What every connection handler shares.
pub struct Context {
    pub ledger: Ledger,
    /// The one submit path (with the study sources for pixel digests).
    pub intake: Intake,
    pub index: InferenceIndex,
    /// `[privacy]`: patient identifiers are pseudonymised before mapping.
    pub privacy: crate::config::PrivacySettings,
}

/// Reads a frame; a refused message gets its ACK right away.
pub enum Step {
    Answer(Option<String>),
    /// The message and when its frame was read (for the ACK latency).
    Store(Box<Inbound>, Instant),
}

pub fn read(raw: &[u8], origin: Origin) -> Step {
    let received = Instant::now();
    match hl7v2::read(raw, origin) {
        Ok(inbound) => Step::Store(Box::new(inbound), received),
        Err(refused) => Step::Answer(refuse(refused.header.as_ref(), &refused.refusal, received)),
    }
}

/// The AR for a message on a connection whose client certificate may not
/// send (`why`): nothing is stored, nothing of the message is logged.
pub fn not_authorised(raw: &[u8], origin: Origin, why: &str) -> Option<String> {
    let received = Instant::now();
    let header = match hl7v2::read(raw, origin) {
        Ok(inbound) => Some(inbound.header),
        Err(refused) => refused.header,
    };
    refuse(
        header.as_ref(),
        &Refusal::reject(ErrCode::InternalError, "MSH", 1, 0, why),
        received,
    )
}

/// `ORU^R01` when MSH-9 is made of short codes, else `other` (a label
/// must not take arbitrary sender text).
fn message_type(header: Option<&hl7v2::Header>) -> String {
    let code_like =
        |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    match header {
        Some(h) if code_like(&h.message_code) && code_like(&h.trigger) => {
            format!("{}^{}", h.message_code, h.trigger)
        }
        Some(h) if code_like(&h.message_code) => h.message_code.clone(),
        _ => "other".into(),
    }
}

fn observe(header: Option<&hl7v2::Header>, code: AckCode, received: Instant) {
    crate::metrics::global().mllp_ack(
        &message_type(header),
        ack::msa_code(header, code),
        received.elapsed(),
    );
}

/// Logs an AE/AR: the code and where in the message, never its content.
fn refuse(header: Option<&hl7v2::Header>, r: &Refusal, received: Instant) -> Option<String> {
    observe(header, r.ack, received);
    tracing::warn!(
        ack = ack::msa_code(header, r.ack),
        error_code = r.code.code(),
        segment = %r.segment,
        field = r.field,
        message_type = %message_type(header),
        "mllp: message not accepted"
    );
    if header.is_none_or(|h| h.wants_ack(r.ack)) {
        Some(ack::build(header, r.ack, Some(r), None))
    } else {
        None
    }
}

/// Maps and appends; the ACK (if the sender wants one). `sender` is the
/// connection's authenticated sender (a client certificate's subject),
/// the scope of MSH-10.
pub async fn store(
    ctx: Arc<Context>,
    mut inbound: Box<Inbound>,
    received: Instant,
    sender: Option<Arc<str>>,
) -> Option<String> {
    hl7v2::receipt::minimise_patient(&mut inbound, &ctx.privacy);
    inbound.keep_free_text = ctx.privacy.store_content;
    let h = &inbound.header;
    let link = match &inbound.kind {
        Kind::AiOverride { study_uid } => match ctx.index.find(&ctx.ledger, study_uid).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "mllp: inference lookup failed");
                return refuse(
                    Some(h),
                    &retry_later("the store could not be read"),
                    received,
                );
            }
        },
        _ => None,
    };
    let recorded = vellum_ledger::stamp(OffsetDateTime::now_utc());
    let body = hl7v2::to_audit_event(&inbound, link.as_ref(), &recorded);
    let mut submission = Submission::mapped(body)
        .with_key(h.idempotency_key())
        .from_request(inbound.sha256_b64.as_bytes());
    if let Some(sender) = sender {
        submission = submission.from_sender(sender.to_string());
    }
    match ctx.intake.submit(submission).await {
        Ok(Stored::Committed(committed)) => {
            observe(Some(h), AckCode::Accept, received);
            if !h.wants_ack(AckCode::Accept) {
                return None;
            }
            Some(ack::build(
                Some(h),
                AckCode::Accept,
                None,
                Some(ack::Stored {
                    receipt: &committed.receipt,
                    created: committed.created,
                }),
            ))
        }
        Err(IntakeError::Rejected(rejection)) => {
            // A mapping bug, never the sender's content: log where, not what.
            let at: Vec<&str> = rejection
                .issues()
                .iter()
                .filter_map(|i| i.expression.as_deref())
                .collect();
            tracing::error!(at = ?at, "mllp: mapped AuditEvent failed validation");
            refuse(
                Some(h),
                &Refusal::error(
                    ErrCode::InternalError,
                    "MSH",
                    1,
                    0,
                    "the message could not be mapped to a valid AuditEvent",
                ),
                received,
            )
        }
        Err(IntakeError::Conflict { existing }) => refuse(
            Some(h),
            &Refusal::reject(
                ErrCode::DuplicateKey,
                "MSH",
                1,
                10,
                &format!(
                    "MSH-10 was already used by this sender for a different message (stored as AuditEvent/{})",
                    existing.id
                ),
            ),
            received,
        ),
        Err(IntakeError::Append(AppendError::Overloaded)) | Err(IntakeError::Busy) => refuse(
            Some(h),
            &retry_later("vellum is overloaded; resend the message later"),
            received,
        ),
        // No If-None-Exist on this path: Existing and Condition cannot occur.
        Ok(Stored::Existing(_)) | Err(IntakeError::Condition(_)) | Err(IntakeError::Append(_)) => {
            tracing::error!("mllp: append failed");
            refuse(
                Some(h),
                &retry_later("the message could not be stored; resend it"),
                received,
            )
        }
    }
}

fn retry_later(text: &str) -> Refusal {
    Refusal::error(ErrCode::InternalError, "MSH", 1, 0, text)
}
