//! HL7 v2 over MLLP: framing codec, TCP listener, ACK building.
//!
//! Shaped like mini-redis: [`codec`] (frame.rs), `connection` (a read
//! buffer and the decoder), [`listener`] (accept loop with a connection
//! limit, one handler per connection, graceful shutdown), `process` (one
//! message: read → map → append → ACK).

pub mod ack;
pub mod codec;
mod connection;
pub mod index;
pub mod listener;
mod process;
pub mod tls;

pub use index::InferenceIndex;
pub use listener::MllpListener;
