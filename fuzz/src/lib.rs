//! Shared helpers of the fuzz targets (src/bin/*.rs, one per parser).

/// The first byte of a fuzz input as a chunk size (1..=256), the rest as
/// the data: streaming parsers are fed in the pieces the fuzzer chooses,
/// so every split point of a buffer is explored.
pub fn chunked(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (usize::from(*first) + 1, rest),
        None => (1, data),
    }
}
