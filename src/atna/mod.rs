//! DICOM audit messages (PS3.15 A.5.1 `AuditMessage`, and the RFC 3881
//! form it grew from) → FHIR R4 AuditEvent, following the R4 DICOM
//! mapping. Messages that cannot be read become a parse-failure event
//! carrying the raw bytes' SHA-256 and the sender: nothing is dropped.
//!
//! Every event also gets an entity for the received message itself: its
//! SHA-256 (always) and its bytes (only with `[privacy] store_content`).

mod map;
pub mod xml;

pub use map::{parse_failure_event, to_audit_event};
pub use xml::{Element, XmlError, XmlLimits};

/// `entity.detail` types on the received-message entity.
pub const DETAIL_MESSAGE_SHA256: &str = "atna-message-sha256";
pub const DETAIL_MESSAGE: &str = "atna-message";
pub const DETAIL_SENDER: &str = "syslog-sender";

/// Why a message is not a DICOM audit message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtnaError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("the root element is {0}, not AuditMessage")]
    NotAuditMessage(String),
    #[error("required element or attribute missing: {0}")]
    Missing(&'static str),
    #[error("invalid value of {0}")]
    Invalid(&'static str),
}

/// How the message arrived.
#[derive(Debug, Clone)]
pub struct Received<'a> {
    /// The syslog MSG part (the XML), as received.
    pub raw: &'a [u8],
    /// The sender's address (`ip:port`).
    pub peer: String,
    /// `tcp`, `tls` or `udp`.
    pub transport: &'static str,
    /// The syslog HOSTNAME and APP-NAME, when present.
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    /// The syslog PRI and (RFC 5424) MSGID, when present.
    pub priority: Option<u8>,
    pub msg_id: Option<String>,
    /// Receipt time (UTC stamp): `recorded` when the message has none usable.
    pub received: String,
    pub privacy: crate::config::PrivacySettings,
}

/// Reads and checks an audit message: the root must be `AuditMessage`
/// with an `EventIdentification` and at least one `ActiveParticipant`
/// and `AuditSourceIdentification` (PS3.15 A.5.1, RFC 3881 §5).
pub fn parse(raw: &[u8], limits: XmlLimits) -> Result<Element, AtnaError> {
    let root = xml::parse(raw, limits)?;
    if root.name != "AuditMessage" {
        return Err(AtnaError::NotAuditMessage(
            root.name.chars().take(64).collect(),
        ));
    }
    let ev = root
        .child("EventIdentification")
        .ok_or(AtnaError::Missing("EventIdentification"))?;
    let id = ev.child("EventID").ok_or(AtnaError::Missing("EventID"))?;
    if map::code_of(id).is_none() {
        return Err(AtnaError::Missing("EventID code"));
    }
    if root.child("ActiveParticipant").is_none() {
        return Err(AtnaError::Missing("ActiveParticipant"));
    }
    let src = root
        .child("AuditSourceIdentification")
        .ok_or(AtnaError::Missing("AuditSourceIdentification"))?;
    if src.attr("AuditSourceID").is_none() {
        return Err(AtnaError::Missing("AuditSourceID"));
    }
    if let Some(a) = ev.attr("EventActionCode") {
        if !matches!(a, "C" | "R" | "U" | "D" | "E") {
            return Err(AtnaError::Invalid("EventActionCode"));
        }
    }
    match ev.attr("EventOutcomeIndicator") {
        Some("0" | "4" | "8" | "12") => {}
        Some(_) => return Err(AtnaError::Invalid("EventOutcomeIndicator")),
        None => return Err(AtnaError::Missing("EventOutcomeIndicator")),
    }
    Ok(root)
}
