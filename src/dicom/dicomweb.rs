//! DICOMweb study source: QIDO-RS lists a study's instances
//! (`GET {base}/studies/{uid}/instances`), WADO-RS fetches each one
//! (`GET {base}/studies/{uid}/series/{s}/instances/{i}`, multipart/related)
//! streaming to a temporary file that is hashed and removed. Instance
//! digests are cached by base URL + SOP Instance UID (with size and ETag),
//! so a study referenced by many events is fetched once.
//!
//! Client: reqwest (already the project's test client; here with the
//! `stream` feature to pass the body through chunk by chunk, and
//! `native-tls`, i.e. the system OpenSSL the server already links).
//! Instances are fetched and hashed one at a time, so at most one spooled
//! instance exists per study lookup.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::digest::{hash_file, Outcome};
use super::folder::{parse_hex, StudyFound};
use super::index::{IndexFile, RemoteEntry, SharedIndex};
use super::multipart::{boundary_of, PartSink, Splitter};
use super::spool::Spool;
use super::study::study_digest;
use crate::config::HeaderLimits;

/// Instances listed per QIDO-RS page.
const PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum DicomWebError {
    #[error("DICOMweb request {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("DICOMweb answer of {url} is malformed: {reason}")]
    Malformed { url: String, reason: String },
    #[error("cannot spool a DICOMweb instance: {0}")]
    Spool(String),
    #[error("cannot write the index: {0}")]
    Save(std::io::Error),
}

pub struct DicomWebSource {
    base: String,
    client: reqwest::Client,
    index: Arc<SharedIndex>,
    header: HeaderLimits,
}

/// A UID is safe to put in a URL path only when it is digits and dots.
fn is_uid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl DicomWebSource {
    pub fn new(
        base: String,
        timeout: Duration,
        index: Arc<SharedIndex>,
        header: HeaderLimits,
    ) -> Result<Self, DicomWebError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| DicomWebError::Request {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(DicomWebSource {
            base,
            client,
            index,
            header,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The study's digest from the server; `None` when it does not know
    /// the study.
    pub async fn study(&self, study_uid: &str) -> Result<Option<StudyFound>, DicomWebError> {
        if !is_uid(study_uid) {
            return Ok(None);
        }
        let listed = self.instances(study_uid).await?;
        if listed.is_empty() {
            return Ok(None);
        }
        let mut members = Vec::new();
        let (mut skipped, mut cached) = (0, 0);
        for (series, sop) in listed {
            let key = IndexFile::remote_key(&self.base, &sop);
            let hit = self
                .index
                .lock()
                .remote
                .get(&key)
                .filter(|e| e.study == study_uid)
                .and_then(|e| parse_hex(&e.digest));
            if let Some(d) = hit {
                members.push((sop, d));
                cached += 1;
                continue;
            }
            match self.fetch_and_hash(study_uid, &series, &sop).await? {
                (Outcome::Hashed(d), size, etag) => {
                    let mut index = self.index.lock();
                    index.remote.insert(
                        key,
                        RemoteEntry {
                            study: study_uid.to_string(),
                            size,
                            etag,
                            digest: d.hex(),
                        },
                    );
                    self.index.save(&index).map_err(DicomWebError::Save)?;
                    // The UID the file declares is the one hashed.
                    members.push((d.sop_instance_uid, d.sha256));
                }
                (Outcome::Skipped(_), _, _) => skipped += 1,
            }
        }
        let digest = study_digest(study_uid, members.iter().map(|(s, d)| (s.as_str(), *d)));
        Ok(Some(StudyFound {
            digest,
            skipped,
            cached,
        }))
    }

    /// QIDO-RS: (Series, SOP Instance UID) of every instance, all pages.
    async fn instances(&self, study_uid: &str) -> Result<Vec<(String, String)>, DicomWebError> {
        let mut out = Vec::new();
        loop {
            let url = format!(
                "{}/studies/{study_uid}/instances?limit={PAGE}&offset={}",
                self.base,
                out.len()
            );
            let fail = |reason: String| DicomWebError::Request {
                url: url.clone(),
                reason,
            };
            let r = self
                .client
                .get(&url)
                .header("Accept", "application/dicom+json")
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if matches!(r.status().as_u16(), 204 | 404) {
                break;
            }
            if !r.status().is_success() {
                return Err(fail(format!("HTTP {}", r.status())));
            }
            let bytes = r.bytes().await.map_err(|e| fail(e.to_string()))?;
            let v: Value =
                serde_json::from_slice(&bytes).map_err(|e| DicomWebError::Malformed {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            let items = v.as_array().ok_or_else(|| DicomWebError::Malformed {
                url: url.clone(),
                reason: "not a JSON array".into(),
            })?;
            let page = items.len();
            for item in items {
                let tag = |t: &str| {
                    item[t]["Value"][0]
                        .as_str()
                        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                };
                match (tag("0020000E"), tag("00080018")) {
                    (Some(series), Some(sop)) if is_uid(&series) && is_uid(&sop) => {
                        out.push((series, sop))
                    }
                    _ => {
                        return Err(DicomWebError::Malformed {
                            url,
                            reason: "an instance lacks Series or SOP Instance UID".into(),
                        })
                    }
                }
            }
            if page < PAGE {
                break;
            }
        }
        Ok(out)
    }

    /// WADO-RS one instance to a temporary file, then hash it.
    async fn fetch_and_hash(
        &self,
        study: &str,
        series: &str,
        sop: &str,
    ) -> Result<(Outcome, u64, Option<String>), DicomWebError> {
        let url = format!(
            "{}/studies/{study}/series/{series}/instances/{sop}",
            self.base
        );
        let fail = |reason: String| DicomWebError::Request {
            url: url.clone(),
            reason,
        };
        let r = self
            .client
            .get(&url)
            // transfer-syntax=*: as stored (the default would be a transcode).
            .header(
                "Accept",
                "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            )
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("HTTP {}", r.status())));
        }
        let etag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut spool = Spool::new(usize::MAX).map_err(|e| DicomWebError::Spool(e.to_string()))?;
        let mut splitter = if ct.to_ascii_lowercase().starts_with("multipart/") {
            let b = boundary_of(&ct).ok_or_else(|| DicomWebError::Malformed {
                url: url.clone(),
                reason: "multipart answer without a boundary".into(),
            })?;
            Some(Splitter::new(&b))
        } else {
            spool
                .start(1, Some("application/dicom"))
                .map_err(DicomWebError::Spool)?;
            None
        };
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fail(e.to_string()))?;
            match splitter.as_mut() {
                Some(s) => s
                    .push(&chunk, &mut spool)
                    .map_err(|e| DicomWebError::Malformed {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?,
                None => spool.data(&chunk).map_err(DicomWebError::Spool)?,
            }
        }
        match &splitter {
            Some(s) => s.finish().map_err(|e| DicomWebError::Malformed {
                url: url.clone(),
                reason: e.to_string(),
            })?,
            None => spool.end().map_err(DicomWebError::Spool)?,
        }
        let size = spool.bytes as u64;
        let files: Vec<PathBuf> = spool.files();
        let Some(file) = files.first().cloned() else {
            return Err(DicomWebError::Malformed {
                url,
                reason: "no application/dicom part".into(),
            });
        };
        let limits = self.header;
        let outcome = tokio::task::spawn_blocking(move || {
            let r = hash_file(&file, &limits);
            drop(spool); // removes the file
            r
        })
        .await
        .map_err(|e| DicomWebError::Spool(e.to_string()))?
        .map_err(|e| DicomWebError::Spool(e.to_string()))?;
        Ok((outcome, size, etag))
    }
}
