//! Entries found by idempotency-key prefix (e.g. every `ai-model:` key:
//! the registered model versions). Read-only, over the `entry_key` table
//! the append transaction writes.

use super::{AnyStore, StoreError, StoredEntry};

/// The first string greater than every string starting with `prefix`
/// (the exclusive upper bound of a range scan on the key index).
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Only U+10FFFF characters: no upper bound smaller than "everything".
    "\u{10FFFF}\u{10FFFF}".repeat(64)
}

impl AnyStore {
    /// `(key, entry)` for every idempotency key starting with `prefix`, in
    /// seq order.
    pub async fn entries_by_key_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, StoredEntry)>, StoreError> {
        let end = prefix_end(prefix);
        match self {
            AnyStore::Sqlite(s) => s.entries_by_key_range(prefix, &end).await,
            AnyStore::Postgres(s) => s.entries_by_key_range(prefix, &end).await,
        }
    }
}

impl AnyStore {
    /// The entry an idempotency key names (an index lookup).
    pub async fn entry_by_key(&self, key: &str) -> Result<Option<StoredEntry>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.entry_by_key(key).await,
            AnyStore::Postgres(s) => s.entry_by_key(key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("ai-model:"), "ai-model;");
        assert!("ai-model:x|1" < prefix_end("ai-model:").as_str());
    }
}
