//! A streaming `multipart/related` splitter (RFC 2387, as used by STOW-RS
//! uploads and WADO-RS responses): bytes are pushed in as they arrive and
//! each part's body is handed to a sink piece by piece, so no part is ever
//! held whole in memory. Only the tail that might be the start of a
//! boundary is kept between pushes.

use memchr::memmem;

/// Largest header block of one part; beyond it the body is refused.
const MAX_PART_HEADERS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("multipart body has no opening boundary --{0}")]
    NoOpeningBoundary(String),
    #[error("part {0} has a header block larger than {MAX_PART_HEADERS} bytes")]
    HeadersTooLarge(usize),
    #[error("part {0} has a malformed header line")]
    BadHeader(usize),
    #[error("multipart body ends before its closing boundary")]
    Unterminated,
    #[error("{0}")]
    Sink(String),
}

/// Receives the parts.
pub trait PartSink {
    /// A new part (numbered from 1) begins, with its Content-Type if any.
    fn start(&mut self, index: usize, content_type: Option<&str>) -> Result<(), String>;
    /// More body bytes of the current part.
    fn data(&mut self, bytes: &[u8]) -> Result<(), String>;
    /// The current part is complete.
    fn end(&mut self) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Just after a boundary line: `--` (the end) or CRLF (a part follows).
    AfterBoundary,
    Headers,
    Body,
    Done,
}

pub struct Splitter {
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
    parts: usize,
}

impl Splitter {
    pub fn new(boundary: &str) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Splitter {
            delimiter,
            buf: Vec::new(),
            state: State::Preamble,
            parts: 0,
        }
    }

    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Feeds the next bytes of the body.
    pub fn push(&mut self, bytes: &[u8], sink: &mut impl PartSink) -> Result<(), MultipartError> {
        self.buf.extend_from_slice(bytes);
        let sink_err = MultipartError::Sink;
        loop {
            match self.state {
                State::Done => {
                    self.buf.clear(); // the epilogue is ignored
                    return Ok(());
                }
                State::Preamble => {
                    // The first boundary may open the body without a CRLF.
                    let bare = &self.delimiter[2..];
                    if self.buf.starts_with(bare) {
                        self.buf.drain(..bare.len());
                        self.state = State::AfterBoundary;
                    } else if let Some(i) = memmem::find(&self.buf, &self.delimiter) {
                        self.buf.drain(..i + self.delimiter.len());
                        self.state = State::AfterBoundary;
                    } else {
                        let keep = self.delimiter.len();
                        if self.buf.len() > keep {
                            self.buf.drain(..self.buf.len() - keep);
                        }
                        return Ok(());
                    }
                }
                State::AfterBoundary => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Done;
                        continue;
                    }
                    // Transport padding (spaces, tabs) may precede the CRLF.
                    match memmem::find(&self.buf, b"\r\n") {
                        Some(i) if self.buf[..i].iter().all(|b| *b == b' ' || *b == b'\t') => {
                            self.buf.drain(..i + 2);
                            self.parts += 1;
                            self.state = State::Headers;
                        }
                        Some(_) => return Err(MultipartError::BadHeader(self.parts + 1)),
                        None if self.buf.len() > 256 => {
                            return Err(MultipartError::BadHeader(self.parts + 1))
                        }
                        None => return Ok(()),
                    }
                }
                State::Headers => {
                    // An empty header block is just CRLF.
                    let end = if self.buf.starts_with(b"\r\n") {
                        Some((0, 2))
                    } else {
                        memmem::find(&self.buf, b"\r\n\r\n").map(|i| (i, i + 4))
                    };
                    let Some((end, skip)) = end else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(MultipartError::HeadersTooLarge(self.parts));
                        }
                        return Ok(());
                    };
                    if end > MAX_PART_HEADERS {
                        return Err(MultipartError::HeadersTooLarge(self.parts));
                    }
                    let content_type = content_type(&self.buf[..end])
                        .map_err(|()| MultipartError::BadHeader(self.parts))?;
                    sink.start(self.parts, content_type.as_deref())
                        .map_err(sink_err)?;
                    self.buf.drain(..skip);
                    self.state = State::Body;
                }
                State::Body => match memmem::find(&self.buf, &self.delimiter) {
                    Some(i) => {
                        sink.data(&self.buf[..i]).map_err(sink_err)?;
                        sink.end().map_err(sink_err)?;
                        self.buf.drain(..i + self.delimiter.len());
                        self.state = State::AfterBoundary;
                    }
                    None => {
                        // Everything but a possible partial delimiter at the end.
                        let keep = self.delimiter.len() - 1;
                        if self.buf.len() > keep {
                            let n = self.buf.len() - keep;
                            sink.data(&self.buf[..n]).map_err(sink_err)?;
                            self.buf.drain(..n);
                        }
                        return Ok(());
                    }
                },
            }
        }
    }

    /// The body has ended: it must have closed with `--boundary--`.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match self.state {
            State::Done => Ok(()),
            State::Preamble => Err(MultipartError::NoOpeningBoundary(
                String::from_utf8_lossy(&self.delimiter[4..]).into_owned(),
            )),
            _ => Err(MultipartError::Unterminated),
        }
    }
}

/// The Content-Type of a header block (media type only, lowercased).
fn content_type(block: &[u8]) -> Result<Option<String>, ()> {
    let text = std::str::from_utf8(block).map_err(|_| ())?;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(())?;
        if name.trim().eq_ignore_ascii_case("content-type") {
            let media = value.split(';').next().unwrap_or("").trim();
            return Ok(Some(media.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

/// The `boundary` parameter of a multipart Content-Type value.
pub fn boundary_of(content_type: &str) -> Option<String> {
    param_of(content_type, "boundary")
}

/// A parameter of a Content-Type value (quotes removed).
pub fn param_of(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<(Option<String>, Vec<u8>)>, bool);

    impl PartSink for Collect {
        fn start(&mut self, _: usize, ct: Option<&str>) -> Result<(), String> {
            self.0.push((ct.map(str::to_string), Vec::new()));
            Ok(())
        }
        fn data(&mut self, b: &[u8]) -> Result<(), String> {
            if let Some(last) = self.0.last_mut() {
                last.1.extend_from_slice(b);
            }
            Ok(())
        }
        fn end(&mut self) -> Result<(), String> {
            self.1 = true;
            Ok(())
        }
    }

    fn body() -> Vec<u8> {
        let mut b = b"preamble\r\n--XyZ\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
        b.extend_from_slice(b"first\r\n--Xy not a boundary");
        b.extend_from_slice(b"\r\n--XyZ\r\nContent-Type: Application/DICOM; x=1\r\n\r\n");
        b.extend_from_slice(&[0u8, 13, 10, 45, 45, 255]);
        b.extend_from_slice(b"\r\n--XyZ--\r\nepilogue");
        b
    }

    #[test]
    fn parts_come_out_whole_whatever_the_chunking() {
        let b = body();
        for step in [1, 2, 3, 7, 64, b.len()] {
            let mut s = Splitter::new("XyZ");
            let mut c = Collect::default();
            for chunk in b.chunks(step) {
                s.push(chunk, &mut c).unwrap();
            }
            s.finish().unwrap();
            assert_eq!(c.0.len(), 2, "step {step}");
            assert_eq!(c.0[0].1, b"first\r\n--Xy not a boundary");
            assert_eq!(c.0[1].0.as_deref(), Some("application/dicom"));
            assert_eq!(c.0[1].1, [0u8, 13, 10, 45, 45, 255]);
        }
    }

    #[test]
    fn a_body_without_its_closing_boundary_is_refused() {
        let b = body();
        let mut s = Splitter::new("XyZ");
        s.push(&b[..b.len() - 20], &mut Collect::default()).unwrap();
        assert_eq!(s.finish(), Err(MultipartError::Unterminated));
        let mut s = Splitter::new("other");
        s.push(&b, &mut Collect::default()).unwrap();
        assert!(matches!(
            s.finish(),
            Err(MultipartError::NoOpeningBoundary(_))
        ));
    }

    /// Found by fuzzing: a header block that never ends (a bare LF where
    /// CRLF CRLF belongs) swallows the closing boundary. The part was
    /// counted at its boundary line but never handed to the sink, and the
    /// body must be refused as unterminated, not taken as complete.
    #[test]
    fn a_part_whose_headers_never_end_leaves_the_body_unterminated() {
        let b = b"--XyZ\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--XyZ\r\n\
                  Content-Type: text/plain-\n\r\nx\r\n--XyZ--\r\n";
        let mut s = Splitter::new("XyZ");
        let mut c = Collect::default();
        s.push(b, &mut c).unwrap();
        assert_eq!(s.finish(), Err(MultipartError::Unterminated));
        assert_eq!((s.parts(), c.0.len()), (2, 1));
    }

    #[test]
    fn boundary_parameter_is_found_quoted_or_not() {
        let ct = r#"multipart/related; type="application/dicom"; boundary="a b""#;
        assert_eq!(boundary_of(ct).as_deref(), Some("a b"));
        assert_eq!(param_of(ct, "type").as_deref(), Some("application/dicom"));
        assert_eq!(
            boundary_of("multipart/related; boundary=xyz").as_deref(),
            Some("xyz")
        );
        assert_eq!(boundary_of("multipart/related"), None);
    }
}
