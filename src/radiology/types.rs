//! Domain types of the AI API. Each is built only by a validating parser
//! (serde goes through `TryFrom<String>`), so an invalid value cannot travel
//! past the edge: a UID is a DICOM UID, a confidence is a decimal in 0..=1
//! kept as its exact text, a time is UTC with microseconds.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Why a value was refused (becomes a 400 naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid<T>(msg: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(msg.into()))
}

fn no_controls(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

/// A DICOM UID (PS3.5 §9.1): digits and dots, at most 64 characters, no
/// empty component, no leading zero in a component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Uid(String);

impl TryFrom<String> for Uid {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        let s = s.strip_prefix("urn:oid:").map(str::to_string).unwrap_or(s);
        if s.is_empty() || s.len() > 64 {
            return invalid("a DICOM UID has 1 to 64 characters");
        }
        for part in s.split('.') {
            let ok = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            if !ok {
                return invalid(
                    "not a DICOM UID (digits and dots, no empty or zero-padded component)",
                );
            }
        }
        Ok(Uid(s))
    }
}

impl Uid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A confidence in 0..=1 as exact decimal text (`0.940` stays `0.940`,
/// sent as a JSON number or string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confidence(String);

impl Confidence {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
            return invalid("a confidence is a decimal between 0 and 1, e.g. \"0.940\"");
        }
        let in_range = int == "0" || (int == "1" && frac.bytes().all(|b| b == b'0'));
        if !in_range {
            return invalid("a confidence must be between 0 and 1");
        }
        Ok(Confidence(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Confidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A JSON string keeps its text; a number too when serde_json has
        // `arbitrary_precision` (it has, in this build), else shortest form.
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Confidence::parse(&s).map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) => {
                Confidence::parse(&n.to_string()).map_err(serde::de::Error::custom)
            }
            _ => Err(serde::de::Error::custom(
                "expected a decimal number (a string keeps its precision)",
            )),
        }
    }
}

/// A point in time, UTC, at most microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Instant(OffsetDateTime);

impl TryFrom<String> for Instant {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        let t = OffsetDateTime::parse(&s, &Rfc3339).map_err(|_| {
            Invalid(
                "not an RFC 3339 date-time with offset, e.g. 2026-03-14T09:26:53.589123Z".into(),
            )
        })?;
        if t.nanosecond() % 1000 != 0 {
            return invalid("more precise than a microsecond");
        }
        Ok(Instant(t.to_offset(time::UtcOffset::UTC)))
    }
}

impl Instant {
    pub fn now() -> Self {
        let t = OffsetDateTime::now_utc();
        Instant(
            t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
                .unwrap_or(t),
        )
    }

    pub fn from_stamp(s: &str) -> Option<Self> {
        Instant::try_from(s.to_string()).ok()
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn stamp(&self) -> String {
        vellum_ledger::stamp(self.0)
    }

    /// Milliseconds from `earlier` to `self` (negative when before).
    pub fn millis_since(&self, earlier: &Instant) -> i64 {
        i64::try_from((self.0 - earlier.0).whole_milliseconds()).unwrap_or(i64::MAX)
    }
}

/// A calendar date `YYYY-MM-DD` (e.g. a training date).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Date(String);

impl TryFrom<String> for Date {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(&s, &fmt) {
            Ok(_) if s.len() == 10 => Ok(Date(s)),
            _ => invalid("not a date YYYY-MM-DD"),
        }
    }
}

impl Date {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A model name or version: 1..=64 of `A-Z a-z 0-9 . _ + -` (safe in URLs
/// and in the `name|version` key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Token(String);

impl TryFrom<String> for Token {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
        if ok {
            Ok(Token(s))
        } else {
            invalid("1 to 64 characters of A-Z a-z 0-9 . _ + -")
        }
    }
}

impl Token {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Token::try_from(s.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A short label or identifier: 1..=256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Label(String);

impl TryFrom<String> for Label {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        if s.trim().is_empty() || s.chars().count() > 256 || !no_controls(&s) {
            return invalid("1 to 256 characters, not blank, no control characters");
        }
        Ok(Label(s))
    }
}

impl Label {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text (reasons, prompts, outputs, diffs): not blank, at most 1 MiB.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Text(String);

impl TryFrom<String> for Text {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        if s.trim().is_empty() || s.len() > 1 << 20 {
            return invalid("not blank, at most 1 MiB");
        }
        Ok(Text(s))
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An absolute URI (`scheme:…`, no whitespace), e.g. a policy or system.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Uri(String);

impl TryFrom<String> for Uri {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        let scheme_ok = s.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
        });
        if !scheme_ok || s.len() > 2048 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("an absolute URI (scheme:…), no whitespace");
        }
        Ok(Uri(s))
    }
}

impl Uri {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A SHA-256 digest sent as 64 hex digits or 44 characters of base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Digest(pub [u8; 32]);

impl TryFrom<String> for Digest {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        let bytes = if s.len() == 64 {
            hex::decode(&s).ok()
        } else if s.len() == 44 {
            openssl::base64::decode_block(&s).ok()
        } else {
            None
        };
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(d) => Ok(Digest(d)),
            None => invalid("a SHA-256 digest: 64 hex digits or 44 characters of base64"),
        }
    }
}

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }
    pub fn base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

/// What the radiologist did with an AI result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Accept,
    AcceptWithEdit,
    Reject,
    Escalate,
    Ignore,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::AcceptWithEdit => "accept_with_edit",
            Action::Reject => "reject",
            Action::Escalate => "escalate",
            Action::Ignore => "ignore",
        }
    }
    pub fn display(self) -> &'static str {
        match self {
            Action::Accept => "Accepted",
            Action::AcceptWithEdit => "Accepted with edit",
            Action::Reject => "Rejected",
            Action::Escalate => "Escalated",
            Action::Ignore => "Ignored",
        }
    }
}

/// Why the radiologist overrode (vellum CodeSystem `ai-override-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    FalsePositive,
    FalseNegative,
    WrongLocation,
    WrongClassification,
    WrongMeasurement,
    ImageQuality,
    ClinicalContext,
    Other,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::FalsePositive => "false-positive",
            Reason::FalseNegative => "false-negative",
            Reason::WrongLocation => "wrong-location",
            Reason::WrongClassification => "wrong-classification",
            Reason::WrongMeasurement => "wrong-measurement",
            Reason::ImageQuality => "image-quality",
            Reason::ClinicalContext => "clinical-context",
            Reason::Other => "other",
        }
    }
}

/// AuditEvent.outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Success,
    MinorFailure,
    SeriousFailure,
    MajorFailure,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
            Outcome::MajorFailure => "12",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids() {
        assert!(Uid::try_from("1.2.840.10008.1.2".to_string()).is_ok());
        assert_eq!(
            Uid::try_from("urn:oid:1.2.3".to_string()).unwrap().as_str(),
            "1.2.3"
        );
        for bad in ["", "1..2", "1.02", ".1", "1.2.", "1.2a", &"1".repeat(65)] {
            assert!(Uid::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn confidences_keep_their_text() {
        assert_eq!(Confidence::parse("0.940").unwrap().as_str(), "0.940");
        for ok in ["0", "1", "1.000", "0.5"] {
            assert!(Confidence::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["1.01", "-0.1", "2", ".5", "0.", "0.9e1", "", "x"] {
            assert!(Confidence::parse(bad).is_err(), "{bad}");
        }
        let c: Confidence = serde_json::from_str("0.940").unwrap();
        assert_eq!(c.as_str(), "0.940", "number text is kept");
        assert!(serde_json::from_str::<Confidence>("1.5").is_err());
    }

    #[test]
    fn instants_are_utc_microseconds() {
        let t = Instant::try_from("2026-03-14T09:26:53.589+01:00".to_string()).unwrap();
        assert_eq!(t.stamp(), "2026-03-14T08:26:53.589000Z");
        assert!(Instant::try_from("2026-03-14T09:26:53.5891234Z".to_string()).is_err());
        assert!(Instant::try_from("2026-03-14".to_string()).is_err());
    }

    #[test]
    fn digests_accept_hex_and_base64() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_string();
        let d = Digest::try_from(hex).unwrap();
        assert_eq!(Digest::try_from(d.base64()).unwrap(), d);
        assert!(Digest::try_from("abc".to_string()).is_err());
    }
}

/// A decimal kept as its exact text (`-0.0100` stays `-0.0100`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(String);

impl Decimal {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let body = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        let ok = !int.is_empty()
            && digits(int)
            && digits(frac)
            && !(body.contains('.') && frac.is_empty())
            && (int == "0" || !int.starts_with('0'))
            && s.len() <= 40;
        if ok {
            Ok(Decimal(s.to_string()))
        } else {
            invalid("a decimal number, e.g. \"0.953\"")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A JSON string keeps its text; a number too when serde_json has
        // `arbitrary_precision` (it has, in this build), else shortest form.
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Decimal::parse(&s).map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) => {
                Decimal::parse(&n.to_string()).map_err(serde::de::Error::custom)
            }
            _ => Err(serde::de::Error::custom(
                "expected a decimal number (a string keeps its precision)",
            )),
        }
    }
}
