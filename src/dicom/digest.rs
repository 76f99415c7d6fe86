//! Instance digests (`pixel-sha256`, docs/dicom.md) of Part 10 files: the
//! header is read with dicom-object (only up to the pixel elements), the
//! pixel value is hashed by the bounded-memory walker in `walk.rs`.
//!
//! Memory: at most one [`walk::CHUNK`] buffer plus a 64 KiB read buffer and
//! the header's elements per file being hashed; [`hash_files`] runs one
//! file per worker, so `workers × (CHUNK + 64 KiB + header)` whatever the
//! size of the images or the study.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::OpenFileOptions;
use serde::Serialize;

use super::walk::{self, Located, PixelHash, WalkError};
use crate::config::HeaderLimits;

/// A hashed instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceDigest {
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    /// `7FE00010`, `7FE00008` or `7FE00009`.
    pub pixel_element: String,
    pub encapsulated: bool,
    /// Bytes fed to SHA-256.
    pub pixel_bytes: u64,
    #[serde(serialize_with = "as_hex")]
    pub sha256: [u8; 32],
}

fn as_hex<S: serde::Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(d))
}

impl InstanceDigest {
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }

    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sha256)
    }
}

/// Why a file was not hashed. Every variant is reported, never hidden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("not a DICOM Part 10 file (no DICM marker)")]
    NotDicom,
    #[error("no pixel data (SOP Class {sop_class}{kind})")]
    NoPixelData {
        sop_class: String,
        kind: &'static str,
    },
    #[error("pixel data element is empty")]
    EmptyPixelData,
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// Not accepted as an instance at all (e.g. an upload part of another
    /// media type).
    #[error("{0}")]
    Refused(String),
}

/// The result for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Hashed(InstanceDigest),
    Skipped(SkipReason),
}

/// A failure of the machine rather than of the file (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the header says about the instance.
struct Header {
    sop_instance_uid: String,
    study_instance_uid: String,
    series_instance_uid: String,
    sop_class_uid: String,
    transfer_syntax: String,
    bits_allocated: Option<u16>,
}

fn trimmed(s: &str) -> String {
    s.trim_end_matches(['\0', ' ']).to_string()
}

/// Reads the header (everything before Float Pixel Data, the first pixel
/// element in tag order) with dicom-object.
fn read_header(path: &Path) -> Result<Header, String> {
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Auto)
        .read_until(Tag(0x7FE0, 0x0008))
        .open_file(path)
        .map_err(|e| e.to_string())?;
    let text = |tag: Tag| -> String {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| trimmed(&s))
            .unwrap_or_default()
    };
    let meta = obj.meta();
    let mut sop_instance_uid = text(tags::SOP_INSTANCE_UID);
    if sop_instance_uid.is_empty() {
        sop_instance_uid = trimmed(&meta.media_storage_sop_instance_uid);
    }
    let mut sop_class_uid = text(tags::SOP_CLASS_UID);
    if sop_class_uid.is_empty() {
        sop_class_uid = trimmed(&meta.media_storage_sop_class_uid);
    }
    let bits_allocated = obj
        .element_opt(tags::BITS_ALLOCATED)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u16>().ok());
    Ok(Header {
        sop_instance_uid,
        study_instance_uid: text(tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(tags::SERIES_INSTANCE_UID),
        sop_class_uid,
        transfer_syntax: trimmed(meta.transfer_syntax()),
        bits_allocated,
    })
}

/// A short word for SOP classes that have no pixel data by design.
fn non_image_kind(sop_class: &str) -> &'static str {
    if sop_class.starts_with("1.2.840.10008.5.1.4.1.1.88.59") {
        ", key object selection"
    } else if sop_class.starts_with("1.2.840.10008.5.1.4.1.1.88.") {
        ", structured report"
    } else if sop_class.starts_with("1.2.840.10008.5.1.4.1.1.11.") {
        ", presentation state"
    } else {
        ""
    }
}

/// Does the file carry the Part 10 `DICM` marker (with or without preamble)?
fn has_dicm_marker(file: &mut File) -> std::io::Result<bool> {
    let mut head = [0u8; 132];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok((n >= 132 && &head[128..132] == b"DICM") || (n >= 4 && &head[..4] == b"DICM"))
}

/// Hashes one file; a header over `limits` is refused before dicom-object
/// reads it.
pub fn hash_file(path: &Path, limits: &HeaderLimits) -> Result<Outcome, DigestError> {
    let io = |source| DigestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    if !has_dicm_marker(&mut file).map_err(io)? {
        return Ok(Outcome::Skipped(SkipReason::NotDicom));
    }
    // The hand-written walk first: it checks every length against the file
    // without allocating, so a malformed header is refused before dicom-object
    // (which would allocate whatever length it reads) sees it.
    let (meta, located) = match walk::locate(file, limits) {
        Ok(l) => l,
        Err(WalkError::Io(source)) => return Err(io(source)),
        Err(WalkError::Limit(why)) => return Ok(Outcome::Skipped(SkipReason::Refused(why))),
        Err(e) => return Ok(Outcome::Skipped(SkipReason::Unreadable(e.to_string()))),
    };
    // Nothing to hash: no need for dicom-object (which can take minutes
    // on some odd headers, e.g. private UN sequences).
    match located {
        Located::Absent => {
            return Ok(Outcome::Skipped(SkipReason::NoPixelData {
                kind: non_image_kind(&meta.sop_class),
                sop_class: meta.sop_class,
            }))
        }
        Located::Empty { .. } => return Ok(Outcome::Skipped(SkipReason::EmptyPixelData)),
        Located::Pixel(_) => {}
    }
    let header = match read_header(path) {
        Ok(h) => h,
        Err(e) => return Ok(Outcome::Skipped(SkipReason::Unreadable(e))),
    };
    let pixels = match located {
        Located::Absent => PixelHash::Absent,
        Located::Empty { tag } => PixelHash::Empty { tag },
        Located::Pixel(p) => match p.hash(header.bits_allocated) {
            Ok(p) => p,
            Err(WalkError::Io(source)) => return Err(io(source)),
            Err(e) => return Ok(Outcome::Skipped(SkipReason::Unreadable(e.to_string()))),
        },
    };
    Ok(match pixels {
        PixelHash::Absent => Outcome::Skipped(SkipReason::NoPixelData {
            kind: non_image_kind(&header.sop_class_uid),
            sop_class: header.sop_class_uid,
        }),
        PixelHash::Empty { .. } => Outcome::Skipped(SkipReason::EmptyPixelData),
        PixelHash::Hashed {
            tag,
            encapsulated,
            bytes,
            sha256,
        } => Outcome::Hashed({
            crate::metrics::global().dicom_digest_bytes.inc_by(bytes);
            InstanceDigest {
                sop_instance_uid: header.sop_instance_uid,
                study_instance_uid: header.study_instance_uid,
                series_instance_uid: header.series_instance_uid,
                sop_class_uid: header.sop_class_uid,
                transfer_syntax: header.transfer_syntax,
                pixel_element: format!("{:04X}{:04X}", tag.0, tag.1),
                encapsulated,
                pixel_bytes: bytes,
                sha256,
            }
        }),
    })
}

/// Hashes `paths` on `workers` threads (one file per worker at a time, so
/// memory stays at `workers ×` the per-file bound). Results are in the
/// order of `paths`.
pub fn hash_files(
    paths: &[PathBuf],
    workers: usize,
    limits: &HeaderLimits,
) -> Vec<Result<Outcome, DigestError>> {
    let mut results: Vec<Option<Result<Outcome, DigestError>>> =
        (0..paths.len()).map(|_| None).collect();
    hash_files_each(paths, workers, limits, |i, r| results[i] = Some(r));
    results
        .into_iter()
        .zip(paths)
        .map(|(r, p)| {
            r.unwrap_or_else(|| {
                Err(DigestError::Io {
                    path: p.clone(),
                    source: std::io::Error::other("hashing worker failed"),
                })
            })
        })
        .collect()
}

/// [`hash_files`], handing each result to `found` (on the calling thread)
/// as soon as it is ready, with its index in `paths`: in completion order.
pub fn hash_files_each(
    paths: &[PathBuf],
    workers: usize,
    limits: &HeaderLimits,
    mut found: impl FnMut(usize, Result<Outcome, DigestError>),
) {
    let workers = workers.clamp(1, paths.len().max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                if tx.send((i, hash_file(path, limits))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            found(i, r);
        }
    });
}

/// Worker count for hashing: every core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The UIDs a folder index needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uids {
    pub study: String,
    pub series: String,
    pub sop: String,
}

/// Reads only the header of `path` (no pixel data).
pub fn read_uids(path: &Path, limits: &HeaderLimits) -> Result<Uids, SkipReason> {
    let mut file = File::open(path).map_err(|e| SkipReason::Unreadable(e.to_string()))?;
    if !has_dicm_marker(&mut file).map_err(|e| SkipReason::Unreadable(e.to_string()))? {
        return Err(SkipReason::NotDicom);
    }
    // Structure checked first, as in `hash_file`.
    walk::locate(file, limits).map_err(|e| match e {
        WalkError::Limit(why) => SkipReason::Refused(why),
        e => SkipReason::Unreadable(e.to_string()),
    })?;
    let h = read_header(path).map_err(SkipReason::Unreadable)?;
    Ok(Uids {
        study: h.study_instance_uid,
        series: h.series_instance_uid,
        sop: h.sop_instance_uid,
    })
}
