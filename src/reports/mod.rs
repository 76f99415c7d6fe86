//! QA reports over the chained radiology AI events (docs/reports.md):
//! override reports, model-version comparison, CSV and the `/ui/` page.
//! Everything is recomputed from the ledger on each request (read through
//! `Ledger::search`); there is no second copy of the data.

pub mod csv;
pub mod events;
pub mod overrides;
pub mod stats;
pub mod ui;
pub mod versions;
