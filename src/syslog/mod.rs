//! The ATNA syslog feed (IHE ITI-20 over syslog): RFC 5424 messages
//! carrying DICOM audit XML over TCP (RFC 6587), TLS (RFC 5425) and UDP
//! (RFC 5426). Each message becomes one AuditEvent through the intake;
//! on TCP/TLS the next frame of a connection is read only after the
//! previous one is stored.
//!
//! Logging: counts, reasons and the peer's port only — never content.

pub mod frame;
mod listener;
mod process;
mod udp;

pub use listener::SyslogListener;
pub use process::{counters, Counters};
pub use udp::UdpListener;
