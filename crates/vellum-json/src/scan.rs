//! Byte-level scanning shared by the owned parser (lib.rs) and the tape
//! parser (tape.rs): one definition of whitespace, literals, numbers and
//! `\u` escapes, so both accept and refuse exactly the same text with the
//! same error offsets.

use crate::{ParseError, ParseErrorKind};

/// The position after any JSON whitespace at `pos`.
pub(crate) fn skip_ws(src: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = src.get(pos) {
        pos += 1;
    }
    pos
}

/// The position after `lit` (`true`, `false`, `null`) at `pos`.
pub(crate) fn literal(src: &[u8], pos: usize, lit: &[u8]) -> Result<usize, ParseError> {
    let rest = src.get(pos..).unwrap_or(&[]);
    if rest.starts_with(lit) {
        Ok(pos + lit.len())
    } else if rest.len() < lit.len() && lit.starts_with(rest) {
        Err(ParseError {
            offset: src.len(),
            kind: ParseErrorKind::UnexpectedEnd,
        })
    } else {
        Err(ParseError {
            offset: pos,
            kind: ParseErrorKind::UnexpectedChar,
        })
    }
}

/// The end of the JSON number starting at `pos`; the error names the
/// first byte that breaks the grammar.
pub(crate) fn number_end(src: &[u8], mut pos: usize) -> Result<usize, ParseError> {
    let digits = |p: &mut usize| {
        let s = *p;
        while let Some(b'0'..=b'9') = src.get(*p) {
            *p += 1;
        }
        *p - s
    };
    let invalid = |at: usize| ParseError {
        offset: at,
        kind: ParseErrorKind::InvalidNumber,
    };
    if src.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match src.get(pos) {
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => {
            digits(&mut pos);
        }
        _ => return Err(invalid(pos)),
    }
    if src.get(pos) == Some(&b'.') {
        pos += 1;
        if digits(&mut pos) == 0 {
            return Err(invalid(pos));
        }
    }
    if let Some(b'e' | b'E') = src.get(pos) {
        pos += 1;
        if let Some(b'+' | b'-') = src.get(pos) {
            pos += 1;
        }
        if digits(&mut pos) == 0 {
            return Err(invalid(pos));
        }
    }
    Ok(pos)
}

/// The UTF-16 code unit of the four hex digits at `pos` (after `\u`).
pub(crate) fn hex4(src: &[u8], pos: usize) -> Result<u16, ParseError> {
    let Some(h) = src.get(pos..pos + 4) else {
        return Err(ParseError {
            offset: src.len(),
            kind: ParseErrorKind::UnexpectedEnd,
        });
    };
    let mut v: u16 = 0;
    for &c in h {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => {
                return Err(ParseError {
                    offset: pos,
                    kind: ParseErrorKind::InvalidEscape,
                })
            }
        };
        v = (v << 4) | u16::from(d);
    }
    Ok(v)
}
