//! Syslog framing and headers: RFC 6587 octet counting (`LEN SP MSG`) and
//! LF-terminated frames on one TCP stream (each frame says which by its
//! first byte); the RFC 5424 and RFC 3164 (BSD) headers in front of the
//! audit XML.

use bytes::{Buf, Bytes, BytesMut};

/// What the decoder found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Frame(Bytes),
    /// A frame longer than the limit (the stream cannot be resynchronised).
    TooLarge,
}

/// Longest length prefix accepted (digits).
const MAX_LEN_DIGITS: usize = 10;

/// The next complete frame in `buf`, removing it; `None` when more bytes
/// are needed.
pub fn decode(buf: &mut BytesMut, max: usize) -> Option<Decoded> {
    // Some senders put a stray LF/CR between octet-counted frames.
    while matches!(buf.first(), Some(b'\n' | b'\r' | b'\0')) {
        buf.advance(1);
    }
    let first = *buf.first()?;
    if first.is_ascii_digit() {
        // Octet counting: digits, one space, then exactly LEN bytes.
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_LEN_DIGITS {
            return Some(Decoded::TooLarge);
        }
        if buf.len() == digits {
            return None;
        }
        if buf[digits] != b' ' {
            // Not octet counting after all: an LF frame starting with a digit.
            return lf_frame(buf, max);
        }
        let len: usize = std::str::from_utf8(&buf[..digits]).ok()?.parse().ok()?;
        if len > max {
            return Some(Decoded::TooLarge);
        }
        if buf.len() < digits + 1 + len {
            return None;
        }
        buf.advance(digits + 1);
        return Some(Decoded::Frame(buf.split_to(len).freeze()));
    }
    lf_frame(buf, max)
}

fn lf_frame(buf: &mut BytesMut, max: usize) -> Option<Decoded> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i > max => Some(Decoded::TooLarge),
        Some(i) => {
            let mut frame = buf.split_to(i + 1);
            frame.truncate(i);
            if frame.last() == Some(&b'\r') {
                frame.truncate(i - 1);
            }
            Some(Decoded::Frame(frame.freeze()))
        }
        None if buf.len() > max => Some(Decoded::TooLarge),
        None => None,
    }
}

/// A syslog message split into the header fields vellum keeps and MSG.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// PRI (facility × 8 + severity, 0–191), when the header has one.
    pub priority: Option<u8>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    /// RFC 5424 MSGID (ATNA senders write e.g. `IHE+RFC-3881`).
    pub msg_id: Option<String>,
    pub msg: &'a [u8],
}

fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let rest = s.get(end + 1..).unwrap_or(&[]);
    (&s[..end], rest)
}

fn field(t: &[u8]) -> Option<String> {
    (t != b"-" && !t.is_empty())
        .then(|| String::from_utf8_lossy(&t[..t.len().min(255)]).into_owned())
}

/// Skips RFC 5424 STRUCTURED-DATA (`-` or `[...]...`, with `\]` escapes
/// inside quoted values).
fn skip_sd(s: &[u8]) -> &[u8] {
    if s.first() == Some(&b'-') {
        return s.get(2..).unwrap_or(&[]);
    }
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        let mut in_quotes = false;
        let mut escaped = false;
        i += 1;
        while let Some(&b) = s.get(i) {
            i += 1;
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == b']' && !in_quotes {
                break;
            }
        }
    }
    if s.get(i) == Some(&b' ') {
        i += 1;
    }
    s.get(i..).unwrap_or(&[])
}

/// Splits a syslog message: RFC 5424 (`<PRI>1 TS HOST APP PROCID MSGID SD
/// MSG`) or RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`). Without a
/// recognisable header the whole frame is the MSG.
pub fn split(frame: &[u8]) -> Message<'_> {
    let whole = Message {
        priority: None,
        hostname: None,
        app_name: None,
        msg_id: None,
        msg: frame,
    };
    let Some(rest) = frame.strip_prefix(b"<") else {
        return whole;
    };
    let Some(close) = rest.iter().take(4).position(|&b| b == b'>') else {
        return whole;
    };
    if close == 0 || !rest[..close].iter().all(u8::is_ascii_digit) {
        return whole;
    }
    let priority = std::str::from_utf8(&rest[..close])
        .ok()
        .and_then(|p| p.parse::<u8>().ok())
        .filter(|p| *p <= 191);
    let rest = &rest[close + 1..];
    if let Some(v5424) = rest.strip_prefix(b"1 ") {
        let (_ts, r) = token(v5424);
        let (host, r) = token(r);
        let (app, r) = token(r);
        let (_procid, r) = token(r);
        let (msgid, r) = token(r);
        let msg = skip_sd(r);
        let msg = msg.strip_prefix("\u{feff}".as_bytes()).unwrap_or(msg);
        return Message {
            priority,
            hostname: field(host),
            app_name: field(app),
            msg_id: field(msgid),
            msg,
        };
    }
    // RFC 3164: "Mmm dd hh:mm:ss " (15 characters + space), HOSTNAME, TAG.
    let looks_bsd = rest.len() > 16
        && rest[3] == b' '
        && rest[6] == b' '
        && rest[9] == b':'
        && rest[12] == b':'
        && rest[15] == b' ';
    if !looks_bsd {
        return Message {
            priority,
            msg: rest,
            ..whole
        };
    }
    let (host, r) = token(&rest[16..]);
    // The MSG is the audit XML: it starts at the first '<' after the tag.
    let (tag, msg) = match r.iter().position(|&b| b == b'<') {
        Some(i) => (&r[..i], &r[i..]),
        None => (r, &r[r.len()..]),
    };
    let tag_end = tag
        .iter()
        .position(|&b| b == b'[' || b == b':' || b == b' ')
        .unwrap_or(tag.len());
    Message {
        priority,
        hostname: field(host),
        app_name: field(&tag[..tag_end]),
        msg_id: None,
        msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], max: usize) -> Vec<Decoded> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        // TooLarge is final: the connection is closed.
        while let Some(d) = decode(&mut buf, max) {
            let last = d == Decoded::TooLarge;
            out.push(d);
            if last {
                break;
            }
        }
        out
    }

    #[test]
    fn octet_counting_and_lf_frames_mix() {
        let got = frames(b"5 hello\n3 a\nbfoo 9\n12ab\nrest-no-lf", 100);
        assert_eq!(
            got,
            vec![
                Decoded::Frame(Bytes::from_static(b"hello")),
                Decoded::Frame(Bytes::from_static(b"a\nb")),
                Decoded::Frame(Bytes::from_static(b"foo 9")),
                Decoded::Frame(Bytes::from_static(b"12ab")),
            ]
        );
        assert_eq!(frames(b"99999 ", 100), vec![Decoded::TooLarge]);
        assert_eq!(frames(b"aaaaaaaa", 4), vec![Decoded::TooLarge]);
    }

    #[test]
    fn headers() {
        let m = split(b"<110>1 2024-01-01T00:00:00Z pacs DCM4CHEE 12 IHE+RFC-3881 [a x=\"]\"] <AuditMessage/>");
        assert_eq!(m.hostname.as_deref(), Some("pacs"));
        assert_eq!(m.app_name.as_deref(), Some("DCM4CHEE"));
        assert_eq!(m.priority, Some(110));
        assert_eq!(m.msg_id.as_deref(), Some("IHE+RFC-3881"));
        assert_eq!(m.msg, b"<AuditMessage/>");
        let m = split(b"<13>Oct 11 22:14:15 mymachine su[12]: <AuditMessage/>");
        assert_eq!(m.hostname.as_deref(), Some("mymachine"));
        assert_eq!(m.app_name.as_deref(), Some("su"));
        assert_eq!((m.priority, m.msg_id), (Some(13), None));
        assert_eq!(m.msg, b"<AuditMessage/>");
        // A PRI above 191 is not a PRI.
        assert_eq!(split(b"<999>1 - h a - - - <x/>").priority, None);
        let m = split(b"<13>1 - - - - - - \xef\xbb\xbf<x/>");
        assert_eq!(m.msg, b"<x/>");
        assert_eq!(split(b"<x/>").msg, b"<x/>");
    }
}
