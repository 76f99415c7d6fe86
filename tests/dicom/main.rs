//! DICOM pixel digests, study sources, uploads and pending studies.

mod dicom_bombs;
mod dicom_digests;
mod dicom_pending;
mod dicom_sources;
mod dicom_upload;
