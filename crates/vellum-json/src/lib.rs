//! Canonical JSON (docs/hashing.md): RFC 8785 (JCS) except that numbers keep
//! their exact source text, because FHIR decimal precision is meaningful.
//!
//! serde_json cannot be used for this: it silently keeps the last of
//! duplicate keys and (with `arbitrary_precision`, which fhirbolt enables)
//! changes how numbers behave crate-wide. This parser rejects what the design
//! says must be rejected (duplicate keys, lone surrogates, invalid UTF-8,
//! NaN/Infinity, raw control characters) and records byte offsets so errors
//! found later (by fhirbolt or vellum's validator) can be located.

use std::cmp::Ordering;
use std::fmt::Write as _;

/// Writing JSON text directly (the event builders).
pub mod write;

mod scan;

/// The borrowing parse (one flat tape, strings left in the source).
pub mod tape;

/// Read access to a parsed value, whichever form holds it (the owned
/// [`Json`] tree or a [`tape::Node`]), so code that only reads — such as the
/// search-index extraction — is written once for both.
pub trait JsonView<'a>: Copy {
    /// Member `key` of an object.
    fn get(self, key: &str) -> Option<Self>;
    /// The text of a string.
    fn as_str(self) -> Option<&'a str>;
    /// The items of an array, `None` for anything else.
    fn items(self) -> Option<impl Iterator<Item = Self>>;
    /// The value of a boolean.
    fn as_bool(self) -> Option<bool>;
    /// The value as compact JSON text. For a value read from canonical JSON
    /// every form gives exactly its text there (serde_json keeps key order
    /// and number text in vellum's build), so the forms are interchangeable.
    fn to_text(self) -> String;
}

impl<'a> JsonView<'a> for &'a Json {
    fn get(self, key: &str) -> Option<Self> {
        Json::get(self, key)
    }

    fn as_str(self) -> Option<&'a str> {
        Json::as_str(self)
    }

    fn items(self) -> Option<impl Iterator<Item = Self>> {
        self.as_array().map(|a| a.iter())
    }

    fn as_bool(self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn to_text(self) -> String {
        String::from_utf8(to_canonical(self)).unwrap_or_default()
    }
}

impl<'a> JsonView<'a> for tape::Node<'a> {
    fn get(self, key: &str) -> Option<Self> {
        tape::Node::get(self, key)
    }

    fn as_str(self) -> Option<&'a str> {
        tape::Node::as_str(self)
    }

    fn items(self) -> Option<impl Iterator<Item = Self>> {
        tape::Node::items(self)
    }

    fn as_bool(self) -> Option<bool> {
        tape::Node::as_bool(self)
    }

    fn to_text(self) -> String {
        self.to_json().to_text()
    }
}

/// serde_json's trees too, for code that reads events either way (the QA
/// reports read serde values; the summary rows are taken from a tape).
impl<'a> JsonView<'a> for &'a serde_json::Value {
    fn get(self, key: &str) -> Option<Self> {
        serde_json::Value::get(self, key)
    }

    fn as_str(self) -> Option<&'a str> {
        serde_json::Value::as_str(self)
    }

    fn items(self) -> Option<impl Iterator<Item = Self>> {
        self.as_array().map(|a| a.iter())
    }

    fn as_bool(self) -> Option<bool> {
        serde_json::Value::as_bool(self)
    }

    fn to_text(self) -> String {
        self.to_string()
    }
}

/// Nesting deeper than this is refused whatever the settings say (protects
/// the stack; real AuditEvents are well under 20 levels).
pub const MAX_DEPTH: usize = 100;

/// Objects with at most this many members are checked for duplicate keys by
/// a scan of the members before them; larger ones by sorting, so the check
/// stays O(n log n) whatever the input.
const SCAN_DUPLICATES_UP_TO: usize = 16;

/// Bounds on what [`parse_with`] accepts, so hostile input costs bounded
/// stack, memory and CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of arrays and objects (capped at [`MAX_DEPTH`]).
    pub max_depth: usize,
    /// Most members one object may have.
    pub max_keys_per_object: usize,
}

impl Limits {
    /// For JSON vellum wrote or already stored: only the stack bound.
    pub const INTERNAL: Limits = Limits {
        max_depth: MAX_DEPTH,
        max_keys_per_object: usize::MAX,
    };
}

impl Default for Limits {
    /// The defaults for request bodies (`[limits]` in the configuration).
    fn default() -> Self {
        Limits {
            max_depth: MAX_DEPTH,
            max_keys_per_object: 1000,
        }
    }
}

/// A JSON value with the byte span it came from (0..0 for values vellum made).
#[derive(Debug, Clone, PartialEq)]
pub struct Json {
    pub start: usize,
    pub end: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number's exact source text (already checked against the JSON grammar).
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<Member>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    pub key_start: usize,
    pub value: Json,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct ParseError {
    pub offset: usize,
    pub kind: ParseErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("unexpected character")]
    UnexpectedChar,
    #[error("trailing characters after the JSON value")]
    TrailingCharacters,
    #[error("invalid number")]
    InvalidNumber,
    #[error("invalid escape sequence")]
    InvalidEscape,
    #[error("lone surrogate in \\u escape")]
    LoneSurrogate,
    #[error("control character in string")]
    ControlCharacter,
    #[error("duplicate key \"{0}\"")]
    DuplicateKey(String),
    #[error("nesting deeper than {0} levels (limit json_max_depth)")]
    TooDeep(usize),
    #[error("an object has more than {0} members (limit json_max_keys_per_object)")]
    TooManyKeys(usize),
}

impl ParseError {
    /// 1-based line and column of the error in `src`.
    pub fn line_column(&self, src: &[u8]) -> (usize, usize) {
        line_column(src, self.offset)
    }
}

/// 1-based (line, column) of a byte offset.
pub fn line_column(src: &[u8], offset: usize) -> (usize, usize) {
    let upto = &src[..offset.min(src.len())];
    let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset - upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

/// Byte offset of a 1-based (line, column) position, as serde_json reports it.
pub fn offset_of(src: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match src[start..].iter().position(|&b| b == b'\n') {
            Some(p) => start += p + 1,
            None => return src.len(),
        }
    }
    (start + column.saturating_sub(1)).min(src.len())
}

/// Parses one JSON text (RFC 8259, with the stricter rules above) that
/// vellum wrote or already stored: only nesting is bounded ([`MAX_DEPTH`]).
/// Request bodies go through [`parse_with`] and the configured limits.
pub fn parse(src: &[u8]) -> Result<Json, ParseError> {
    parse_with(src, Limits::INTERNAL)
}

/// Parses one JSON text within `limits`.
pub fn parse_with(src: &[u8], limits: Limits) -> Result<Json, ParseError> {
    if let Err(e) = std::str::from_utf8(src) {
        return Err(ParseError {
            offset: e.valid_up_to(),
            kind: ParseErrorKind::InvalidUtf8,
        });
    }
    let mut p = Parser {
        src,
        pos: 0,
        max_depth: limits.max_depth.min(MAX_DEPTH),
        max_keys: limits.max_keys_per_object,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != src.len() {
        return Err(p.err(ParseErrorKind::TrailingCharacters));
    }
    Ok(v)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    max_depth: usize,
    max_keys: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        self.pos = scan::skip_ws(self.src, self.pos);
    }

    fn expect_literal(&mut self, lit: &[u8]) -> Result<(), ParseError> {
        self.pos = scan::literal(self.src, self.pos, lit)?;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > self.max_depth {
            return Err(self.err(ParseErrorKind::TooDeep(self.max_depth)));
        }
        let start = self.pos;
        let value = match self.peek() {
            None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
            Some(b'n') => {
                self.expect_literal(b"null")?;
                Value::Null
            }
            Some(b't') => {
                self.expect_literal(b"true")?;
                Value::Bool(true)
            }
            Some(b'f') => {
                self.expect_literal(b"false")?;
                Value::Bool(false)
            }
            Some(b'"') => Value::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            Some(b'[') => self.array(depth)?,
            Some(b'{') => self.object(depth)?,
            Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
        };
        Ok(Json {
            start,
            end: self.pos,
            value,
        })
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.pos += 1; // '{'
        let mut members: Vec<Member> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            let key_start = self.pos;
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
            if members.len() >= self.max_keys {
                return Err(self.err(ParseErrorKind::TooManyKeys(self.max_keys)));
            }
            let key = self.string()?;
            // Small objects (all of FHIR's) are checked as they are read,
            // so a duplicate is reported before its value is parsed.
            if members.len() < SCAN_DUPLICATES_UP_TO && members.iter().any(|m| m.key == key) {
                return Err(ParseError {
                    offset: key_start,
                    kind: ParseErrorKind::DuplicateKey(key),
                });
            }
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push(Member {
                key,
                key_start,
                value,
            });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    if members.len() > SCAN_DUPLICATES_UP_TO {
                        check_duplicates(&members)?;
                    }
                    return Ok(Value::Object(members));
                }
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
        }
    }

    fn number(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos = scan::number_end(self.src, self.pos)?;
        // The span is ASCII digits and signs, so this cannot fail.
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn hex4(&mut self) -> Result<u16, ParseError> {
        let v = scan::hex4(self.src, self.pos)?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain bytes in one go (input is valid UTF-8).
            let run_start = self.pos;
            self.pos += plain_len(self.src.get(self.pos..).unwrap_or(&[]));
            if self.pos > run_start {
                out.push_str(
                    std::str::from_utf8(&self.src[run_start..self.pos])
                        .map_err(|_| self.err(ParseErrorKind::InvalidUtf8))?,
                );
            }
            match self.peek() {
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let esc_at = self.pos;
                    self.pos += 1;
                    let Some(c) = self.peek() else {
                        return Err(self.err(ParseErrorKind::UnexpectedEnd));
                    };
                    self.pos += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let ch = match hi {
                                0xD800..=0xDBFF => {
                                    if self.src[self.pos..].starts_with(b"\\u") {
                                        self.pos += 2;
                                        let lo = self.hex4()?;
                                        if !(0xDC00..=0xDFFF).contains(&lo) {
                                            return Err(ParseError {
                                                offset: esc_at,
                                                kind: ParseErrorKind::LoneSurrogate,
                                            });
                                        }
                                        let cp = 0x10000
                                            + ((u32::from(hi) - 0xD800) << 10)
                                            + (u32::from(lo) - 0xDC00);
                                        char::from_u32(cp)
                                    } else {
                                        None
                                    }
                                }
                                0xDC00..=0xDFFF => None,
                                _ => char::from_u32(u32::from(hi)),
                            };
                            match ch {
                                Some(ch) => out.push(ch),
                                None => {
                                    return Err(ParseError {
                                        offset: esc_at,
                                        kind: ParseErrorKind::LoneSurrogate,
                                    })
                                }
                            }
                        }
                        _ => {
                            return Err(ParseError {
                                offset: esc_at,
                                kind: ParseErrorKind::InvalidEscape,
                            })
                        }
                    }
                }
                Some(_) => return Err(self.err(ParseErrorKind::ControlCharacter)),
            }
        }
    }
}

/// The length of the leading run of `bytes` a string copies as is: up to
/// the first `"`, `\` or control character. Eight bytes at a time: per
/// word, a mask of the bytes equal to `"`, to `\`, or below 0x20 (the
/// lowest flagged byte is exact; flags above it may be spurious, and are
/// never looked at).
pub(crate) fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut i = 0;
    while let Some(word) = bytes.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        let flagged = zero_bytes(x ^ (ONES * u64::from(b'"')))
            | zero_bytes(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let rest = bytes.get(i..).unwrap_or(&[]);
    i + rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(rest.len())
}

/// The duplicate-key check of a large object in O(n log n).
fn check_duplicates(members: &[Member]) -> Result<(), ParseError> {
    let keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
    match first_duplicate(&keys).and_then(|i| members.get(i)) {
        Some(m) => Err(ParseError {
            offset: m.key_start,
            kind: ParseErrorKind::DuplicateKey(m.key.clone()),
        }),
        None => Ok(()),
    }
}

/// The index of the first key (in source order) equal to an earlier one:
/// sort the indices by key (stably, so equal keys stay in source order) and
/// compare neighbours. This reports what the scan of small objects reports.
fn first_duplicate<K: Ord>(keys: &[K]) -> Option<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    order
        .windows(2)
        .filter(|w| keys[w[0]] == keys[w[1]])
        .map(|w| w[1])
        .min()
}

/// Compares keys by UTF-16 code units, as JCS requires.
pub fn jcs_key_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Serialises `v` canonically. Keys are sorted here, so the tree can be built
/// in any order.
pub fn to_canonical(v: &Json) -> Vec<u8> {
    to_canonical_marking(v, &[]).0
}

/// Serialises `v` canonically and returns the byte offset of the string
/// content of the member at `path` (e.g. `["meta", "lastUpdated"]`), so a
/// fixed-width value there can be patched in place without re-serialising.
pub fn to_canonical_marking(v: &Json, path: &[&str]) -> (Vec<u8>, Option<usize>) {
    let mut out = String::with_capacity(v.end.saturating_sub(v.start).max(256));
    let mut mark = None;
    write_value(&mut out, &v.value, path, &mut mark);
    (out.into_bytes(), mark)
}

/// Parses and re-serialises canonically in one step.
pub fn canonicalize(src: &[u8]) -> Result<Vec<u8>, ParseError> {
    parse(src).map(|v| to_canonical(&v))
}

fn write_value(out: &mut String, v: &Value, path: &[&str], mark: &mut Option<usize>) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, &item.value, &[], mark);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<&Member> = members.iter().collect();
            sorted.sort_by(|a, b| jcs_key_order(&a.key, &b.key));
            out.push('{');
            for (i, m) in sorted.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, &m.key);
                out.push(':');
                match path {
                    [k] if *k == m.key => {
                        *mark = Some(out.len() + 1); // after the opening quote
                        write_value(out, &m.value.value, &[], mark);
                    }
                    [k, rest @ ..] if *k == m.key => write_value(out, &m.value.value, rest, mark),
                    _ => write_value(out, &m.value.value, &[], mark),
                }
            }
            out.push('}');
        }
    }
}

/// JCS string escaping (ECMAScript JSON.stringify): only `"`, `\` and
/// control characters are escaped; everything else is literal UTF-8.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x09 => Some("\\t"),
            0x0A => Some("\\n"),
            0x0C => Some("\\f"),
            0x0D => Some("\\r"),
            0x00..=0x1F => Some(""),
            _ => None,
        };
        if let Some(e) = esc {
            out.push_str(&s[run_start..i]);
            if e.is_empty() {
                let _ = write!(out, "\\u{:04x}", b);
            } else {
                out.push_str(e);
            }
            run_start = i + 1;
        }
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

impl Json {
    /// A value vellum made itself (no source span).
    pub fn new(value: Value) -> Self {
        Json {
            start: 0,
            end: 0,
            value,
        }
    }

    pub fn string(s: impl Into<String>) -> Self {
        Json::new(Value::String(s.into()))
    }

    /// Member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match &self.value {
            Value::Object(ms) => ms.iter().find(|m| m.key == key).map(|m| &m.value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match &self.value {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Sets (or replaces) member `key` of an object; no-op on non-objects.
    pub fn set(&mut self, key: &str, value: Json) {
        if let Value::Object(ms) = &mut self.value {
            match ms.iter_mut().find(|m| m.key == key) {
                Some(m) => m.value = value,
                None => ms.push(Member {
                    key: key.to_string(),
                    key_start: 0,
                    value,
                }),
            }
        }
    }

    /// Removes member `key` of an object, if present.
    pub fn remove(&mut self, key: &str) {
        if let Value::Object(ms) = &mut self.value {
            ms.retain(|m| m.key != key);
        }
    }

    /// Member `key` as a mutable object, created empty (or replaced if it is
    /// not an object).
    pub fn object_entry(&mut self, key: &str) -> Option<&mut Json> {
        let is_object = matches!(self.get(key).map(|j| &j.value), Some(Value::Object(_)));
        if !is_object {
            self.set(key, Json::new(Value::Object(Vec::new())));
        }
        match &mut self.value {
            Value::Object(ms) => ms.iter_mut().find(|m| m.key == key).map(|m| &mut m.value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(s: &str) -> String {
        String::from_utf8(canonicalize(s.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn keys_are_sorted_and_whitespace_removed() {
        assert_eq!(
            canon(r#" { "b" : 1 , "a" : [ true , null ] } "#),
            r#"{"a":[true,null],"b":1}"#
        );
    }

    #[test]
    fn numbers_keep_their_source_text() {
        assert_eq!(
            canon(r#"{"x":0.940,"y":1E5,"z":-0.0,"w":100}"#),
            r#"{"w":100,"x":0.940,"y":1E5,"z":-0.0}"#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+10000 is D800 DC00 in UTF-16, so it sorts before U+FFFD even though
        // its UTF-8 bytes sort after (the RFC 8785 example ordering).
        assert_eq!(
            canon("{\"\u{FFFD}\":1,\"\u{10000}\":2}"),
            "{\"\u{10000}\":2,\"\u{FFFD}\":1}"
        );
    }

    #[test]
    fn strings_use_jcs_escaping() {
        assert_eq!(
            canon(r#""\u00e9\/\u001f\n\u2028""#),
            "\"é/\\u001f\\n\u{2028}\""
        );
    }

    #[test]
    fn surrogate_pairs_decode() {
        assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
    }

    #[test]
    fn rejects_what_must_not_be_normalised() {
        type Case<'a> = (&'a [u8], fn(&ParseErrorKind) -> bool);
        let bad: &[Case] = &[
            (br#"{"a":1,"a":2}"#, |k| {
                matches!(k, ParseErrorKind::DuplicateKey(_))
            }),
            (br#""\ud800""#, |k| *k == ParseErrorKind::LoneSurrogate),
            (br#""\udc00x""#, |k| *k == ParseErrorKind::LoneSurrogate),
            (br#""\ud800\u0041""#, |k| {
                *k == ParseErrorKind::LoneSurrogate
            }),
            (b"NaN", |k| *k == ParseErrorKind::UnexpectedChar),
            (b"Infinity", |k| *k == ParseErrorKind::UnexpectedChar),
            (b"-Infinity", |k| *k == ParseErrorKind::InvalidNumber),
            (b"\"\xff\"", |k| *k == ParseErrorKind::InvalidUtf8),
            (b"01", |k| *k == ParseErrorKind::TrailingCharacters),
            (b"1.", |k| *k == ParseErrorKind::InvalidNumber),
            (b"\"a\tb\"", |k| *k == ParseErrorKind::ControlCharacter),
            (b"{\"a\":1,}", |k| *k == ParseErrorKind::UnexpectedChar),
            (b"[1", |k| *k == ParseErrorKind::UnexpectedEnd),
            (b"tru", |k| *k == ParseErrorKind::UnexpectedEnd),
        ];
        for (src, ok) in bad {
            let e = parse(src).unwrap_err();
            assert!(
                ok(&e.kind),
                "{:?} gave {:?}",
                String::from_utf8_lossy(src),
                e
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 5) + &"]".repeat(MAX_DEPTH + 5);
        assert_eq!(
            parse(deep.as_bytes()).unwrap_err().kind,
            ParseErrorKind::TooDeep(MAX_DEPTH)
        );
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        assert!(parse_with(b"[[[1]]]", limits).is_ok());
        assert_eq!(
            parse_with(b"[[[[1]]]]", limits).unwrap_err().kind,
            ParseErrorKind::TooDeep(3)
        );
    }

    fn object_with_keys(n: usize, dup: Option<(usize, usize)>) -> String {
        let mut keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        if let Some((from, to)) = dup {
            keys[to] = keys[from].clone();
        }
        let members: Vec<String> = keys.iter().map(|k| format!("\"{k}\":1")).collect();
        format!("{{{}}}", members.join(","))
    }

    #[test]
    fn duplicate_keys_are_found_in_large_objects() {
        // 50,000 distinct keys: accepted (no limit on internal parses).
        let big = object_with_keys(50_000, None);
        assert!(parse(big.as_bytes()).is_ok());
        // A duplicate anywhere is found, and the first one in source order
        // is the one reported, as for small objects.
        for (from, to) in [(0, 49_999), (30_000, 30_001), (10, 20)] {
            let src = object_with_keys(50_000, Some((from, to)));
            let e = parse(src.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ParseErrorKind::DuplicateKey(format!("k{from}")));
            assert_eq!(&src.as_bytes()[e.offset..e.offset + 2], b"\"k");
            let at = src.find(&format!("\"k{from}\"")).unwrap();
            assert!(e.offset > at, "the later occurrence is reported");
        }
        // Two later copies of one key: the earlier copy is reported.
        let src = object_with_keys(60, Some((3, 40))).replacen("\"k50\"", "\"k3\"", 1);
        let e = parse(src.as_bytes()).unwrap_err();
        assert_eq!(e.offset, src.match_indices("\"k3\"").nth(1).unwrap().0);
    }

    /// A key that counts how often it is compared.
    struct Counted<'a>(u32, &'a std::cell::Cell<u64>);

    impl PartialEq for Counted<'_> {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    impl Eq for Counted<'_> {}

    impl PartialOrd for Counted<'_> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }

    impl Ord for Counted<'_> {
        fn cmp(&self, other: &Self) -> Ordering {
            self.1.set(self.1.get() + 1);
            self.0.cmp(&other.0)
        }
    }

    #[test]
    fn duplicate_check_is_not_quadratic() {
        // Count comparisons rather than time them: n log n for the sort,
        // where the old scan of every earlier member did n²/2.
        let comparisons = |n: u32| {
            let count = std::cell::Cell::new(0);
            let keys: Vec<Counted> = (0..n).rev().map(|i| Counted(i, &count)).collect();
            assert_eq!(first_duplicate(&keys), None);
            count.get()
        };
        for n in [1_000u32, 87_000] {
            let bound = u64::from(n) * u64::from(n.ilog2() + 1) * 2;
            let c = comparisons(n);
            assert!(c <= bound, "{n} keys: {c} comparisons, more than {bound}");
            assert!(c < u64::from(n) * u64::from(n) / 20);
        }
        let keys = [5, 1, 9, 1, 5];
        assert_eq!(first_duplicate(&keys), Some(3));
    }

    #[test]
    fn members_per_object_are_capped() {
        let limits = Limits {
            max_keys_per_object: 100,
            ..Limits::default()
        };
        assert!(parse_with(object_with_keys(100, None).as_bytes(), limits).is_ok());
        let e = parse_with(object_with_keys(101, None).as_bytes(), limits).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::TooManyKeys(100));
        assert!(e.kind.to_string().contains("json_max_keys_per_object"));
        // The cap is per object, not per document.
        let nested = format!(
            "[{},{}]",
            object_with_keys(100, None),
            object_with_keys(100, None)
        );
        assert!(parse_with(nested.as_bytes(), limits).is_ok());
    }

    #[test]
    fn positions_round_trip() {
        let src = b"{\n  \"a\": 1,\n  \"b\": x\n}";
        let e = parse(src).unwrap_err();
        assert_eq!(e.line_column(src), (3, 8));
        assert_eq!(offset_of(src, 3, 8), e.offset);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            "\\PC{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Writes `v` with object members in a permuted order and extra spaces.
    fn shuffled(v: &serde_json::Value, seed: u64) -> String {
        match v {
            serde_json::Value::Object(m) => {
                let mut items: Vec<_> = m.iter().collect();
                let n = items.len().max(1);
                items.rotate_left((seed as usize) % n);
                if seed % 2 == 1 {
                    items.reverse();
                }
                let parts: Vec<String> = items
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{} : {}",
                            serde_json::to_string(k).unwrap(),
                            shuffled(v, seed / 3 + 1)
                        )
                    })
                    .collect();
                format!("{{ {} }}", parts.join(" ,\n"))
            }
            serde_json::Value::Array(a) => {
                let parts: Vec<String> = a.iter().map(|x| shuffled(x, seed + 7)).collect();
                format!("[ {} ]", parts.join(", "))
            }
            other => serde_json::to_string(other).unwrap(),
        }
    }

    proptest! {
        /// The word-at-a-time scan stops where a byte-at-a-time one does.
        #[test]
        fn plain_len_stops_at_the_first_special_byte(
            bytes in proptest::collection::vec(prop_oneof![
                Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..0x80, 0x80u8..=0xff, Just(b'a'),
            ], 0..40),
            pad in 0usize..9,
        ) {
            let mut v = vec![b'x'; pad];
            v.extend(bytes);
            let naive = v.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(v.len());
            prop_assert_eq!(plain_len(&v), naive);
        }
    }

    proptest! {
        #[test]
        fn canonicalisation_is_idempotent(v in arb_json()) {
            let once = canonicalize(serde_json::to_string_pretty(&v).unwrap().as_bytes()).unwrap();
            let twice = canonicalize(&once).unwrap();
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn canonicalisation_ignores_key_order_and_whitespace(v in arb_json(), seed in 0u64..1000) {
            let a = canonicalize(serde_json::to_string(&v).unwrap().as_bytes()).unwrap();
            let b = canonicalize(shuffled(&v, seed).as_bytes()).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn canonical_output_is_json_that_means_the_same(v in arb_json()) {
            let c = canonicalize(serde_json::to_string(&v).unwrap().as_bytes()).unwrap();
            let back: serde_json::Value = serde_json::from_slice(&c).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
