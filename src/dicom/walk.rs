//! Hand-written, bounded-memory pixel hashing: walk a Part 10 file's
//! elements to the top-level pixel element without reading values into
//! memory, then hash the value in fixed-size chunks (docs/dicom.md).
//!
//! dicom-object cannot do this: it loads whole files, and its streaming
//! collector returns native pixel data as one `Vec` (CRATES.md). This walker
//! only understands what finding the pixel element needs: element headers in
//! the three stream encodings, items, delimiters, and undefined-length
//! sequences (skipped, so icon images nested in sequences are never hashed).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use flate2::bufread::DeflateDecoder;
use sha2::{Digest, Sha256};

use crate::config::HeaderLimits;

/// Bytes read and hashed per step: the per-worker memory bound.
pub const CHUNK: usize = 1 << 20;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
/// Float Pixel Data, Double Float Pixel Data, Pixel Data: in tag order, so
/// the first met is the instance's pixel element.
pub const PIXEL_TAGS: [(u16, u16); 3] = [(0x7FE0, 0x0008), (0x7FE0, 0x0009), (0x7FE0, 0x0010)];

/// Limits nesting so a hostile file cannot recurse without bound.
const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("file ends inside an element (truncated)")]
    Truncated,
    #[error("malformed data set: {0}")]
    Malformed(String),
    /// Over a configured bound on the header (names the setting).
    #[error("{0}")]
    Limit(String),
}

fn read_err(e: io::Error) -> WalkError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        WalkError::Truncated
    } else {
        WalkError::Io(e)
    }
}

/// How the data set after the file meta group is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
    /// The whole data set is a raw deflate stream (1.2.840.10008.1.2.1.99).
    pub deflated: bool,
}

impl Encoding {
    /// From a transfer syntax UID. Every syntax other than the three native
    /// ones below is explicit VR little endian (PS3.5 §10, Annex A).
    pub fn of_transfer_syntax(uid: &str) -> Encoding {
        let uid = uid.trim_end_matches(['\0', ' ']);
        Encoding {
            explicit_vr: uid != "1.2.840.10008.1.2",
            big_endian: uid == "1.2.840.10008.1.2.2",
            deflated: uid == "1.2.840.10008.1.2.1.99",
        }
    }
}

/// What hashing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelHash {
    Hashed {
        tag: (u16, u16),
        encapsulated: bool,
        /// Bytes fed to SHA-256.
        bytes: u64,
        sha256: [u8; 32],
    },
    /// No top-level pixel element.
    Absent,
    /// The pixel element is there but has no value.
    Empty { tag: (u16, u16) },
}

/// Byte source that can also skip forward (seek on files, read-and-discard
/// on the inflated stream).
enum Input {
    File(BufReader<File>),
    Deflated(Box<DeflateDecoder<BufReader<File>>>),
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::File(r) => r.read(buf),
            Input::Deflated(r) => r.read(buf),
        }
    }
}

impl Input {
    fn skip(&mut self, n: u64) -> Result<(), WalkError> {
        match self {
            Input::File(r) => {
                // seek_relative keeps the buffer when the target is inside it;
                // seeking past the end is only noticed by the next read.
                let n = i64::try_from(n).map_err(|_| WalkError::Truncated)?;
                r.seek_relative(n)?;
                Ok(())
            }
            Input::Deflated(r) => {
                let copied = io::copy(&mut r.by_ref().take(n), &mut io::sink())?;
                if copied < n {
                    return Err(WalkError::Truncated);
                }
                Ok(())
            }
        }
    }
}

/// Reads little-endian numbers from the file meta group.
fn read_u16_le(r: &mut impl Read) -> Result<u16, WalkError> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b).map_err(read_err)?;
    Ok(u16::from_le_bytes(b))
}

fn read_u32_le(r: &mut impl Read) -> Result<u32, WalkError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(read_err)?;
    Ok(u32::from_le_bytes(b))
}

/// Value representations whose explicit-VR header has a 4-byte length.
fn long_length_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// Positions `file` at the first element of the data set: after the
/// optional 128-byte preamble, the `DICM` marker and the file meta group
/// (group 0002, always explicit VR little endian). Returns the data set's
/// offset and the Transfer Syntax UID (0002,0010) and Media Storage SOP
/// Class UID (0002,0002).
fn skip_file_meta(
    r: &mut BufReader<File>,
    limits: &HeaderLimits,
) -> Result<(u64, FileMeta), WalkError> {
    r.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 132];
    let n = read_up_to(r, &mut head)?;
    let mut pos: u64 = if n >= 132 && &head[128..132] == b"DICM" {
        132
    } else if n >= 4 && &head[0..4] == b"DICM" {
        4
    } else {
        return Err(WalkError::Malformed("no DICM marker".into()));
    };
    r.seek(SeekFrom::Start(pos))?;
    let mut ts = String::new();
    let mut sop_class = String::new();
    loop {
        let group = match read_u16_le(r) {
            Ok(g) => g,
            Err(WalkError::Truncated) => break, // meta only, no data set
            Err(e) => return Err(e),
        };
        if group != 0x0002 {
            break;
        }
        let element = read_u16_le(r)?;
        let mut vr = [0u8; 2];
        r.read_exact(&mut vr).map_err(read_err)?;
        let (len, header) = if long_length_vr(vr) {
            let _reserved = read_u16_le(r)?;
            (read_u32_le(r)?, 12)
        } else {
            (u32::from(read_u16_le(r)?), 8)
        };
        if len == UNDEFINED {
            return Err(WalkError::Malformed(
                "undefined length in the file meta group".into(),
            ));
        }
        check_header_limits(limits, pos + header, u64::from(len), Some(vr))?;
        if matches!(element, 0x0002 | 0x0010) && len <= 64 {
            let mut v = vec![0u8; len as usize];
            r.read_exact(&mut v).map_err(read_err)?;
            let text = String::from_utf8_lossy(&v)
                .trim_end_matches(['\0', ' '])
                .to_string();
            if element == 0x0010 {
                ts = text;
            } else {
                sop_class = text;
            }
        } else {
            r.seek_relative(i64::from(len))?;
        }
        pos += header + u64::from(len);
    }
    r.seek(SeekFrom::Start(pos))?;
    if ts.is_empty() {
        return Err(WalkError::Malformed(
            "no Transfer Syntax UID in the file meta".into(),
        ));
    }
    Ok((
        pos,
        FileMeta {
            transfer_syntax: ts,
            sop_class,
        },
    ))
}

/// What the walker reads from the file meta group.
#[derive(Debug, Clone, Default)]
pub struct FileMeta {
    pub transfer_syntax: String,
    /// Media Storage SOP Class UID.
    pub sop_class: String,
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, WalkError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// One element header as read from the stream.
#[derive(Debug, Clone, Copy)]
struct Header {
    tag: (u16, u16),
    vr: Option<[u8; 2]>,
    len: u32,
}

/// Longest non-pixel element accepted in a deflated data set, whose real
/// length cannot be known in advance (no header element is near this).
const MAX_DEFLATED_ELEMENT: u64 = 256 << 20;

/// Refuses an element of `len` bytes starting at header offset `pos` when
/// it would take the header (everything before the pixel element) over
/// `dicom.max_header_bytes`, or is itself over `dicom.max_element_bytes`
/// (a defined-length sequence is bounded by the header limit only).
fn check_header_limits(
    limits: &HeaderLimits,
    pos: u64,
    len: u64,
    vr: Option<[u8; 2]>,
) -> Result<(), WalkError> {
    if len > limits.max_element_bytes && vr != Some(*b"SQ") {
        return Err(WalkError::Limit(format!(
            "a header element of {len} bytes is over dicom.max_element_bytes ({} bytes)",
            limits.max_element_bytes
        )));
    }
    if pos.saturating_add(len) > limits.max_header_bytes {
        return Err(WalkError::Limit(format!(
            "the header before the pixel data is over dicom.max_header_bytes ({} bytes)",
            limits.max_header_bytes
        )));
    }
    Ok(())
}

pub struct Walker {
    input: Input,
    big_endian: bool,
    explicit_vr: bool,
    /// Bytes consumed since the start of the data set.
    pos: u64,
    /// Bytes of the data set in the file (None when deflated).
    available: Option<u64>,
    /// Bytes before the data set (preamble and file meta group).
    meta_len: u64,
    /// Bounds on the header, while walking to the pixel element (`None`
    /// once there: the pixel value is streamed, never held).
    limits: Option<HeaderLimits>,
}

impl Walker {
    /// Refuses a length the data set cannot hold, before anything relies on
    /// it: malformed files fail fast instead of being read for minutes.
    fn check_len(&self, len: u32) -> Result<(), WalkError> {
        let len = u64::from(len);
        match self.available {
            Some(total) if self.pos + len > total => Err(WalkError::Truncated),
            None if len > MAX_DEFLATED_ELEMENT => Err(WalkError::Malformed(format!(
                "element of {len} bytes in a deflated data set"
            ))),
            _ => Ok(()),
        }
    }

    /// The header bounds for an element of `len` bytes about to be read.
    fn check_header(&self, len: u32, vr: Option<[u8; 2]>) -> Result<(), WalkError> {
        match &self.limits {
            Some(l) => check_header_limits(l, self.meta_len + self.pos, u64::from(len), vr),
            None => Ok(()),
        }
    }

    fn skip(&mut self, len: u32) -> Result<(), WalkError> {
        self.check_len(len)?;
        self.input.skip(u64::from(len))?;
        self.pos += u64::from(len);
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), WalkError> {
        self.input.read_exact(buf).map_err(read_err)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// The next element header; `None` at a clean end of the stream.
    fn header(&mut self, explicit_vr: bool) -> Result<Option<Header>, WalkError> {
        let mut tag = [0u8; 4];
        let n = read_up_to(&mut self.input, &mut tag)?;
        self.pos += n as u64;
        if n == 0 {
            return Ok(None);
        }
        if n < 4 {
            return Err(WalkError::Truncated);
        }
        let tag = (self.u16([tag[0], tag[1]]), self.u16([tag[2], tag[3]]));
        let mut b4 = [0u8; 4];
        if tag.0 == 0xFFFE || !explicit_vr {
            // Items and delimiters never carry a VR, nor does implicit VR.
            self.read_exact(&mut b4)?;
            return Ok(Some(Header {
                tag,
                vr: None,
                len: self.u32(b4),
            }));
        }
        let mut vr = [0u8; 2];
        self.read_exact(&mut vr)?;
        let len = if long_length_vr(vr) {
            let mut reserved = [0u8; 2];
            self.read_exact(&mut reserved)?;
            self.read_exact(&mut b4)?;
            self.u32(b4)
        } else {
            let mut b2 = [0u8; 2];
            self.read_exact(&mut b2)?;
            u32::from(self.u16(b2))
        };
        Ok(Some(Header {
            tag,
            vr: Some(vr),
            len,
        }))
    }

    /// Skips the value of an element whose header was just read.
    fn skip_value(&mut self, h: Header, explicit_vr: bool, depth: usize) -> Result<(), WalkError> {
        // Every element before the pixel element passes here (nested ones
        // too): dicom-object would hold each in memory.
        self.check_header(if h.len == UNDEFINED { 0 } else { h.len }, h.vr)?;
        if h.len != UNDEFINED {
            return self.skip(h.len);
        }
        // Undefined length: a sequence, or encapsulated data nested in one.
        // UN with undefined length holds implicit VR little endian content
        // (PS3.5 §6.2.2).
        let inner_explicit = explicit_vr && h.vr != Some(*b"UN");
        self.skip_items(inner_explicit, depth + 1)
    }

    /// Skips items up to and including the sequence delimiter.
    fn skip_items(&mut self, explicit_vr: bool, depth: usize) -> Result<(), WalkError> {
        if depth > MAX_DEPTH {
            return Err(WalkError::Malformed("sequences nested too deeply".into()));
        }
        loop {
            let h = self.header(explicit_vr)?.ok_or(WalkError::Truncated)?;
            match h.tag {
                SEQUENCE_END => return Ok(()),
                ITEM if h.len == UNDEFINED => self.skip_dataset(explicit_vr, depth + 1)?,
                ITEM => {
                    // A nested data set: bounded by the header limit alone.
                    self.check_header(h.len, Some(*b"SQ"))?;
                    self.skip(h.len)?
                }
                t => {
                    return Err(WalkError::Malformed(format!(
                        "({:04X},{:04X}) where an item was expected",
                        t.0, t.1
                    )))
                }
            }
        }
    }

    /// Skips a nested data set up to and including its item delimiter.
    fn skip_dataset(&mut self, explicit_vr: bool, depth: usize) -> Result<(), WalkError> {
        if depth > MAX_DEPTH {
            return Err(WalkError::Malformed("sequences nested too deeply".into()));
        }
        loop {
            let h = self.header(explicit_vr)?.ok_or(WalkError::Truncated)?;
            if h.tag == ITEM_END {
                return Ok(());
            }
            self.skip_value(h, explicit_vr, depth)?;
        }
    }

    /// Walks the top-level data set to the first pixel element.
    fn locate(&mut self) -> Result<Option<Header>, WalkError> {
        while let Some(h) = self.header(self.explicit_vr)? {
            if PIXEL_TAGS.contains(&h.tag) {
                return Ok(Some(h));
            }
            if h.tag > PIXEL_TAGS[2] {
                // Past the pixel elements in tag order (trailing padding, a
                // stray delimiter): there is none.
                break;
            }
            self.skip_value(h, self.explicit_vr, 0)?;
        }
        Ok(None)
    }

    /// Native pixel data: the value in chunks, byte-swapped if big endian.
    fn hash_native(
        mut self,
        h: Header,
        bits_allocated: Option<u16>,
    ) -> Result<PixelHash, WalkError> {
        self.check_len(h.len)?;
        let swap = if self.big_endian {
            swap_size(h.vr, bits_allocated)
        } else {
            1
        };
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        copy_hashed(&mut self.input, u64::from(h.len), swap, &mut sha, &mut buf)?;
        Ok(PixelHash::Hashed {
            tag: h.tag,
            encapsulated: false,
            bytes: u64::from(h.len),
            sha256: sha.finalize().into(),
        })
    }

    /// Encapsulated pixel data: hash every fragment's value, skipping the
    /// Basic Offset Table (the first item) and all item headers.
    fn hash_fragments(mut self, tag: (u16, u16)) -> Result<PixelHash, WalkError> {
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut bytes = 0u64;
        let mut first = true;
        loop {
            // Items inside encapsulated data have no VR in any encoding.
            let h = self.header(false)?.ok_or(WalkError::Truncated)?;
            match h.tag {
                SEQUENCE_END => break,
                ITEM if h.len == UNDEFINED => {
                    return Err(WalkError::Malformed(
                        "encapsulated pixel data item of undefined length".into(),
                    ))
                }
                ITEM if first => self.skip(h.len)?,
                ITEM => {
                    self.check_len(h.len)?;
                    copy_hashed(&mut self.input, u64::from(h.len), 1, &mut sha, &mut buf)?;
                    self.pos += u64::from(h.len);
                    bytes += u64::from(h.len);
                }
                t => {
                    return Err(WalkError::Malformed(format!(
                        "({:04X},{:04X}) inside encapsulated pixel data",
                        t.0, t.1
                    )))
                }
            }
            first = false;
        }
        Ok(PixelHash::Hashed {
            tag,
            encapsulated: true,
            bytes,
            sha256: sha.finalize().into(),
        })
    }
}

/// Bytes per sample to byte-swap in big-endian native data (docs/dicom.md).
pub fn swap_size(vr: Option<[u8; 2]>, bits_allocated: Option<u16>) -> usize {
    match vr.as_ref().map(|v| &v[..]) {
        Some(b"OF") => 4,
        Some(b"OD") => 8,
        Some(b"OW") => match bits_allocated {
            Some(b) if b > 16 && b % 8 == 0 => usize::from(b / 8),
            _ => 2,
        },
        _ => 1,
    }
}

/// Reverses every whole `size`-byte sample of `buf` in place.
pub fn swap_in_place(buf: &mut [u8], size: usize) {
    if size > 1 {
        for sample in buf.chunks_exact_mut(size) {
            sample.reverse();
        }
    }
}

/// Hashes exactly `len` bytes from `r` in `buf`-sized steps, swapping
/// samples of `swap` bytes. `buf.len()` is a multiple of every swap size,
/// so no sample straddles two steps; a trailing partial sample (never valid
/// DICOM) is hashed as stored.
fn copy_hashed(
    r: &mut impl Read,
    len: u64,
    swap: usize,
    sha: &mut Sha256,
    buf: &mut [u8],
) -> Result<(), WalkError> {
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let chunk = &mut buf[..n];
        r.read_exact(chunk).map_err(read_err)?;
        swap_in_place(chunk, swap);
        sha.update(&*chunk);
        left -= n as u64;
    }
    Ok(())
}

/// Where the walk to the pixel element ended.
pub enum Located {
    /// At the pixel element's value, ready to hash.
    Pixel(Box<PixelElement>),
    /// No top-level pixel element.
    Absent,
    /// The pixel element is there but has no value.
    Empty { tag: (u16, u16) },
}

pub struct PixelElement {
    walker: Walker,
    header: Header,
}

impl PixelElement {
    /// Hashes the value (docs/dicom.md). `bits_allocated` (from the header)
    /// decides the sample size of big-endian OW data.
    pub fn hash(self, bits_allocated: Option<u16>) -> Result<PixelHash, WalkError> {
        if self.header.len == UNDEFINED {
            self.walker.hash_fragments(self.header.tag)
        } else {
            self.walker.hash_native(self.header, bits_allocated)
        }
    }
}

/// Walks a Part 10 file (its transfer syntax read from its file meta) to
/// its pixel element, checking every length against the data actually
/// there. Returns the file meta and where the walk ended.
pub fn locate(file: File, limits: &HeaderLimits) -> Result<(FileMeta, Located), WalkError> {
    let file_len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let (start, meta) = skip_file_meta(&mut r, limits)?;
    let enc = Encoding::of_transfer_syntax(&meta.transfer_syntax);
    let input = if enc.deflated {
        Input::Deflated(Box::new(DeflateDecoder::new(r)))
    } else {
        Input::File(r)
    };
    let mut walker = Walker {
        input,
        big_endian: enc.big_endian,
        explicit_vr: enc.explicit_vr,
        pos: 0,
        available: (!enc.deflated).then(|| file_len.saturating_sub(start)),
        meta_len: start,
        limits: Some(*limits),
    };
    let located = match walker.locate()? {
        None => Located::Absent,
        Some(h) if h.len == 0 => Located::Empty { tag: h.tag },
        Some(header) => {
            walker.limits = None;
            Located::Pixel(Box::new(PixelElement { walker, header }))
        }
    };
    Ok((meta, located))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A Part 10 file: explicit VR little endian meta, then `dataset`.
    fn part10(dataset: &[u8]) -> tempfile::NamedTempFile {
        let ts = b"1.2.840.10008.1.2.1\0";
        let mut meta = Vec::new();
        meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        meta.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        meta.extend_from_slice(ts);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0u8; 128]).unwrap();
        f.write_all(b"DICM").unwrap();
        f.write_all(&meta).unwrap();
        f.write_all(dataset).unwrap();
        f
    }

    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&tag.0.to_le_bytes());
        e.extend_from_slice(&tag.1.to_le_bytes());
        e.extend_from_slice(vr);
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&(value.len() as u32).to_le_bytes());
        e.extend_from_slice(value);
        e
    }

    fn hash(f: &tempfile::NamedTempFile) -> Result<PixelHash, WalkError> {
        match locate(File::open(f.path())?, &HeaderLimits::default())?.1 {
            Located::Pixel(p) => p.hash(Some(8)),
            Located::Absent => Ok(PixelHash::Absent),
            Located::Empty { tag } => Ok(PixelHash::Empty { tag }),
        }
    }

    #[test]
    fn a_length_beyond_the_file_is_refused_without_reading_it() {
        // (0009,0010) OB claiming 4 GiB in a file of a few hundred bytes.
        let mut ds = vec![0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0];
        ds.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        // (The header bound refuses it first.)
        assert!(matches!(
            hash(&part10(&ds)),
            Err(WalkError::Truncated | WalkError::Limit(_))
        ));
        // The pixel value itself too.
        let mut ds = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        ds.extend_from_slice(&1000u32.to_le_bytes());
        ds.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(hash(&part10(&ds)), Err(WalkError::Truncated)));
    }

    #[test]
    fn pixel_data_nested_in_a_sequence_is_not_the_instances() {
        // (0088,0200) SQ of undefined length holding an item with pixel data,
        // then the top-level pixel data.
        let mut ds = vec![
            0x88, 0x00, 0x00, 0x02, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        ds.extend_from_slice(&element((0x7FE0, 0x0010), b"OB", b"icon"));
        ds.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        ds.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        ds.extend_from_slice(&element((0x7FE0, 0x0010), b"OB", b"real"));
        match hash(&part10(&ds)).unwrap() {
            PixelHash::Hashed { sha256, bytes, .. } => {
                assert_eq!(bytes, 4);
                assert_eq!(sha256, <[u8; 32]>::from(Sha256::digest(b"real")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unterminated_nesting_is_refused_not_followed_forever() {
        let mut ds = Vec::new();
        for _ in 0..100 {
            ds.extend_from_slice(&[
                0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(matches!(hash(&part10(&ds)), Err(WalkError::Malformed(_))));
    }

    #[test]
    fn big_endian_samples_are_swapped_by_their_size() {
        let mut b = *b"\x01\x02\x03\x04\x05\x06\x07\x08\x09";
        swap_in_place(&mut b, 4);
        assert_eq!(&b, b"\x04\x03\x02\x01\x08\x07\x06\x05\x09");
        assert_eq!(swap_size(Some(*b"OW"), Some(8)), 2);
        assert_eq!(swap_size(Some(*b"OW"), Some(32)), 4);
        assert_eq!(swap_size(Some(*b"OF"), None), 4);
        assert_eq!(swap_size(Some(*b"OD"), None), 8);
        assert_eq!(swap_size(Some(*b"OB"), Some(16)), 1);
    }
}
