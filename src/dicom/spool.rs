//! Spooling uploaded or downloaded instances to temporary files, so they
//! are hashed from disk in bounded memory. The directory and its files are
//! removed when the `Spool` is dropped.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::multipart::PartSink;

/// One spooled part: its file, or why it was not kept.
pub enum Spooled {
    File(PathBuf),
    Refused(String),
}

/// Most parts (instances) of one upload: each is a spool file.
pub const MAX_PARTS: usize = 10_000;

/// Writes each part to its own file in a private temporary directory.
pub struct Spool {
    dir: tempfile::TempDir,
    pub parts: Vec<(String, Spooled)>,
    current: Option<BufWriter<File>>,
    pub bytes: usize,
    limit: usize,
}

impl Spool {
    pub fn new(limit: usize) -> std::io::Result<Self> {
        Ok(Spool {
            dir: tempfile::Builder::new().prefix("vellum-dicom-").tempdir()?,
            parts: Vec::new(),
            current: None,
            bytes: 0,
            limit,
        })
    }
}

impl PartSink for Spool {
    fn start(&mut self, index: usize, content_type: Option<&str>) -> Result<(), String> {
        if self.parts.len() >= MAX_PARTS {
            return Err(format!(
                "the upload has more than {MAX_PARTS} parts; send the study in several uploads"
            ));
        }
        let name = format!("part {index}");
        match content_type {
            Some("application/dicom") | None => {
                let path = self.dir.path().join(format!("{index}.dcm"));
                let f = File::create(&path).map_err(|e| format!("cannot spool {name}: {e}"))?;
                self.current = Some(BufWriter::with_capacity(256 * 1024, f));
                self.parts.push((name, Spooled::File(path)));
            }
            Some(other) => {
                self.current = None;
                self.parts.push((
                    name,
                    Spooled::Refused(format!("Content-Type {other}, not application/dicom")),
                ));
            }
        }
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.bytes += bytes.len();
        if self.bytes > self.limit {
            return Err(format!("upload exceeds the limit of {} bytes", self.limit));
        }
        if let Some(w) = self.current.as_mut() {
            w.write_all(bytes)
                .map_err(|e| format!("cannot spool: {e}"))?;
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), String> {
        if let Some(mut w) = self.current.take() {
            w.flush().map_err(|e| format!("cannot spool: {e}"))?;
        }
        Ok(())
    }
}

impl Spool {
    /// The spooled files, in part order (refused parts left out).
    pub fn files(&self) -> Vec<PathBuf> {
        self.parts
            .iter()
            .filter_map(|(_, p)| match p {
                Spooled::File(f) => Some(f.clone()),
                Spooled::Refused(_) => None,
            })
            .collect()
    }
}
