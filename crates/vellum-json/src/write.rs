//! A minimal JSON writer for the event builders (HL7 v2 mapping, AI API):
//! events are written straight into a `String` (no `serde_json::Value`
//! tree: with `preserve_order` on, every object is an IndexMap with SipHash,
//! which cost more than the rest of the mapping together). Keys are static;
//! values are escaped here.

use std::fmt::Write as _;

/// Writes `s` as a JSON string (RFC 8259 escaping).
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Only ASCII bytes need escaping, so `i` is always a char boundary.
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// An object being written; members are separated automatically.
pub struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

/// An array being written.
pub struct Arr<'a> {
    out: &'a mut String,
    first: bool,
}

/// Writes one object with `f` filling its members.
pub fn object(out: &mut String, f: impl FnOnce(&mut Obj)) {
    out.push('{');
    let mut o = Obj { out, first: true };
    f(&mut o);
    o.out.push('}');
}

impl Obj<'_> {
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, k);
        self.out.push(':');
    }

    /// A string member.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        string(self.out, v);
        self
    }

    /// A string member, only when `v` is not empty.
    pub fn opt(&mut self, k: &str, v: &str) -> &mut Self {
        if !v.is_empty() {
            self.str(k, v);
        }
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    /// A member whose value is already JSON.
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.out.push_str(json);
        self
    }

    pub fn obj(&mut self, k: &str, f: impl FnOnce(&mut Obj)) -> &mut Self {
        self.key(k);
        object(self.out, f);
        self
    }

    pub fn arr(&mut self, k: &str, f: impl FnOnce(&mut Arr)) -> &mut Self {
        self.key(k);
        self.out.push('[');
        let mut a = Arr {
            out: self.out,
            first: true,
        };
        f(&mut a);
        a.out.push(']');
        self
    }

    /// An array member, left out entirely when `f` writes no item (FHIR
    /// forbids empty arrays).
    pub fn arr_opt(&mut self, k: &str, f: impl FnOnce(&mut Arr)) -> &mut Self {
        let (len, first) = (self.out.len(), self.first);
        self.key(k);
        self.out.push('[');
        let mut a = Arr {
            out: self.out,
            first: true,
        };
        f(&mut a);
        if a.first {
            self.out.truncate(len);
            self.first = first;
        } else {
            a.out.push(']');
        }
        self
    }

    /// A Coding object member.
    pub fn coding(&mut self, k: &str, system: &str, code: &str, display: &str) -> &mut Self {
        self.obj(k, |c| coding(c, system, code, display))
    }

    /// A CodeableConcept member with one coding.
    pub fn concept(&mut self, k: &str, system: &str, code: &str, display: &str) -> &mut Self {
        self.obj(k, |cc| {
            cc.arr("coding", |a| {
                a.obj(|c| coding(c, system, code, display));
            });
        })
    }
}

impl Arr<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    pub fn obj(&mut self, f: impl FnOnce(&mut Obj)) -> &mut Self {
        self.sep();
        object(self.out, f);
        self
    }

    /// An item that is already JSON.
    pub fn raw_item(&mut self, json: &str) -> &mut Self {
        self.sep();
        self.out.push_str(json);
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.sep();
        string(self.out, v);
        self
    }

    /// A Coding element.
    pub fn coding(&mut self, system: &str, code: &str, display: &str) -> &mut Self {
        self.obj(|c| coding(c, system, code, display))
    }
}

/// Fills a Coding: system, code and (when not empty) display.
pub fn coding(c: &mut Obj, system: &str, code: &str, display: &str) {
    c.str("system", system)
        .str("code", code)
        .opt("display", display);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_escaped_json() {
        let mut out = String::new();
        object(&mut out, |o| {
            o.str("a", "q\"b\\s\n\u{1}é")
                .bool("t", true)
                .opt("empty", "")
                .arr("xs", |a| {
                    a.str("1").obj(|o| {
                        o.coding("c", "http://s", "x", "");
                    });
                });
        });
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut empty = String::new();
        object(&mut empty, |o| {
            o.str("a", "1").arr_opt("none", |_| {}).str("b", "2");
        });
        assert_eq!(empty, r#"{"a":"1","b":"2"}"#);
        assert_eq!(v["a"], "q\"b\\s\n\u{1}é");
        assert_eq!(v["t"], true);
        assert!(v.get("empty").is_none());
        assert_eq!(v["xs"][1]["c"]["system"], "http://s");
        assert!(v["xs"][1]["c"].get("display").is_none());
    }
}
