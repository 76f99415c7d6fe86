//! QA reports over the chained radiology AI events (docs/reports.md):
//! override reports, model-version comparison, quality metrics, drift
//! verdicts and the scheduled drift check, forensic lists (cases, study
//! history, patient access), CSV and the `/ui/` page.
//! Everything is computed on each request from the entries' summary rows
//! (read through `Ledger::summaries`: derived from each body when it was
//! appended, checked by `vellum verify`, back-filled when missing), kept in
//! memory by `cache` and brought up to the head before every report.

pub mod cache;
pub mod cases;
pub mod confidence;
pub mod csv;
pub mod drift;
pub mod drift_check;
pub mod events;
pub mod history;
pub mod lookup;
pub mod overrides;
pub mod patient_access;
pub mod patients;
pub mod quality;
pub mod stats;
pub mod ui;
pub mod versions;
