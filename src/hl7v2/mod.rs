//! HL7 v2 message → AuditEvent mapping.
//!
//! One pass reads the message (charset from MSH-18, structure with
//! hl7-parser, required MSH fields checked here), then one file per mapping
//! turns what was read into a profiled AuditEvent:
//! - [`receipt`]: every message (`hl7v2-message-receipt`);
//! - [`ai_result`]: ORU^R01 carrying AI results (`radiology-ai-inference`);
//! - [`correction`]: ORU^R01 correcting/rejecting an AI result
//!   (`radiology-ai-override`).
//!
//! Nothing here logs; nothing here keeps message content beyond the fields
//! the mapping table (docs/hl7v2.md) names.

pub mod ai_result;
pub mod correction;
pub mod fields;
pub mod receipt;

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use fields::{clean, Hd, Seps};

pub use crate::vocabulary::{
    AI_EVENT_SYSTEM, HL7V2_SYSTEM, INFERENCE_PROFILE, OVERRIDE_PROFILE, RECEIPT_PROFILE,
};

/// HL7 versions vellum accepts (MSH-12.1).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1",
    "2.8.2", "2.9",
];

/// MSA-1 family (original mode AA/AE/AR, enhanced mode CA/CE/CR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accept,
    Error,
    Reject,
}

/// HL7 table 0357 (message error condition codes) as used by vellum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersion,
    /// HL7 table 0357 code 205: the message control id was already used.
    DuplicateKey,
    InternalError,
}

impl ErrCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrCode::SegmentSequence => "100",
            ErrCode::RequiredFieldMissing => "101",
            ErrCode::DataType => "102",
            ErrCode::UnsupportedMessageType => "200",
            ErrCode::UnsupportedEventCode => "201",
            ErrCode::UnsupportedProcessingId => "202",
            ErrCode::UnsupportedVersion => "203",
            ErrCode::DuplicateKey => "205",
            ErrCode::InternalError => "207",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            ErrCode::SegmentSequence => "Segment sequence error",
            ErrCode::RequiredFieldMissing => "Required field missing",
            ErrCode::DataType => "Data type error",
            ErrCode::UnsupportedMessageType => "Unsupported message type",
            ErrCode::UnsupportedEventCode => "Unsupported event code",
            ErrCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrCode::UnsupportedVersion => "Unsupported version id",
            ErrCode::DuplicateKey => "Duplicate key identifier",
            ErrCode::InternalError => "Application internal error",
        }
    }
}

/// Why a message was not stored: becomes MSA-1 AE/AR + an ERR segment.
/// `text` never contains message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} at {segment}^{sequence}^{field}: {text}", code.code())]
pub struct Refusal {
    pub ack: AckCode,
    pub code: ErrCode,
    /// ERR-2 location: segment id, its sequence (1-based), field number.
    pub segment: String,
    pub sequence: usize,
    pub field: usize,
    pub text: String,
}

impl Refusal {
    pub fn reject(code: ErrCode, segment: &str, sequence: usize, field: usize, text: &str) -> Self {
        Refusal {
            ack: AckCode::Reject,
            code,
            segment: segment.into(),
            sequence,
            field,
            text: text.into(),
        }
    }

    pub fn error(code: ErrCode, segment: &str, sequence: usize, field: usize, text: &str) -> Self {
        Refusal {
            ack: AckCode::Error,
            ..Refusal::reject(code, segment, sequence, field, text)
        }
    }
}

/// The message header as read from the first segment, before any
/// validation: what the ACK needs even when the message is refused.
/// `raw_*` fields keep the sender's escaping (they are copied into the ACK,
/// which uses the sender's own encoding characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub seps: Seps,
    /// MSH-2 as sent.
    pub encoding_chars: String,
    pub raw_sending_app: String,
    pub raw_sending_facility: String,
    pub raw_receiving_app: String,
    pub raw_receiving_facility: String,
    pub raw_control_id: String,
    pub raw_processing_id: String,
    pub raw_version: String,
    pub message_code: String,
    pub trigger: String,
    pub structure: String,
    pub datetime: String,
    pub accept_ack_type: String,
    pub app_ack_type: String,
    pub charset: String,
}

impl Header {
    /// Reads the MSH from the first line of `raw` (bytes; only ASCII
    /// delimiters are looked at). `None` when the message does not start
    /// with `MSH` and a field separator.
    pub fn sniff(raw: &[u8]) -> Option<Header> {
        let end = raw
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(raw.len());
        let line = String::from_utf8_lossy(&raw[..end]);
        let rest = line.strip_prefix("MSH")?;
        let fs = rest.chars().next()?;
        if fs.is_alphanumeric() || fs.is_whitespace() || !fs.is_ascii() {
            return None;
        }
        let parts: Vec<&str> = rest[fs.len_utf8()..].split(fs).collect();
        // parts[0] = MSH-2, parts[n-2] = MSH-n.
        let get = |n: usize| parts.get(n - 2).copied().unwrap_or("").to_string();
        let encoding_chars = get(2);
        let seps = Seps::new(fs, &encoding_chars);
        let msh9 = get(9);
        let comp =
            |s: &str, i: usize| clean(&seps.decode(s.split(seps.component).nth(i).unwrap_or("")));
        Some(Header {
            encoding_chars,
            raw_sending_app: get(3),
            raw_sending_facility: get(4),
            raw_receiving_app: get(5),
            raw_receiving_facility: get(6),
            datetime: comp(&get(7), 0),
            message_code: comp(&msh9, 0),
            trigger: comp(&msh9, 1),
            structure: comp(&msh9, 2),
            raw_control_id: get(10),
            raw_processing_id: get(11),
            raw_version: get(12),
            accept_ack_type: comp(&get(15), 0),
            app_ack_type: comp(&get(16), 0),
            charset: comp(&get(18), 0),
            seps,
        })
    }

    pub fn control_id(&self) -> String {
        clean(&self.seps.decode(&self.raw_control_id))
    }

    pub fn version(&self) -> String {
        let first = self
            .raw_version
            .split(self.seps.component)
            .next()
            .unwrap_or("");
        clean(&self.seps.decode(first))
    }

    pub fn processing_id(&self) -> String {
        let first = self
            .raw_processing_id
            .split(self.seps.component)
            .next()
            .unwrap_or("");
        clean(&self.seps.decode(first))
    }

    pub fn sending_app(&self) -> Hd {
        Hd::parse(&self.raw_sending_app, &self.seps)
    }

    pub fn sending_facility(&self) -> Hd {
        Hd::parse(&self.raw_sending_facility, &self.seps)
    }

    pub fn receiving_app(&self) -> Hd {
        Hd::parse(&self.raw_receiving_app, &self.seps)
    }

    pub fn receiving_facility(&self) -> Hd {
        Hd::parse(&self.raw_receiving_facility, &self.seps)
    }

    /// Enhanced acknowledgement mode: MSH-15 or MSH-16 is valued.
    pub fn enhanced(&self) -> bool {
        !self.accept_ack_type.is_empty() || !self.app_ack_type.is_empty()
    }

    /// Whether an accept acknowledgement with `code` is to be sent (MSH-15:
    /// AL always, NE never, ER only on error, SU only on success; empty =
    /// AL). Original mode always answers.
    pub fn wants_ack(&self, code: AckCode) -> bool {
        if !self.enhanced() {
            return true;
        }
        match self.accept_ack_type.as_str() {
            "NE" => false,
            "ER" => code != AckCode::Accept,
            "SU" => code == AckCode::Accept,
            _ => true,
        }
    }

    /// The required MSH fields and supported values.
    pub fn validate(&self) -> Result<(), Refusal> {
        let missing = |field: usize, what: &str| {
            Refusal::reject(
                ErrCode::RequiredFieldMissing,
                "MSH",
                1,
                field,
                &format!("MSH-{field} ({what}) is required"),
            )
        };
        if self.message_code.is_empty() {
            return Err(missing(9, "message type"));
        }
        let code_like =
            |s: &str| s.len() <= 7 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !code_like(&self.message_code) {
            return Err(Refusal::reject(
                ErrCode::UnsupportedMessageType,
                "MSH",
                1,
                9,
                "MSH-9.1 is not a message type code",
            ));
        }
        if !code_like(&self.trigger) {
            return Err(Refusal::reject(
                ErrCode::UnsupportedEventCode,
                "MSH",
                1,
                9,
                "MSH-9.2 is not a trigger event code",
            ));
        }
        if self.control_id().is_empty() {
            return Err(missing(10, "message control id"));
        }
        let pid = self.processing_id();
        if pid.is_empty() {
            return Err(missing(11, "processing id"));
        }
        if !matches!(pid.as_str(), "P" | "D" | "T") {
            return Err(Refusal::reject(
                ErrCode::UnsupportedProcessingId,
                "MSH",
                1,
                11,
                "MSH-11 must be P, D or T",
            ));
        }
        let version = self.version();
        if version.is_empty() {
            return Err(missing(12, "version id"));
        }
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(Refusal::reject(
                ErrCode::UnsupportedVersion,
                "MSH",
                1,
                12,
                &format!(
                    "HL7 version is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The idempotency key: a repeated MSH-10 from the same sending
    /// application and facility names the first entry.
    /// The key of this message: sending application, facility and control
    /// id, each unescaped (`\F\` → `|`) and then percent-encoded where it
    /// holds `%` or `|`, so no two different triples give one key.
    pub fn idempotency_key(&self) -> String {
        fn part(s: &str) -> String {
            s.replace('%', "%25").replace('|', "%7C")
        }
        format!(
            "hl7v2:{}|{}|{}",
            part(&self.seps.decode(&self.raw_sending_app)),
            part(&self.seps.decode(&self.raw_sending_facility)),
            part(&self.control_id())
        )
    }
}

/// Decodes the frame's bytes per MSH-18: `8859/1` → Latin-1; empty,
/// `ASCII`, `UNICODE UTF-8` → UTF-8 (strict).
pub fn decode_text(raw: &[u8], header: &Header) -> Result<String, Refusal> {
    match header.charset.to_ascii_uppercase().as_str() {
        "8859/1" | "ISO-8859-1" | "LATIN1" => Ok(raw.iter().map(|&b| b as char).collect()),
        "" | "ASCII" | "UNICODE UTF-8" | "UTF-8" | "UNICODE" => String::from_utf8(raw.to_vec())
            .map_err(|_| {
                Refusal::reject(
                    ErrCode::DataType,
                    "MSH",
                    1,
                    18,
                    "message is not valid UTF-8; declare MSH-18 = 8859/1 for Latin-1",
                )
            }),
        _ => Err(Refusal::reject(
            ErrCode::DataType,
            "MSH",
            1,
            18,
            "unsupported character set (supported: ASCII, UNICODE UTF-8, 8859/1)",
        )),
    }
}

/// What the listener knows about the connection a message came on.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// A reference to a stored inference event (for overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceRef {
    pub id: String,
    /// `recorded` of the inference event (RFC 3339): when vellum received
    /// it.
    pub recorded: String,
    /// The clinical time of the inference: the `MSH-7` detail of its
    /// message entity (HL7 DTM) when it came as an HL7 v2 message.
    pub clinical_time: Option<String>,
}

/// Which mapping applies, decided from the message alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Receipt,
    AiInference,
    /// Needs the earlier inference for `study_uid` looked up first.
    AiOverride {
        study_uid: String,
    },
}

/// A message read and checked: ready to be mapped.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub header: Header,
    pub kind: Kind,
    pub fields: fields::Extract,
    pub sha256_b64: String,
    pub byte_len: usize,
    pub origin: Origin,
    /// Free text (an override's NTE reason) is stored only when true
    /// (`[privacy] store_content`); its SHA-256 always.
    pub keep_free_text: bool,
}

/// A refused message: the header (when one could be read, so the ACK can
/// echo MSH-10) and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub header: Option<Header>,
    pub refusal: Refusal,
}

/// Reads one frame: header, charset, structure, required fields, AI content.
pub fn read(raw: &[u8], origin: Origin) -> Result<Inbound, Box<Refused>> {
    let Some(header) = Header::sniff(raw) else {
        return Err(Box::new(Refused {
            header: None,
            refusal: Refusal::reject(
                ErrCode::SegmentSequence,
                "MSH",
                1,
                0,
                "the message does not start with an MSH segment",
            ),
        }));
    };
    let fail = |h: &Header, r: Refusal| {
        Err(Box::new(Refused {
            header: Some(h.clone()),
            refusal: r,
        }))
    };
    if let Err(r) = header.validate() {
        return fail(&header, r);
    }
    let text = match decode_text(raw, &header) {
        Ok(t) => t,
        Err(r) => return fail(&header, r),
    };
    let parsed = std::panic::catch_unwind(|| {
        hl7_parser::Message::parse_with_lenient_newlines(&text, true)
            .ok()
            .map(|m| fields::extract(&m, &header))
    });
    let extract = match parsed {
        Ok(Some(Ok(x))) => x,
        Ok(Some(Err(r))) => return fail(&header, r),
        _ => {
            return fail(
                &header,
                Refusal::reject(
                    ErrCode::SegmentSequence,
                    "MSH",
                    1,
                    0,
                    "the message could not be parsed as HL7 v2 (ER7)",
                ),
            )
        }
    };
    let kind = classify(&header, &extract);
    let sha256_b64 = fields::base64(&Sha256::digest(raw));
    Ok(Inbound {
        header,
        kind,
        fields: extract,
        sha256_b64,
        byte_len: raw.len(),
        origin,
        keep_free_text: true,
    })
}

fn classify(header: &Header, x: &fields::Extract) -> Kind {
    let is_oru_r01 = header.message_code == "ORU" && header.trigger == "R01";
    match &x.ai {
        Some(ai) if is_oru_r01 && ai.is_correction() => Kind::AiOverride {
            study_uid: ai.study_uid.clone(),
        },
        Some(_) if is_oru_r01 => Kind::AiInference,
        _ => Kind::Receipt,
    }
}

/// The AuditEvent (JSON text) for a read message (`link` = the earlier
/// inference, for overrides). `recorded` is the receipt time (RFC 3339).
pub fn to_audit_event(inbound: &Inbound, link: Option<&InferenceRef>, recorded: &str) -> String {
    match (&inbound.kind, &inbound.fields.ai) {
        (Kind::AiInference, Some(ai)) => ai_result::event(inbound, ai, recorded),
        (Kind::AiOverride { .. }, Some(ai)) => match link {
            Some(link) => correction::event(inbound, ai, link, recorded),
            None => receipt::event(inbound, recorded),
        },
        _ => receipt::event(inbound, recorded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            peer: "10.1.2.3:40000".parse().unwrap(),
            local: "127.0.0.1:2575".parse().unwrap(),
        }
    }

    const ADT: &str = "MSH|^~\\&|RIS|HOSP|VELLUM|AUDIT|20260314092653||ADT^A01^ADT_A01|MSG0001|P|2.5.1\rEVN|A01|20260314092653\rPID|1||123456^^^HOSP^MR||DOE^JOHN\r";

    #[test]
    fn header_is_read_from_the_first_segment() {
        let h = Header::sniff(ADT.as_bytes()).unwrap();
        assert_eq!(h.raw_sending_app, "RIS");
        assert_eq!(h.raw_receiving_facility, "AUDIT");
        assert_eq!(
            (h.message_code.as_str(), h.trigger.as_str()),
            ("ADT", "A01")
        );
        assert_eq!(h.control_id(), "MSG0001");
        assert_eq!(h.version(), "2.5.1");
        assert!(!h.enhanced());
        assert_eq!(h.idempotency_key(), "hl7v2:RIS|HOSP|MSG0001");
        assert!(h.validate().is_ok());
    }

    #[test]
    fn missing_or_unsupported_msh_fields_are_rejected_with_their_location() {
        let cases = [
            ("ADT^A01^ADT_A01|MSG0001|", "ADT^A01^ADT_A01||", 10, "101"),
            ("|2.5.1", "|3.0", 12, "203"),
            ("|P|", "|Q|", 11, "202"),
            ("ADT^A01^ADT_A01|", "|", 9, "101"),
        ];
        for (from, to, field, code) in cases {
            let m = ADT.replacen(from, to, 1);
            let e = read(m.as_bytes(), origin()).unwrap_err();
            let r = e.refusal;
            assert!(e.header.is_some());
            assert_eq!(
                (r.ack, r.segment.as_str(), r.field, r.code.code()),
                (AckCode::Reject, "MSH", field, code),
                "{m}"
            );
        }
    }

    #[test]
    fn no_msh_is_a_segment_sequence_error() {
        let e = read(b"PID|1||x\r", origin()).unwrap_err();
        assert!(e.header.is_none());
        assert_eq!(e.refusal.code, ErrCode::SegmentSequence);
    }

    #[test]
    fn latin1_needs_msh18() {
        let mut m = ADT.replace("DOE^JOHN", "M\u{fc}LLER^J").into_bytes();
        // Latin-1 ü.
        let at = m.windows(2).position(|w| w == "\u{fc}".as_bytes()).unwrap();
        m.splice(at..at + 2, [0xfc]);
        let r = read(&m, origin()).unwrap_err().refusal;
        assert_eq!((r.field, r.code), (18, ErrCode::DataType));
        let mut with_charset = Vec::new();
        let msh_end = m.iter().position(|&b| b == b'\r').unwrap();
        with_charset.extend_from_slice(&m[..msh_end]);
        with_charset.extend_from_slice(b"||||||8859/1");
        with_charset.extend_from_slice(&m[msh_end..]);
        let inbound = read(&with_charset, origin()).unwrap();
        assert_eq!(inbound.header.charset, "8859/1");
    }

    #[test]
    fn enhanced_mode_follows_msh15() {
        let mut h = Header::sniff(ADT.as_bytes()).unwrap();
        h.accept_ack_type = "ER".into();
        assert!(h.enhanced());
        assert!(!h.wants_ack(AckCode::Accept));
        assert!(h.wants_ack(AckCode::Error));
        h.accept_ack_type = "NE".into();
        assert!(!h.wants_ack(AckCode::Reject));
        h.accept_ack_type = "AL".into();
        assert!(h.wants_ack(AckCode::Accept));
    }
}
