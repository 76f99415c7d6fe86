//! One MLLP connection's read side (mini-redis `connection.rs`): a
//! `BytesMut` read buffer, the frame decoder, deadlines.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::codec::{Decoder, Frame, FrameError};
use super::tls::Io;

/// Most frames handed out by one read (the rest stay buffered).
pub const MAX_BATCH: usize = 64;

#[derive(Debug)]
pub enum Read {
    /// One or more complete frames, in arrival order.
    Frames(Vec<Frame>),
    /// A frame over the size limit; its first bytes.
    TooLarge(Bytes),
    /// The peer closed the connection (`partial`: inside an unfinished frame).
    Closed { partial: bool },
    /// No complete frame arrived within the read timeout.
    TimedOut,
}

pub struct Connection {
    stream: Box<dyn Io>,
    buf: BytesMut,
    decoder: Decoder,
    too_large: Option<Bytes>,
}

impl Connection {
    pub fn new(stream: Box<dyn Io>, max_frame: usize) -> Self {
        Connection {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            decoder: Decoder::new(max_frame),
            too_large: None,
        }
    }

    /// Bytes dropped so far because they were outside any frame.
    pub fn discarded(&self) -> u64 {
        self.decoder.discarded()
    }

    /// The complete frames already buffered (no reading).
    pub fn buffered(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while frames.len() < MAX_BATCH {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(FrameError::TooLarge { head, .. }) => {
                    self.too_large = Some(head);
                    break;
                }
            }
        }
        frames
    }

    /// Waits for at least one complete frame. The whole next frame must
    /// arrive within `timeout` (so both idle and trickling peers are cut
    /// off). Cancel-safe: bytes read stay in the buffer.
    pub async fn read_frames(&mut self, timeout: Duration) -> std::io::Result<Read> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(head) = self.too_large.take() {
                return Ok(Read::TooLarge(head));
            }
            let frames = self.buffered();
            if !frames.is_empty() {
                return Ok(Read::Frames(frames));
            }
            if let Some(head) = self.too_large.take() {
                return Ok(Read::TooLarge(head));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(Read::TimedOut),
                Ok(Ok(0)) => {
                    return Ok(Read::Closed {
                        partial: self.decoder.in_frame(&self.buf),
                    })
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Writes `bytes` (already framed), giving up after `timeout`.
    pub async fn write_all(&mut self, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
        match tokio::time::timeout(timeout, self.stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "ACK write timed out",
            )),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
