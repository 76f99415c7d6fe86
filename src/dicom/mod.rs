//! DICOM pixel-data digests (docs/dicom.md): instance digests of Part 10 files
//! hashed in bounded memory, study digests, the sources studies are found
//! in (folders, DICOMweb, uploads), the digest cache, and the step that
//! attaches digests to events, and the worker that completes pending
//! digests with follow-up events.

pub mod check;
pub mod dicomweb;
pub mod digest;
pub mod enrich;
pub mod folder;
pub mod followup;
pub mod index;
pub mod multipart;
pub mod report;
pub mod service;
pub mod spool;
pub mod study;
pub mod verify;
pub mod walk;

pub use digest::{hash_file, hash_files, DigestError, InstanceDigest, Outcome, SkipReason};
pub use study::{study_digest, study_digests, StudyDigest};
