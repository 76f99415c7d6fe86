//! FHIR R4 AuditEvent handling: parse, validate, prepare for the ledger,
//! OperationOutcome and CapabilityStatement.

pub mod access_event;
pub mod bundle;
pub mod capability;
pub mod create;
pub mod narrative;
pub mod outcome;
pub mod path;
pub mod profile;
pub mod search;
pub mod search_index;
pub mod validate;
pub mod xml_guard;

pub use outcome::{Issue, IssueType, OperationOutcome};
