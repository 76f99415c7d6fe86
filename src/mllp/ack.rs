//! Building ACK messages.
//!
//! - MSH: the message's encoding characters, sending and receiving
//!   application/facility swapped, MSH-9 `ACK^<trigger>^ACK` (`ACK^<trigger>`
//!   before v2.4), a fresh MSH-10, the message's MSH-11 and MSH-12 copied.
//! - MSA: MSA-1 AA/AE/AR (original mode) or CA/CE/CR (enhanced mode, when
//!   MSH-15 or MSH-16 is valued), MSA-2 = the message's MSH-10.
//! - ERR on AE/AR: ERR-2 location `SEG^seq^field` (v2.5+; ERR-1 before),
//!   ERR-3 table 0357 code, ERR-4 severity E, ERR-8 a text for people.
//! - ZVL on AA/CA: the stored event: `ZVL|<AuditEvent id>|<seq>|<chain hash
//!   hex>|<Y: stored now, N: already stored (repeated MSH-10)>`.

use time::OffsetDateTime;

use crate::hl7v2::{AckCode, Header, Refusal};
use vellum_ledger::Receipt;

/// What the ACK reports about the stored entry.
#[derive(Debug, Clone)]
pub struct Stored<'a> {
    pub receipt: &'a Receipt,
    pub created: bool,
}

/// MSA-1 for `code` in the header's mode.
pub fn msa_code(header: Option<&Header>, code: AckCode) -> &'static str {
    let enhanced = header.is_some_and(Header::enhanced);
    match (enhanced, code) {
        (false, AckCode::Accept) => "AA",
        (false, AckCode::Error) => "AE",
        (false, AckCode::Reject) => "AR",
        (true, AckCode::Accept) => "CA",
        (true, AckCode::Error) => "CE",
        (true, AckCode::Reject) => "CR",
    }
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut it = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// A fresh control id for the ACK itself (20 characters: fits MSH-10 in
/// every version).
fn ack_control_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("VLM{}", &u[..17])
}

fn hl7_now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Escapes `text` for the message's delimiters.
fn escape(h: &Header, text: &str) -> String {
    let s = &h.seps;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let seq = if c == s.escape {
            Some('E')
        } else if c == s.field {
            Some('F')
        } else if c == s.component {
            Some('S')
        } else if c == s.subcomponent {
            Some('T')
        } else if c == s.repetition {
            Some('R')
        } else {
            None
        };
        match seq {
            Some(x) => {
                out.push(s.escape);
                out.push(x);
                out.push(s.escape);
            }
            None if c == '\r' || c == '\n' => out.push(' '),
            None => out.push(c),
        }
    }
    out
}

/// Builds the ACK text (segments separated by `\r`). `header` is `None`
/// when the message had no readable MSH (defaults are used and MSA-2 is
/// empty).
pub fn build(
    header: Option<&Header>,
    code: AckCode,
    refusal: Option<&Refusal>,
    stored: Option<Stored<'_>>,
) -> String {
    let default = Header {
        encoding_chars: "^~\\&".into(),
        raw_processing_id: "P".into(),
        raw_version: "2.5.1".into(),
        ..Header::default()
    };
    let h = header.unwrap_or(&default);
    let f = h.seps.field;
    let version = h.version();
    let known_version = crate::hl7v2::SUPPORTED_VERSIONS.contains(&version.as_str());
    // An unsupported version is answered in 2.5.1, so the ACK is readable.
    let (ack_version, ack_version_num) = if known_version {
        (h.raw_version.clone(), version.clone())
    } else {
        ("2.5.1".to_string(), "2.5.1".to_string())
    };
    let encoding = if h.encoding_chars.is_empty() {
        "^~\\&".to_string()
    } else {
        h.encoding_chars.clone()
    };
    let c = h.seps.component;
    let msh9 = {
        let trigger = escape(h, &h.trigger);
        if version_at_least(&ack_version_num, 2, 4) {
            format!("ACK{c}{trigger}{c}ACK")
        } else if trigger.is_empty() {
            "ACK".to_string()
        } else {
            format!("ACK{c}{trigger}")
        }
    };
    let processing = if h.raw_processing_id.is_empty() {
        "P".to_string()
    } else {
        h.raw_processing_id.clone()
    };
    let sending_app = if h.raw_receiving_app.is_empty() {
        "VELLUM".to_string()
    } else {
        h.raw_receiving_app.clone()
    };
    let mut out = format!(
        "MSH{f}{encoding}{f}{sending_app}{f}{}{f}{}{f}{}{f}{}{f}{f}{msh9}{f}{}{f}{processing}{f}{ack_version}",
        h.raw_receiving_facility,
        h.raw_sending_app,
        h.raw_sending_facility,
        hl7_now(),
        ack_control_id(),
    );
    // MSH-18 echoed so the receiver decodes the ACK the same way.
    if !h.charset.is_empty() {
        out.push_str(&format!("{f}{f}{f}{f}{f}{f}{}", escape(h, &h.charset)));
    }
    out.push('\r');
    let msa1 = msa_code(header, code);
    out.push_str(&format!("MSA{f}{msa1}{f}{}", h.raw_control_id));
    if let Some(r) = refusal {
        // MSA-3 (text) for receivers that only read MSA.
        out.push_str(&format!("{f}{}", escape(h, &r.text)));
    }
    out.push('\r');
    if let Some(r) = refusal {
        let code_cwe = format!("{}{c}{}{c}HL70357", r.code.code(), r.code.text());
        if version_at_least(&ack_version_num, 2, 5) {
            let location = format!("{}{c}{}{c}{}", r.segment, r.sequence, r.field);
            out.push_str(&format!(
                "ERR{f}{f}{location}{f}{code_cwe}{f}E{f}{f}{f}{f}{}\r",
                escape(h, &r.text)
            ));
        } else {
            let s = h.seps.subcomponent;
            let code_sub = format!("{}{s}{}{s}HL70357", r.code.code(), r.code.text());
            out.push_str(&format!(
                "ERR{f}{}{c}{}{c}{}{c}{code_sub}\r",
                r.segment, r.sequence, r.field
            ));
        }
    }
    if let Some(s) = stored {
        out.push_str(&format!(
            "ZVL{f}{}{f}{}{f}{}{f}{}\r",
            s.receipt.id,
            s.receipt.seq,
            s.receipt.chain_hash_hex(),
            if s.created { "Y" } else { "N" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7v2::ErrCode;

    const MSG: &str = "MSH|^~\\&|RIS|HOSP|VELLUM|AUDIT|20260314092653||ADT^A01^ADT_A01|MSG0001|P|2.5.1\rPID|1||123\r";

    fn segs(ack: &str) -> Vec<Vec<String>> {
        ack.split('\r')
            .filter(|s| !s.is_empty())
            .map(|s| s.split('|').map(String::from).collect())
            .collect()
    }

    #[test]
    fn original_mode_accept_swaps_sender_and_receiver() {
        let h = Header::sniff(MSG.as_bytes()).unwrap();
        let receipt = Receipt {
            seq: 7,
            chain_hash: [0xab; 32],
            id: "e1".into(),
        };
        let ack = build(
            Some(&h),
            AckCode::Accept,
            None,
            Some(Stored {
                receipt: &receipt,
                created: true,
            }),
        );
        let s = segs(&ack);
        assert_eq!(s[0][1..6], ["^~\\&", "VELLUM", "AUDIT", "RIS", "HOSP"]);
        assert_eq!(s[0][8], "ACK^A01^ACK");
        assert_eq!((s[0][10].as_str(), s[0][11].as_str()), ("P", "2.5.1"));
        assert_eq!(s[0][9].len(), 20);
        assert_eq!(s[1], ["MSA", "AA", "MSG0001"]);
        assert_eq!(s[2][0], "ZVL");
        assert_eq!(
            (s[2][1].as_str(), s[2][2].as_str(), s[2][4].as_str()),
            ("e1", "7", "Y")
        );
    }

    #[test]
    fn reject_has_an_err_segment_with_location_and_code() {
        let m = MSG.replace("|MSG0001|", "||");
        let h = Header::sniff(m.as_bytes()).unwrap();
        let r = h.validate().unwrap_err();
        let ack = build(Some(&h), AckCode::Reject, Some(&r), None);
        let s = segs(&ack);
        assert_eq!(s[1][1], "AR");
        assert_eq!(s[2][0], "ERR");
        assert_eq!(s[2][2], "MSH^1^10");
        assert_eq!(s[2][3], "101^Required field missing^HL70357");
        assert_eq!(s[2][4], "E");
    }

    #[test]
    fn enhanced_mode_uses_commit_codes_and_old_versions_use_err1() {
        let m = MSG.replace("|2.5.1", "|2.3|||AL|NE");
        let h = Header::sniff(m.as_bytes()).unwrap();
        assert!(h.enhanced());
        let r = Refusal::error(ErrCode::InternalError, "MSH", 1, 0, "a|b");
        let ack = build(Some(&h), AckCode::Error, Some(&r), None);
        let s = segs(&ack);
        assert_eq!(s[0][8], "ACK^A01");
        assert_eq!(s[1][1], "CE");
        assert_eq!(s[1][3], "a\\F\\b");
        assert_eq!(s[2][1], "MSH^1^0^207&Application internal error&HL70357");
    }

    #[test]
    fn custom_delimiters_are_honoured() {
        let m = MSG
            .replace('|', "#")
            .replace("^~\\&", "$%*@")
            .replace('^', "$");
        let h = Header::sniff(m.as_bytes()).unwrap();
        let ack = build(Some(&h), AckCode::Accept, None, None);
        assert!(ack.starts_with("MSH#$%*@#VELLUM#AUDIT#RIS#HOSP#"), "{ack}");
        assert!(ack.contains("ACK$A01$ACK"), "{ack}");
        assert!(ack.contains("\rMSA#AA#MSG0001\r"), "{ack}");
    }

    #[test]
    fn no_header_gets_a_default_ack() {
        let r = Refusal::reject(ErrCode::SegmentSequence, "MSH", 1, 0, "no MSH");
        let ack = build(None, AckCode::Reject, Some(&r), None);
        let s = segs(&ack);
        assert_eq!(s[1][..3], ["MSA", "AR", ""]);
        assert_eq!(s[2][3], "100^Segment sequence error^HL70357");
    }
}
