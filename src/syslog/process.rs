//! One syslog message: split the header, read the audit XML, map, submit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::atna::{self, Received, XmlLimits};
use crate::config::PrivacySettings;
use crate::intake::{Intake, IntakeError, Stored, Submission};

use super::frame;

static RECEIVED: AtomicU64 = AtomicU64::new(0);
static STORED: AtomicU64 = AtomicU64::new(0);
static PARSE_FAILURES: AtomicU64 = AtomicU64::new(0);
static UDP_DROPPED: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);

/// Message counts since this process started (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub stored: u64,
    /// Messages stored as parse-failure events.
    pub parse_failures: u64,
    /// UDP datagrams dropped because too many were being stored already.
    pub udp_dropped: u64,
    /// Messages received but not stored (the store refused them until
    /// shutdown, or refused even their parse-failure event).
    pub lost: u64,
}

pub fn counters() -> Counters {
    Counters {
        received: RECEIVED.load(Ordering::Relaxed),
        stored: STORED.load(Ordering::Relaxed),
        parse_failures: PARSE_FAILURES.load(Ordering::Relaxed),
        udp_dropped: UDP_DROPPED.load(Ordering::Relaxed),
        lost: LOST.load(Ordering::Relaxed),
    }
}

pub(super) fn udp_dropped() {
    UDP_DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// What every connection and datagram shares.
pub(super) struct Context {
    pub intake: Intake,
    pub privacy: PrivacySettings,
    pub limits: XmlLimits,
}

/// Why a message could not be stored.
#[derive(Debug)]
pub(super) enum NotStored {
    /// The store refused or failed; worth retrying.
    Retry,
    /// Even the parse-failure event was refused (a mapping bug): retrying
    /// cannot help.
    Refused,
}

/// Maps and stores one frame. A message that is not a DICOM audit
/// message (or whose mapping fails validation) is stored as a
/// parse-failure event; only a store failure is an error.
pub(super) async fn store(
    ctx: &Context,
    raw: &[u8],
    peer: SocketAddr,
    transport: &'static str,
    sender: Option<&str>,
) -> Result<(), NotStored> {
    RECEIVED.fetch_add(1, Ordering::Relaxed);
    let m = frame::split(raw);
    let rx = Received {
        raw: m.msg,
        peer: peer.to_string(),
        transport,
        hostname: m.hostname,
        app_name: m.app_name,
        priority: m.priority,
        msg_id: m.msg_id,
        received: vellum_ledger::stamp(OffsetDateTime::now_utc()),
        privacy: ctx.privacy.clone(),
    };
    let (body, key) = match atna::parse(m.msg, ctx.limits) {
        // A message sent again (a sender's retry after a broken
        // connection) is stored once: the key is its exact bytes' hash.
        Ok(msg) => (
            atna::to_audit_event(&msg, &rx),
            Some(format!("atna:{}", hex::encode(Sha256::digest(m.msg)))),
        ),
        Err(e) => {
            PARSE_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer_port = peer.port(),
                transport,
                bytes = m.msg.len(),
                reason = reason_kind(&e),
                "syslog: not a readable DICOM audit message; storing a parse-failure event"
            );
            (atna::parse_failure_event(&rx, &e.to_string()), None)
        }
    };
    let mut submission = match key {
        Some(k) => Submission::mapped(body).with_key(k),
        None => Submission::mapped(body),
    };
    // Over mutual TLS the certificate's subject is the sender.
    if let Some(sender) = sender {
        submission = submission.from_sender(sender);
    }
    match ctx.intake.submit(submission).await {
        Ok(Stored::Committed(_)) | Ok(Stored::Existing(_)) => {
            STORED.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(IntakeError::Rejected(rejection)) => {
            // The sender's values broke a FHIR rule the mapping does not
            // check: keep the message as a parse failure instead.
            let at: Vec<&str> = rejection
                .issues()
                .iter()
                .filter_map(|i| i.expression.as_deref())
                .collect();
            PARSE_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(at = ?at, peer_port = peer.port(), "syslog: mapped AuditEvent failed validation; storing a parse-failure event");
            let body =
                atna::parse_failure_event(&rx, "the converted AuditEvent failed FHIR validation");
            match ctx.intake.submit(Submission::mapped(body)).await {
                Ok(_) => {
                    STORED.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(IntakeError::Rejected(_)) => {
                    tracing::error!("syslog: the parse-failure event failed validation");
                    Err(NotStored::Refused)
                }
                Err(_) => Err(NotStored::Retry),
            }
        }
        Err(_) => Err(NotStored::Retry),
    }
}

/// Stores one frame, retrying store failures with backoff until
/// `stopping` is set. Returns false only when the server is stopping and
/// the message could not be stored (the connection should close).
pub(super) async fn store_until_stored(
    ctx: &Context,
    raw: &[u8],
    peer: SocketAddr,
    sender: Option<&str>,
    transport: &'static str,
    stopping: &AtomicBool,
) -> bool {
    let mut backoff = Duration::from_millis(20);
    loop {
        match store(ctx, raw, peer, transport, sender).await {
            Ok(()) => return true,
            Err(NotStored::Refused) => {
                // Counted and logged; the connection goes on.
                LOST.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(NotStored::Retry) => {
                if stopping.load(Ordering::Relaxed) {
                    LOST.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        peer_port = peer.port(),
                        "syslog: message not stored before shutdown"
                    );
                    return false;
                }
                tracing::warn!(
                    peer_port = peer.port(),
                    "syslog: store refused a message; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn reason_kind(e: &atna::AtnaError) -> &'static str {
    use atna::{AtnaError, XmlError};
    match e {
        AtnaError::Xml(XmlError::TooLarge(_)) => "too large",
        AtnaError::Xml(XmlError::TooDeep(_)) => "too deep",
        AtnaError::Xml(XmlError::TooManyElements(_)) => "too many elements",
        AtnaError::Xml(XmlError::NotUtf8(_)) => "not UTF-8",
        AtnaError::Xml(XmlError::Doctype) => "doctype",
        AtnaError::Xml(XmlError::Malformed(_)) => "malformed XML",
        AtnaError::Xml(XmlError::Empty) => "empty",
        AtnaError::NotAuditMessage(_) => "not an AuditMessage",
        AtnaError::Missing(_) => "required element missing",
        AtnaError::Invalid(_) => "invalid value",
    }
}
