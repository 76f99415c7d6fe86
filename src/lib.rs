//! vellum: a tamper-evident FHIR AuditEvent repository for radiology AI.

pub mod atna;
pub mod auth;
pub mod bulk_export;
pub mod checkpoint_publisher;
pub mod config;
pub mod demo;
pub mod detection;
pub mod dicom;
pub mod digest_worker;
pub mod evidence;
pub mod fhir;
pub mod hl7v2;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod mllp;
pub mod peers;
pub mod radiology;
pub mod reports;
pub mod siem;
pub mod startup;
pub mod syslog;
pub mod telemetry;
pub mod time_seal;
pub mod tls;
pub mod tls_refusals;
pub mod vocabulary;
pub mod witness;

/// The ledger crate under the path integrators and tests have used.
pub mod ledger {
    pub use vellum_json as canonical;
    pub use vellum_ledger::*;
}
pub use vellum_ledger::store;

#[cfg(test)]
mod architecture_tests;
