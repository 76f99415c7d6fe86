//! vellum: a tamper-evident FHIR AuditEvent repository for radiology AI.

pub mod config;
pub mod fhir;
pub mod http;
pub mod ledger;
pub mod store;
pub mod telemetry;
