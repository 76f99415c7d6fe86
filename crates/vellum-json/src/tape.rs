//! A borrowing parse: the same grammar and the same refusals as
//! [`crate::parse_with`] (same error, same offset), but the values stay in
//! the source text. The result is one flat vector of slots (a "tape") in
//! document order; strings without escapes are slices of the source, the few
//! with escapes are decoded once into one side buffer. Reading a stored body
//! this way costs one or two allocations instead of one per string, array and
//! object (what `verify` and the index back-fill do for every entry).

use crate::scan;
use crate::{first_duplicate, plain_len, Json, Limits, Member, ParseError, ParseErrorKind, Value};
use crate::{MAX_DEPTH, SCAN_DUPLICATES_UP_TO};

/// One parsed JSON text, borrowing from its source.
#[derive(Debug, Clone)]
pub struct Tape<'s> {
    src: &'s str,
    slots: Vec<Slot>,
    /// The decoded text of strings that contained escapes.
    decoded: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    True,
    False,
    Number,
    String,
    Array,
    Object,
    /// An object member's key; its value follows it on the tape.
    Key,
}

/// Where a string's text is: a range of the source or of `decoded`.
#[derive(Debug, Clone, Copy)]
enum Text {
    Src(usize, usize),
    Decoded(usize, usize),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: Kind,
    /// The value's source span (a key: where its opening quote is).
    start: usize,
    end: usize,
    /// Strings, keys and numbers: their text.
    text: Text,
    /// The slot after this value and everything inside it.
    next: usize,
}

impl<'s> Tape<'s> {
    /// Parses JSON vellum wrote or already stored ([`Limits::INTERNAL`]).
    pub fn parse(src: &'s [u8]) -> Result<Tape<'s>, ParseError> {
        Tape::parse_with(src, Limits::INTERNAL)
    }

    /// Parses within `limits`; accepts and refuses exactly what
    /// [`crate::parse_with`] does.
    pub fn parse_with(src: &'s [u8], limits: Limits) -> Result<Tape<'s>, ParseError> {
        let text = std::str::from_utf8(src).map_err(|e| ParseError {
            offset: e.valid_up_to(),
            kind: ParseErrorKind::InvalidUtf8,
        })?;
        let mut p = Parser {
            src: text,
            bytes: src,
            pos: 0,
            max_depth: limits.max_depth.min(MAX_DEPTH),
            max_keys: limits.max_keys_per_object,
            // A canonical AuditEvent has roughly one slot per 12 bytes.
            slots: Vec::with_capacity(src.len() / 12 + 8),
            decoded: String::new(),
            keys: Vec::new(),
        };
        p.skip_ws();
        p.value(0)?;
        p.skip_ws();
        if p.pos != src.len() {
            return Err(p.err(ParseErrorKind::TrailingCharacters));
        }
        Ok(Tape {
            src: text,
            slots: p.slots,
            decoded: p.decoded,
        })
    }

    /// The top-level value.
    pub fn root(&self) -> Node<'_> {
        Node { tape: self, at: 0 }
    }

    fn text(&self, t: Text) -> &str {
        match t {
            Text::Src(a, b) => self.src.get(a..b),
            Text::Decoded(a, b) => self.decoded.get(a..b),
        }
        .unwrap_or("")
    }
}

/// One value on a [`Tape`].
#[derive(Debug, Clone, Copy)]
pub struct Node<'t> {
    tape: &'t Tape<'t>,
    at: usize,
}

impl<'t> Node<'t> {
    fn slot(&self) -> Option<&'t Slot> {
        self.tape.slots.get(self.at)
    }

    fn kind(&self) -> Option<Kind> {
        self.slot().map(|s| s.kind)
    }

    /// Member `key` of an object.
    pub fn get(self, key: &str) -> Option<Node<'t>> {
        self.members().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The members of an object (none for anything else), in source order.
    pub fn members(self) -> impl Iterator<Item = (&'t str, Node<'t>)> {
        let (mut i, end) = match self.slot() {
            Some(s) if s.kind == Kind::Object => (self.at + 1, s.next),
            _ => (0, 0),
        };
        std::iter::from_fn(move || {
            if i >= end {
                return None;
            }
            let key = self.tape.slots.get(i)?;
            let value = Node {
                tape: self.tape,
                at: i + 1,
            };
            i = value.slot()?.next;
            Some((self.tape.text(key.text), value))
        })
    }

    /// The items of an array, `None` for anything else.
    pub fn items(self) -> Option<impl Iterator<Item = Node<'t>>> {
        let s = self.slot().filter(|s| s.kind == Kind::Array)?;
        let (mut i, end) = (self.at + 1, s.next);
        Some(std::iter::from_fn(move || {
            if i >= end {
                return None;
            }
            let item = Node {
                tape: self.tape,
                at: i,
            };
            i = item.slot()?.next;
            Some(item)
        }))
    }

    /// The text of a string.
    pub fn as_str(self) -> Option<&'t str> {
        let s = self.slot().filter(|s| s.kind == Kind::String)?;
        Some(self.tape.text(s.text))
    }

    /// The same value as an owned tree, spans included (what
    /// [`crate::parse`] gives for the same text).
    pub fn to_json(self) -> Json {
        let Some(s) = self.slot() else {
            return Json::new(Value::Null);
        };
        let value = match s.kind {
            Kind::Null | Kind::Key => Value::Null,
            Kind::True => Value::Bool(true),
            Kind::False => Value::Bool(false),
            Kind::Number => Value::Number(self.tape.text(s.text).to_string()),
            Kind::String => Value::String(self.tape.text(s.text).to_string()),
            Kind::Array => Value::Array(
                self.items()
                    .into_iter()
                    .flatten()
                    .map(Node::to_json)
                    .collect(),
            ),
            Kind::Object => {
                let mut members = Vec::new();
                let mut i = self.at + 1;
                while i < s.next {
                    let Some(key) = self.tape.slots.get(i) else {
                        break;
                    };
                    let value = Node {
                        tape: self.tape,
                        at: i + 1,
                    };
                    members.push(Member {
                        key: self.tape.text(key.text).to_string(),
                        key_start: key.start,
                        value: value.to_json(),
                    });
                    i = value.slot().map_or(s.next, |v| v.next);
                }
                Value::Object(members)
            }
        };
        Json {
            start: s.start,
            end: s.end,
            value,
        }
    }

    /// The value of a boolean.
    pub fn as_bool(self) -> Option<bool> {
        match self.kind()? {
            Kind::True => Some(true),
            Kind::False => Some(false),
            _ => None,
        }
    }

    /// True for `null` (and `false` for anything else).
    pub fn is_null(self) -> bool {
        self.kind() == Some(Kind::Null)
    }
}

struct Parser<'s> {
    src: &'s str,
    bytes: &'s [u8],
    pos: usize,
    max_depth: usize,
    max_keys: usize,
    slots: Vec<Slot>,
    decoded: String,
    /// The keys (text, where the key starts) of the objects being read,
    /// innermost last.
    keys: Vec<(Text, usize)>,
}

impl Parser<'_> {
    fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        self.pos = scan::skip_ws(self.bytes, self.pos);
    }

    fn text(&self, t: Text) -> &str {
        match t {
            Text::Src(a, b) => self.src.get(a..b),
            Text::Decoded(a, b) => self.decoded.get(a..b),
        }
        .unwrap_or("")
    }

    fn expect_literal(&mut self, lit: &[u8]) -> Result<(), ParseError> {
        self.pos = scan::literal(self.bytes, self.pos, lit)?;
        Ok(())
    }

    /// Appends a slot for a value starting at `start`; its `end` and
    /// `next` are filled in by [`Parser::close`].
    fn open(&mut self, kind: Kind, start: usize, text: Text) -> usize {
        self.slots.push(Slot {
            kind,
            start,
            end: start,
            text,
            next: 0,
        });
        self.slots.len() - 1
    }

    fn close(&mut self, at: usize) {
        let next = self.slots.len();
        if let Some(s) = self.slots.get_mut(at) {
            s.end = self.pos;
            s.next = next;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), ParseError> {
        if depth > self.max_depth {
            return Err(self.err(ParseErrorKind::TooDeep(self.max_depth)));
        }
        let start = self.pos;
        let none = Text::Src(0, 0);
        let at = match self.peek() {
            None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
            Some(b'n') => {
                self.expect_literal(b"null")?;
                self.open(Kind::Null, start, none)
            }
            Some(b't') => {
                self.expect_literal(b"true")?;
                self.open(Kind::True, start, none)
            }
            Some(b'f') => {
                self.expect_literal(b"false")?;
                self.open(Kind::False, start, none)
            }
            Some(b'"') => {
                let text = self.string()?;
                self.open(Kind::String, start, text)
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                self.open(Kind::Number, start, Text::Src(start, self.pos))
            }
            Some(b'[') => {
                let at = self.open(Kind::Array, start, none);
                self.array(depth)?;
                at
            }
            Some(b'{') => {
                let at = self.open(Kind::Object, start, none);
                self.object(depth)?;
                at
            }
            Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
        };
        self.close(at);
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<(), ParseError> {
        self.pos += 1; // '['
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), ParseError> {
        self.pos += 1; // '{'
        let base = self.keys.len();
        let result = self.members(depth, base);
        self.keys.truncate(base);
        result
    }

    fn members(&mut self, depth: usize, base: usize) -> Result<(), ParseError> {
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let key_start = self.pos;
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
            let count = self.keys.len() - base;
            if count >= self.max_keys {
                return Err(self.err(ParseErrorKind::TooManyKeys(self.max_keys)));
            }
            let text = self.string()?;
            // As the owned parser: small objects are checked as they are
            // read, before the value.
            if count < SCAN_DUPLICATES_UP_TO {
                let key = self.text(text);
                let seen = self
                    .keys
                    .get(base..)
                    .unwrap_or(&[])
                    .iter()
                    .any(|&(k, _)| self.text(k) == key);
                if seen {
                    return Err(ParseError {
                        offset: key_start,
                        kind: ParseErrorKind::DuplicateKey(key.to_string()),
                    });
                }
            }
            let at = self.open(Kind::Key, key_start, text);
            self.close(at);
            self.keys.push((text, key_start));
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    if self.keys.len() - base > SCAN_DUPLICATES_UP_TO {
                        self.check_duplicates(base)?;
                    }
                    return Ok(());
                }
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(_) => return Err(self.err(ParseErrorKind::UnexpectedChar)),
            }
        }
    }

    /// The duplicate-key check of a large object, as the owned parser's.
    fn check_duplicates(&self, base: usize) -> Result<(), ParseError> {
        let members = self.keys.get(base..).unwrap_or(&[]);
        let keys: Vec<&str> = members.iter().map(|&(t, _)| self.text(t)).collect();
        match first_duplicate(&keys).and_then(|i| Some((members.get(i)?, keys.get(i)?))) {
            Some(((_, start), k)) => Err(ParseError {
                offset: *start,
                kind: ParseErrorKind::DuplicateKey((*k).to_string()),
            }),
            None => Ok(()),
        }
    }

    fn number(&mut self) -> Result<(), ParseError> {
        self.pos = scan::number_end(self.bytes, self.pos)?;
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, ParseError> {
        let v = scan::hex4(self.bytes, self.pos)?;
        self.pos += 4;
        Ok(v)
    }

    /// Skips the run of plain bytes of a string (input is valid UTF-8, and
    /// the run ends at an ASCII byte, so it is a whole number of characters).
    fn plain_run(&mut self) -> usize {
        let start = self.pos;
        self.pos += plain_len(self.bytes.get(start..).unwrap_or(&[]));
        start
    }

    fn string(&mut self) -> Result<Text, ParseError> {
        self.pos += 1; // opening quote
        let run_start = self.plain_run();
        if self.peek() == Some(b'"') {
            self.pos += 1;
            return Ok(Text::Src(run_start, self.pos - 1));
        }
        // Escapes (or an error): decode into the side buffer.
        let from = self.decoded.len();
        self.decoded
            .push_str(self.src.get(run_start..self.pos).unwrap_or(""));
        loop {
            match self.peek() {
                None => return Err(self.err(ParseErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Text::Decoded(from, self.decoded.len()));
                }
                Some(b'\\') => self.escape()?,
                Some(_) => return Err(self.err(ParseErrorKind::ControlCharacter)),
            }
            let run = self.plain_run();
            self.decoded
                .push_str(self.src.get(run..self.pos).unwrap_or(""));
        }
    }

    /// One escape sequence, decoded into the side buffer.
    fn escape(&mut self) -> Result<(), ParseError> {
        let esc_at = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(self.err(ParseErrorKind::UnexpectedEnd));
        };
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let ch = match hi {
                    0xD800..=0xDBFF => {
                        if self
                            .bytes
                            .get(self.pos..)
                            .unwrap_or(&[])
                            .starts_with(b"\\u")
                        {
                            self.pos += 2;
                            let lo = self.hex4()?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return Err(ParseError {
                                    offset: esc_at,
                                    kind: ParseErrorKind::LoneSurrogate,
                                });
                            }
                            char::from_u32(
                                0x10000
                                    + ((u32::from(hi) - 0xD800) << 10)
                                    + (u32::from(lo) - 0xDC00),
                            )
                        } else {
                            None
                        }
                    }
                    0xDC00..=0xDFFF => None,
                    _ => char::from_u32(u32::from(hi)),
                };
                ch.ok_or(ParseError {
                    offset: esc_at,
                    kind: ParseErrorKind::LoneSurrogate,
                })?
            }
            _ => {
                return Err(ParseError {
                    offset: esc_at,
                    kind: ParseErrorKind::InvalidEscape,
                })
            }
        };
        self.decoded.push(ch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_with;
    use proptest::prelude::*;

    /// The tape's answer in the owned parser's terms.
    fn via_tape(src: &[u8], limits: Limits) -> Result<Json, ParseError> {
        Tape::parse_with(src, limits).map(|t| t.root().to_json())
    }

    fn same(src: &str) {
        for limits in [
            Limits::INTERNAL,
            Limits::default(),
            Limits {
                max_depth: 3,
                max_keys_per_object: 2,
            },
        ] {
            assert_eq!(
                via_tape(src.as_bytes(), limits),
                parse_with(src.as_bytes(), limits),
                "{src:?}"
            );
        }
    }

    #[test]
    fn agrees_with_the_owned_parser() {
        for src in [
            r#"{"a":[1,2.5e-3,"x\u00e9\n",true,false,null],"b":{"c":{}},"d":[]}"#,
            r#" { "b" : 1 , "a" : [ true , null ] } "#,
            r#"{"a":1,"a":2}"#,
            r#"{"k\u0061":1,"ka":2}"#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\udc00x""#,
            r#""\ud83d\u0041""#,
            "\"a\u{1}\"",
            r#""\x""#,
            r#""\u12"#,
            "[1,]",
            "[01]",
            "-",
            "1.",
            "1e",
            "nul",
            "nulx",
            "tru",
            "{\"a\" 1}",
            "{\"a\":1",
            "{1:2}",
            "[[[[[1]]]]]",
            "{\"a\":{\"b\":{\"c\":{\"d\":1}}}}",
            "{\"a\":1,\"b\":2,\"c\":3}",
            "1 2",
            "",
            "   ",
            "\"abc",
            "\"abc\\",
        ] {
            same(src);
        }
        let wide: String = (0..40)
            .map(|i| format!("\"k{}\":{i}", i % 37))
            .collect::<Vec<_>>()
            .join(",");
        same(&format!("{{{wide}}}"));
        assert_eq!(
            via_tape(b"\"\xff\"", Limits::INTERNAL),
            parse_with(b"\"\xff\"", Limits::INTERNAL)
        );
    }

    #[test]
    fn navigation_borrows_and_decodes() {
        let src = br#"{"a":{"b":"plain","c":"t\u00e9\"x"},"l":[1,"two",{"z":null}]}"#;
        let tape = Tape::parse(src).unwrap();
        let root = tape.root();
        assert_eq!(
            root.get("a")
                .and_then(|a| a.get("b"))
                .and_then(Node::as_str),
            Some("plain")
        );
        assert_eq!(
            root.get("a")
                .and_then(|a| a.get("c"))
                .and_then(Node::as_str),
            Some("té\"x")
        );
        let items: Vec<_> = root.get("l").and_then(Node::items).unwrap().collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].as_str(), Some("two"));
        assert!(items[2].get("z").is_some_and(Node::is_null));
        assert!(root.get("missing").is_none());
        assert!(root.items().is_none());
    }

    /// Text built from JSON-ish pieces, valid or not, so both parsers see
    /// every kind of near miss.
    fn arb_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just(" ".to_string()),
            Just("\"a\"".to_string()),
            Just("\"b\"".to_string()),
            Just("\"\\u00e9\"".to_string()),
            Just("\"\\ud800\"".to_string()),
            Just("\"\\n\"".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("-0.5e+2".to_string()),
            Just("01".to_string()),
            "[a-z0-9\"\\\\{}\\[\\]:, é]{0,3}",
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i32>().prop_map(|n| serde_json::json!(n)),
            ".{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-c]{1,2}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_text_gets_the_owned_parsers_answer(s in arb_text()) {
            for limits in [Limits::INTERNAL, Limits { max_depth: 2, max_keys_per_object: 1 }] {
                prop_assert_eq!(via_tape(s.as_bytes(), limits), parse_with(s.as_bytes(), limits));
            }
        }

        #[test]
        fn any_json_gets_the_owned_parsers_tree(v in arb_json()) {
            let s = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(via_tape(s.as_bytes(), Limits::INTERNAL), parse_with(s.as_bytes(), Limits::INTERNAL));
        }
    }
}
