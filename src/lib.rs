//! vellum: a tamper-evident FHIR AuditEvent repository for radiology AI.

pub mod config;
pub mod dicom;
pub mod fhir;
pub mod hl7v2;
pub mod http;
pub mod ledger;
pub mod mllp;
pub mod radiology;
pub mod startup;
pub mod store;
pub mod telemetry;
