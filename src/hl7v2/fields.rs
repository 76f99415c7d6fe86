//! Reading values out of a parsed message: separators and escape
//! sequences, HL7 data types (HD, CX, EI, CWE, XCN), and the extraction of
//! everything the mappings use into owned values.

use hl7_parser::message::{Field, Segment};
use hl7_parser::Message;

use super::{ErrCode, Header, Refusal};

/// The message's delimiters (MSH-1 and MSH-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seps {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Seps {
    fn default() -> Self {
        Seps {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

impl Seps {
    /// From MSH-1 and MSH-2 (missing encoding characters take the defaults).
    pub fn new(field: char, encoding: &str) -> Self {
        let d = Seps::default();
        let mut c = encoding.chars();
        Seps {
            field,
            component: c.next().unwrap_or(d.component),
            repetition: c.next().unwrap_or(d.repetition),
            escape: c.next().unwrap_or(d.escape),
            subcomponent: c.next().unwrap_or(d.subcomponent),
        }
    }

    /// Decodes escape sequences (`\F\ \S\ \T\ \R\ \E\ \Xhh..\ \.br\`);
    /// formatting escapes (`\H\ \N\` …) are dropped. An unterminated escape
    /// is kept as text. (hl7-parser's own decoder indexes bytes by char
    /// position and can panic on non-ASCII text, so it is not used.)
    pub fn decode(&self, s: &str) -> String {
        if !s.contains(self.escape) {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(self.escape) {
            out.push_str(&rest[..i]);
            let after = &rest[i + self.escape.len_utf8()..];
            let Some(j) = after.find(self.escape) else {
                out.push_str(&rest[i..]);
                return out;
            };
            let seq = &after[..j];
            match seq {
                "F" => out.push(self.field),
                "S" => out.push(self.component),
                "T" => out.push(self.subcomponent),
                "R" => out.push(self.repetition),
                "E" => out.push(self.escape),
                ".br" => out.push('\n'),
                x if x.starts_with('X') => {
                    let hex = &x[1..];
                    let bytes: Vec<u8> = (0..hex.len() / 2)
                        .filter_map(|k| u8::from_str_radix(hex.get(2 * k..2 * k + 2)?, 16).ok())
                        .collect();
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => {}
            }
            rest = &after[j + self.escape.len_utf8()..];
        }
        out.push_str(rest);
        out
    }
}

/// HD: namespace id ^ universal id ^ universal id type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hd {
    pub namespace: String,
    pub universal_id: String,
    pub universal_id_type: String,
}

impl Hd {
    pub fn parse(raw: &str, seps: &Seps) -> Hd {
        let mut c = raw.split(seps.component).map(|x| clean(&seps.decode(x)));
        Hd {
            namespace: c.next().unwrap_or_default(),
            universal_id: c.next().unwrap_or_default(),
            universal_id_type: c.next().unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.namespace.is_empty() && self.universal_id.is_empty()
    }

    /// A URI for the universal id, when it has a known type.
    pub fn uri(&self) -> Option<String> {
        let id = &self.universal_id;
        if id.is_empty() {
            return None;
        }
        match self.universal_id_type.as_str() {
            "ISO" if id.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                Some(format!("urn:oid:{id}"))
            }
            "UUID" => Some(format!("urn:uuid:{}", id.to_ascii_lowercase())),
            "URI" | "URL" if !id.contains(char::is_whitespace) => Some(id.clone()),
            _ => None,
        }
    }

    /// `namespace` or the universal id: a label for display.
    pub fn label(&self) -> String {
        if self.namespace.is_empty() {
            self.universal_id.clone()
        } else {
            self.namespace.clone()
        }
    }
}

/// Trims and collapses whitespace and drops control characters (FHIR
/// strings may not hold them; codes may not carry edge or repeated
/// whitespace).
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    out
}

/// A patient identifier (CX): id, assigning authority, identifier type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cx {
    pub id: String,
    pub authority: Hd,
    pub type_code: String,
}

/// An order or accession number with the HL7 field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNumber {
    /// v2-0203 identifier type: PLAC, FILL or ACSN.
    pub type_code: &'static str,
    /// e.g. `ORC-2`.
    pub source: String,
    pub value: String,
    pub authority: Hd,
}

/// One AI finding (an OBX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// OBX set id's position (1-based count of OBX segments).
    pub obx: usize,
    pub code: String,
    pub display: String,
    pub system: String,
    /// OBX-5, exact source text (decimal precision is kept).
    pub confidence: Option<String>,
    /// OBX-11.
    pub status: String,
    /// OBX-18.1 / OBX-18.2.
    pub model: String,
    pub model_version: String,
    /// OBX-16.1 (responsible observer id).
    pub observer: String,
    /// NTE-3 text following this OBX (for corrections).
    pub notes: Vec<String>,
    /// NTE-4.1 comment type following this OBX (reason code).
    pub note_code: String,
}

/// AI content of an ORU^R01: ZDS-1 and the OBX findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiResult {
    pub study_uid: String,
    pub findings: Vec<Finding>,
}

impl AiResult {
    /// Some finding is a correction (`C`) or a deletion/rejection (`X`).
    pub fn is_correction(&self) -> bool {
        self.findings
            .iter()
            .any(|f| matches!(f.status.as_str(), "C" | "X"))
    }

    pub fn model(&self) -> (String, String) {
        self.findings
            .iter()
            .find(|f| !f.model.is_empty())
            .map(|f| (f.model.clone(), f.model_version.clone()))
            .unwrap_or_default()
    }
}

/// Everything the mappings use, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extract {
    pub patient: Option<Cx>,
    pub orders: Vec<OrderNumber>,
    pub segment_count: usize,
    pub ai: Option<AiResult>,
}

struct Reader<'a> {
    seps: Seps,
    _m: std::marker::PhantomData<&'a ()>,
}

impl Reader<'_> {
    fn field<'s, 'm>(&self, seg: &'s Segment<'m>, n: usize) -> Option<&'s Field<'m>> {
        if n == 0 {
            return None;
        }
        seg.field(n)
    }

    /// Component `c` (1-based) of the first repetition, decoded.
    fn comp(&self, seg: &Segment, n: usize, c: usize) -> String {
        self.field(seg, n)
            .and_then(|f| f.repeats.first())
            .and_then(|r| r.components.get(c.saturating_sub(1)))
            .map(|x| clean(&self.seps.decode(x.raw_value())))
            .unwrap_or_default()
    }

    /// The whole first repetition of a field, still encoded.
    fn raw_first(&self, seg: &Segment, n: usize) -> String {
        self.field(seg, n)
            .and_then(|f| f.repeats.first())
            .map(|r| r.raw_value().to_string())
            .unwrap_or_default()
    }
}

/// Extracts the mapped values (see docs/hl7v2.md for the table).
pub fn extract(m: &Message, header: &Header) -> Result<Extract, Refusal> {
    let r = Reader {
        seps: header.seps,
        _m: std::marker::PhantomData,
    };
    let mut x = Extract {
        segment_count: m.segments.len(),
        ..Extract::default()
    };

    // PID-3: the MR identifier if there is one, else the first.
    if let Some(pid) = m.segment("PID") {
        if let Some(f) = r.field(pid, 3) {
            let cxs: Vec<Cx> = f
                .repeats
                .iter()
                .map(|rep| {
                    let comp = |i: usize| {
                        rep.components
                            .get(i)
                            .map(|c| c.raw_value())
                            .unwrap_or_default()
                    };
                    let auth = comp(3).replace(header.seps.subcomponent, "^");
                    Cx {
                        id: clean(&r.seps.decode(comp(0))),
                        authority: Hd::parse(
                            &auth,
                            &Seps {
                                component: '^',
                                ..r.seps
                            },
                        ),
                        type_code: clean(&r.seps.decode(comp(4))),
                    }
                })
                .filter(|c| !c.id.is_empty())
                .collect();
            x.patient = cxs
                .iter()
                .find(|c| c.type_code == "MR")
                .or(cxs.first())
                .cloned();
        }
    }

    // Orders and accession numbers.
    let mut push = |type_code: &'static str, source: String, raw: String| {
        let ei = Hd::parse(&raw, &r.seps);
        // EI: entity id ^ namespace ^ universal id ^ type.
        let mut parts = raw.split(r.seps.component);
        let value = clean(&r.seps.decode(parts.next().unwrap_or("")));
        if value.is_empty()
            || x.orders
                .iter()
                .any(|o| o.type_code == type_code && o.value == value)
        {
            return;
        }
        let authority = Hd {
            namespace: ei.universal_id,
            universal_id: ei.universal_id_type,
            universal_id_type: parts
                .nth(2)
                .map(|s| clean(&r.seps.decode(s)))
                .unwrap_or_default(),
        };
        x.orders.push(OrderNumber {
            type_code,
            source,
            value,
            authority,
        });
    };
    for seg in m.segments() {
        match seg.name {
            "ORC" => {
                push("PLAC", "ORC-2".into(), r.raw_first(seg, 2));
                push("FILL", "ORC-3".into(), r.raw_first(seg, 3));
            }
            "OBR" => {
                push("PLAC", "OBR-2".into(), r.raw_first(seg, 2));
                push("FILL", "OBR-3".into(), r.raw_first(seg, 3));
                push("ACSN", "OBR-18".into(), r.raw_first(seg, 18));
            }
            _ => {}
        }
    }

    // AI results: ZDS-1 study UID plus OBX findings with a model (OBX-18).
    let study_uid = m
        .segment("ZDS")
        .map(|z| r.comp(z, 1, 1))
        .unwrap_or_default();
    let mut findings: Vec<Finding> = Vec::new();
    let mut obx_n = 0;
    let mut current: Option<usize> = None;
    for seg in m.segments() {
        match seg.name {
            "OBX" => {
                obx_n += 1;
                let model = r.comp(seg, 18, 1);
                if model.is_empty() {
                    current = None;
                    continue;
                }
                let raw_conf = r.comp(seg, 5, 1);
                let confidence = if raw_conf.is_empty() {
                    None
                } else if is_confidence(&raw_conf) {
                    Some(raw_conf)
                } else {
                    return Err(Refusal::error(
                        ErrCode::DataType,
                        "OBX",
                        obx_n,
                        5,
                        "OBX-5 of an AI finding must be a decimal confidence between 0 and 1",
                    ));
                };
                let code = r.comp(seg, 3, 1);
                if code.is_empty() {
                    return Err(Refusal::error(
                        ErrCode::RequiredFieldMissing,
                        "OBX",
                        obx_n,
                        3,
                        "OBX-3 (finding code) is required for an AI finding",
                    ));
                }
                findings.push(Finding {
                    obx: obx_n,
                    code,
                    display: r.comp(seg, 3, 2),
                    system: r.comp(seg, 3, 3),
                    confidence,
                    status: r.comp(seg, 11, 1),
                    model,
                    model_version: r.comp(seg, 18, 2),
                    observer: r.comp(seg, 16, 1),
                    notes: Vec::new(),
                    note_code: String::new(),
                });
                current = Some(findings.len() - 1);
            }
            "NTE" => {
                if let Some(f) = current.and_then(|i| findings.get_mut(i)) {
                    let text = r.comp(seg, 3, 1);
                    if !text.is_empty() {
                        f.notes.push(text);
                    }
                    if f.note_code.is_empty() {
                        f.note_code = r.comp(seg, 4, 1);
                    }
                }
            }
            _ => current = None,
        }
    }
    if !findings.is_empty() {
        if study_uid.is_empty() {
            return Err(Refusal::error(
                ErrCode::RequiredFieldMissing,
                "ZDS",
                1,
                1,
                "AI results (OBX-18 valued) need ZDS-1 (Study Instance UID)",
            ));
        }
        if !study_uid.chars().all(|c| c.is_ascii_digit() || c == '.') || study_uid.len() > 64 {
            return Err(Refusal::error(
                ErrCode::DataType,
                "ZDS",
                1,
                1,
                "ZDS-1 must be a DICOM UID (digits and dots, at most 64 characters)",
            ));
        }
        x.ai = Some(AiResult {
            study_uid,
            findings,
        });
    }
    Ok(x)
}

/// A decimal in [0, 1] written plainly (`0.94`, `1`, `.5` is refused).
pub fn is_confidence(s: &str) -> bool {
    let ok_syntax = {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && !(s.contains('.') && frac.is_empty())
    };
    ok_syntax && s.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded() {
        let s = Seps::default();
        assert_eq!(s.decode(r"a\F\b\S\c\T\d\R\e\E\f"), "a|b^c&d~e\\f");
        assert_eq!(s.decode(r"x\X4869\y"), "xHiy");
        assert_eq!(s.decode(r"M\X0A\\.br\"), "M\n\n");
        assert_eq!(s.decode(r"M\H\bold\N\"), "Mbold");
        assert_eq!(s.decode(r"unterminated\F"), r"unterminated\F");
        assert_eq!(s.decode("M\u{fc}ller\\F\\"), "M\u{fc}ller|");
        let custom = Seps::new('#', "$%*@");
        assert_eq!(custom.decode("a*F*b"), "a#b");
    }

    #[test]
    fn base64_known_answers() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn confidence_syntax() {
        for ok in ["0", "1", "0.940", "1.0", "0.5"] {
            assert!(is_confidence(ok), "{ok}");
        }
        for bad in ["", ".5", "1.5", "-0.1", "0.", "high", "NaN", "1e-3"] {
            assert!(!is_confidence(bad), "{bad}");
        }
    }

    #[test]
    fn hd_uri() {
        let s = Seps::default();
        let hd = Hd::parse("HOSP^1.2.3^ISO", &s);
        assert_eq!(hd.uri().as_deref(), Some("urn:oid:1.2.3"));
        assert_eq!(Hd::parse("HOSP", &s).uri(), None);
    }
}
