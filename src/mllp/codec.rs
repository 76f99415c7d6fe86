//! MLLP framing (HL7 v2.x Implementation Guide, Appendix C, "MLLP Release 2"
//! block format): `<VT>` message `<FS><CR>`.
//!
//! Shaped like mini-redis' `frame.rs`: [`Frame::check`] looks at the read
//! buffer without copying and says whether a whole frame is there (or how
//! much leading garbage to drop); [`Decoder::decode`] applies that to a
//! `BytesMut`. Partial frames and several frames per read fall out of that.
//!
//! Rules (documented in docs/hl7v2.md):
//! - bytes before a `<VT>` are discarded and counted;
//! - a `<VT>` inside an unfinished frame starts a new frame (the sender gave
//!   up on the previous one); the abandoned bytes are counted as discarded;
//! - `<FS>` followed by anything but `<CR>` also ends the frame (lenient, as
//!   most engines are); the following byte is not consumed;
//! - a frame whose content would exceed the size limit is an error
//!   ([`FrameError::TooLarge`]) as soon as that is known, without buffering
//!   the rest.

use bytes::{Buf, Bytes, BytesMut};

/// Start block.
pub const VT: u8 = 0x0b;
/// End block.
pub const FS: u8 = 0x1c;
/// Carriage return after the end block.
pub const CR: u8 = 0x0d;

/// How many bytes of an oversize frame are kept so the listener can still
/// read its MSH and answer with a reject.
pub const TOO_LARGE_HEAD: usize = 4096;

/// One complete MLLP block's content (without `<VT>` and `<FS><CR>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub Bytes);

/// What [`Frame::check`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The first `n` bytes are not part of any frame: drop them.
    Discard(usize),
    /// A whole frame: content is `buf[1..end]`, the block takes `consumed` bytes.
    Complete { end: usize, consumed: usize },
    /// A frame has started but is not complete; bytes `..scanned` hold no
    /// block marker after the `<VT>` (so the next check can start there).
    Incomplete { scanned: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame's content is larger than the limit. `head` holds its first
    /// bytes (up to [`TOO_LARGE_HEAD`]).
    #[error("MLLP frame larger than {limit} bytes")]
    TooLarge { limit: usize, head: Bytes },
}

impl Frame {
    /// Looks for a frame at the start of `buf`. `from` is where the search
    /// for the end block may start (a previous `Incomplete { scanned }`, or
    /// 0); `max` is the largest allowed content length.
    pub fn check(buf: &[u8], from: usize, max: usize) -> Result<Check, usize> {
        match buf.first() {
            None => return Ok(Check::Incomplete { scanned: 0 }),
            Some(&VT) => {}
            Some(_) => {
                let n = buf.iter().position(|&b| b == VT).unwrap_or(buf.len());
                return Ok(Check::Discard(n));
            }
        }
        let start = from.max(1);
        let rel = buf
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == FS || b == VT));
        match rel {
            None => {
                if buf.len() - 1 > max {
                    Err(buf.len() - 1)
                } else {
                    Ok(Check::Incomplete { scanned: buf.len() })
                }
            }
            Some(rel) => {
                let i = start + rel;
                if buf[i] == VT {
                    // A new start block: the unfinished frame before it is abandoned.
                    return Ok(Check::Discard(i));
                }
                if i - 1 > max {
                    return Err(i - 1);
                }
                match buf.get(i + 1) {
                    None => Ok(Check::Incomplete { scanned: i }),
                    Some(&CR) => Ok(Check::Complete {
                        end: i,
                        consumed: i + 2,
                    }),
                    Some(_) => Ok(Check::Complete {
                        end: i,
                        consumed: i + 1,
                    }),
                }
            }
        }
    }
}

/// Stateful decoder over a connection's read buffer.
#[derive(Debug)]
pub struct Decoder {
    max_frame: usize,
    scanned: usize,
    discarded: u64,
}

impl Decoder {
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            max_frame,
            scanned: 0,
            discarded: 0,
        }
    }

    /// Bytes dropped so far because they were outside any frame.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// True when the buffer holds the start of a frame not yet complete.
    pub fn in_frame(&self, buf: &BytesMut) -> bool {
        buf.first() == Some(&VT)
    }

    /// Takes the next complete frame out of `buf`, dropping any garbage
    /// before it. `Ok(None)`: read more bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            match Frame::check(buf, self.scanned, self.max_frame) {
                Ok(Check::Discard(n)) => {
                    self.discarded += n as u64;
                    buf.advance(n);
                    self.scanned = 0;
                }
                Ok(Check::Incomplete { scanned }) => {
                    self.scanned = scanned;
                    return Ok(None);
                }
                Ok(Check::Complete { end, consumed }) => {
                    let block = buf.split_to(consumed).freeze();
                    self.scanned = 0;
                    return Ok(Some(Frame(block.slice(1..end))));
                }
                Err(_) => {
                    let head_end = buf.len().min(TOO_LARGE_HEAD + 1);
                    let head = Bytes::copy_from_slice(&buf[1..head_end]);
                    buf.clear();
                    self.scanned = 0;
                    return Err(FrameError::TooLarge {
                        limit: self.max_frame,
                        head,
                    });
                }
            }
        }
    }
}

/// Wraps `content` in an MLLP block.
pub fn encode(content: &[u8], out: &mut Vec<u8>) {
    out.reserve(content.len() + 3);
    out.push(VT);
    out.extend_from_slice(content);
    out.push(FS);
    out.push(CR);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(s, &mut v);
        v
    }

    fn decode_all(d: &mut Decoder, buf: &mut BytesMut) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(Some(Frame(f))) = d.decode(buf) {
            out.push(f.to_vec());
        }
        out
    }

    #[test]
    fn one_frame() {
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&block(b"MSH|x")[..]);
        assert_eq!(decode_all(&mut d, &mut buf), vec![b"MSH|x".to_vec()]);
        assert!(buf.is_empty());
        assert_eq!(d.discarded(), 0);
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut d = Decoder::new(100);
        let mut bytes = block(b"a");
        bytes.extend(block(b"bb"));
        bytes.extend(block(b"ccc"));
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(
            decode_all(&mut d, &mut buf),
            vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
        );
    }

    #[test]
    fn garbage_before_and_between_frames_is_discarded_and_counted() {
        let mut d = Decoder::new(100);
        let mut bytes = b"hello\r\n".to_vec();
        bytes.extend(block(b"a"));
        bytes.extend(b"xyz");
        bytes.extend(block(b"b"));
        bytes.extend(b"tail");
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(
            decode_all(&mut d, &mut buf),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(d.discarded(), 7 + 3 + 4);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_new_start_block_abandons_the_unfinished_frame() {
        let mut d = Decoder::new(100);
        let mut bytes = vec![VT];
        bytes.extend(b"lost");
        bytes.extend(block(b"kept"));
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(decode_all(&mut d, &mut buf), vec![b"kept".to_vec()]);
        assert_eq!(d.discarded(), 5);
    }

    #[test]
    fn fs_without_cr_still_ends_the_frame() {
        let mut d = Decoder::new(100);
        let mut bytes = vec![VT];
        bytes.extend(b"a");
        bytes.push(FS);
        bytes.extend(block(b"b"));
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(
            decode_all(&mut d, &mut buf),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn fs_at_the_end_of_a_read_waits_for_the_cr() {
        let mut d = Decoder::new(100);
        let mut buf = BytesMut::from(&[VT, b'a', FS][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[CR]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Frame(Bytes::from_static(b"a"))))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversize_frame_is_refused_before_it_is_complete() {
        let mut d = Decoder::new(10);
        let mut buf = BytesMut::from(&[VT][..]);
        buf.extend_from_slice(b"MSH|0123456789");
        match d.decode(&mut buf) {
            Err(FrameError::TooLarge { limit, head }) => {
                assert_eq!(limit, 10);
                assert_eq!(&head[..], b"MSH|0123456789");
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
        // Exactly the limit is fine.
        let mut buf = BytesMut::from(&block(b"0123456789")[..]);
        assert_eq!(decode_all(&mut d, &mut buf), vec![b"0123456789".to_vec()]);
    }

    #[test]
    fn huge_frame_keeps_only_a_bounded_head() {
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::from(&[VT][..]);
        buf.extend_from_slice(&vec![b'x'; 1 << 20]);
        match d.decode(&mut buf) {
            Err(FrameError::TooLarge { head, .. }) => assert_eq!(head.len(), TOO_LARGE_HEAD),
            other => panic!("{other:?}"),
        }
    }

    fn content() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|v| v.into_iter().filter(|b| ![VT, FS].contains(b)).collect())
    }

    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|v| v.into_iter().filter(|b| *b != VT).collect())
    }

    proptest! {
        /// However the stream is split into reads, and whatever garbage
        /// (without start blocks) sits between frames, the frames come out
        /// whole, in order, and every garbage byte is counted.
        #[test]
        fn frames_survive_any_split_and_garbage(
            msgs in proptest::collection::vec((garbage(), content()), 0..8),
            cuts in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let mut stream = Vec::new();
            let mut garbage_len = 0u64;
            for (g, m) in &msgs {
                // Garbage right after a frame must not start with CR only
                // when the frame ended with FS... it always ends FS CR here.
                stream.extend(g);
                garbage_len += g.len() as u64;
                stream.extend(block(m));
            }
            let mut d = Decoder::new(1000);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut cut = cuts.iter().cycle();
            while pos < stream.len() {
                let n = (*cut.next().unwrap_or(&1)).min(stream.len() - pos);
                buf.extend_from_slice(&stream[pos..pos + n]);
                pos += n;
                while let Some(Frame(f)) = d.decode(&mut buf).expect("no frame is too large") {
                    got.push(f.to_vec());
                }
            }
            let want: Vec<Vec<u8>> = msgs.iter().map(|(_, m)| m.clone()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(d.discarded(), garbage_len);
        }

        /// Arbitrary bytes never panic and never yield a frame over the limit.
        #[test]
        fn arbitrary_input_is_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..2000), max in 1usize..100) {
            let mut d = Decoder::new(max);
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(Frame(f))) => prop_assert!(f.len() <= max),
                    Ok(None) => break,
                    Err(FrameError::TooLarge { head, .. }) => prop_assert!(head.len() <= TOO_LARGE_HEAD),
                }
            }
            prop_assert!(buf.len() <= max + 2);
        }
    }
}
