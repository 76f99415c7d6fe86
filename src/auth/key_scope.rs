//! Idempotency keys scoped to their sender: `<key>␟<sender>␞<request
//! digest>`. Two senders never share a key, so one can neither answer nor
//! block the other's retries; the digest tells a retry (same request) from
//! a reused id (another request).

/// Between a key and its sender (U+001F UNIT SEPARATOR: in no key part).
pub const SCOPE_SEPARATOR: char = '\u{1f}';
/// Between a scoped key and the digest of its request (U+001E).
pub const DIGEST_SEPARATOR: char = '\u{1e}';

/// `key` within `sender`'s scope (unchanged without a sender).
pub fn scoped_key(key: &str, sender: Option<&str>) -> String {
    match sender {
        Some(s) => format!("{key}{SCOPE_SEPARATOR}{s}"),
        None => key.to_string(),
    }
}

/// The prefix every stored key of `key` in `sender`'s scope starts with,
/// whatever request made it.
pub fn scoped_prefix(key: &str, sender: Option<&str>) -> String {
    format!("{}{DIGEST_SEPARATOR}", scoped_key(key, sender))
}
