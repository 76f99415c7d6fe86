//! The MLLP frame decoder (src/mllp/codec.rs), fed in fuzzer-chosen chunks
//! as a connection would deliver them; every frame it returns fits the
//! limit, and a frame without block characters survives encode → decode.
use bytes::BytesMut;
use vellum::mllp::codec::{encode, Decoder};

const MAX_FRAME: usize = 4096;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let (chunk, data) = vellum_fuzz::chunked(data);
        let mut decoder = Decoder::new(MAX_FRAME);
        let mut buf = BytesMut::new();
        for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => assert!(frame.0.len() <= MAX_FRAME),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if !data.iter().any(|b| matches!(b, 0x0B | 0x1C)) && data.len() <= MAX_FRAME {
            let mut out = Vec::new();
            encode(data, &mut out);
            let mut buf = BytesMut::from(&out[..]);
            let frame = Decoder::new(MAX_FRAME)
                .decode(&mut buf)
                .expect("within the limit")
                .expect("a whole frame");
            assert_eq!(&frame.0[..], data);
        }
    });
}
