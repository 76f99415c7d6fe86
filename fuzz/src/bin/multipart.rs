//! The multipart/related splitter of DICOM uploads (src/dicom/multipart.rs),
//! fed in fuzzer-chosen chunks; the part bytes it hands out never exceed
//! the input.
use vellum::dicom::multipart::{PartSink, Splitter};

#[derive(Default)]
struct Count {
    parts: usize,
    bytes: usize,
    open: bool,
}

impl PartSink for Count {
    fn start(&mut self, _index: usize, _content_type: Option<&str>) -> Result<(), String> {
        assert!(!self.open, "a part started inside another");
        self.parts += 1;
        self.open = true;
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> Result<(), String> {
        assert!(self.open, "data outside a part");
        self.bytes += bytes.len();
        Ok(())
    }
    fn end(&mut self) -> Result<(), String> {
        assert!(self.open, "end outside a part");
        self.open = false;
        Ok(())
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let (chunk, data) = vellum_fuzz::chunked(data);
        let mut splitter = Splitter::new("b0undary");
        let mut sink = Count::default();
        for piece in data.chunks(chunk) {
            if splitter.push(piece, &mut sink).is_err() {
                return;
            }
        }
        let finished = splitter.finish().is_ok();
        assert!(sink.bytes <= data.len());
        // A part is counted at its boundary line and reaches the sink when
        // its headers end: a body cut inside a header block has one more.
        if finished {
            assert_eq!(splitter.parts(), sink.parts);
        } else {
            assert!(sink.parts <= splitter.parts());
        }
    });
}
