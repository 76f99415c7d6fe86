//! QA reports over the chained radiology AI events (docs/reports.md):
//! override reports, model-version comparison, forensic lists (cases, study
//! history, patient access), CSV and the `/ui/` page.
//! Everything is recomputed from the ledger on each request (read through
//! `Ledger::search`); there is no second copy of the data.

pub mod cases;
pub mod csv;
pub mod drift;
pub mod drift_check;
pub mod events;
pub mod history;
pub mod overrides;
pub mod patient_access;
pub mod patients;
pub mod quality;
pub mod stats;
pub mod ui;
pub mod versions;
