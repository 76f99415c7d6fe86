//! FHIR REST, the AI API, profiles, conformance and hostile input: one test
//! binary, one module per concern (shared helpers in vellum-testkit).

mod access_control;
mod ai_api;
mod bulk_export;
mod conformance;
mod conformance_suite;
mod fhir_api;
mod fhir_search;
mod hostile_input;
mod hostile_memory;
mod http_tls;
mod independent_validation;
mod index_rows_before;
mod jwt_auth;
mod profiles;
mod smoke_common;
mod trace_context;
