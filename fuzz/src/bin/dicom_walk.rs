//! The DICOM walker (src/dicom/walk.rs): the input is written to a file
//! (the walker reads files: uploads are spooled first) and walked to its
//! pixel element under the default header limits, then hashed.
use std::io::{Seek, Write};

use vellum::config::HeaderLimits;
use vellum::dicom::walk::{locate, Located};

fn main() {
    let dir = std::env::var_os("VELLUM_FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into());
    let path = std::path::Path::new(&dir).join(format!("vellum-fuzz-walk-{}", std::process::id()));
    let limits = HeaderLimits::default();
    afl::fuzz!(|data: &[u8]| {
        // Read and write: File::create alone opens write-only, and the
        // walker's first read would fail on every input.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("scratch file");
        f.write_all(data).expect("write");
        f.rewind().expect("rewind");
        if let Ok((_, Located::Pixel(p))) = locate(f, &limits) {
            let _ = p.hash(Some(16));
        }
    });
}
