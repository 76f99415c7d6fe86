//! The ATNA syslog feed: DICOM audit fixtures → AuditEvents, real senders
//! (util-linux `logger` over TCP and UDP, an openssl TLS client with
//! certificates the test makes), parse-failure events.

mod common;
mod syslog_mapping;
mod syslog_retrieval;
mod syslog_rsyslog;
mod syslog_tls;
mod syslog_transports;
