//! QA reports: numbers recounted by brute force from the raw entries, CSV
//! columns, the model-version comparison, the `/ui/` page and the demo
//! data generator, on both backends.

mod browser;
mod clinical_time;
mod drift;
mod forensic;
mod quality;
mod recount;
mod report_api;
mod summary_rows;
