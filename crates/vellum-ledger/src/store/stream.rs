//! Every entry in seq order, with its search-index rows, streamed in large
//! pages for `verify`: a reader produces pages ahead of the consumer, which
//! hashes and re-derives the previous page meanwhile (both cores busy).
//!
//! SQLite: one read transaction on its own connection and thread (one
//! snapshot, two cursors — entries and index rows, both in seq order —
//! merged page by page; no per-row hand-off to sqlx's worker thread).
//! PostgreSQL: keyset pages of entries plus the index rows of their seq
//! range, read by a task on the runtime.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::{AnyStore, IndexRow, Store, StoreError, StoredEntry};

/// Pages kept ready ahead of the consumer.
const AHEAD: usize = 2;

/// Consecutive entries and the index rows of exactly those entries (both in
/// seq order).
#[derive(Debug, Default)]
pub struct Page {
    pub rows: Vec<StoredEntry>,
    pub index: Vec<(i64, IndexRow)>,
}

impl Page {
    /// The index rows of the entry with `seq` (a slice of `index`).
    pub fn index_of(&self, seq: i64) -> &[(i64, IndexRow)] {
        let lo = self.index.partition_point(|(s, _)| *s < seq);
        let hi = self.index.partition_point(|(s, _)| *s <= seq);
        &self.index[lo..hi]
    }
}

pub type PageReceiver = mpsc::Receiver<Result<Page, StoreError>>;

impl AnyStore {
    /// Streams every entry in pages of `page` rows, with their index rows
    /// when `with_index`. The stream ends after the last entry, or after
    /// the first error.
    pub fn stream_entries(&self, page: usize, with_index: bool) -> PageReceiver {
        let (tx, rx) = mpsc::channel(AHEAD);
        match self {
            AnyStore::Sqlite(s) => {
                let path = s.path.clone();
                let spawned = std::thread::Builder::new()
                    .name("vellum-verify-read".into())
                    .spawn({
                        let tx = tx.clone();
                        move || {
                            if let Err(e) = sqlite_stream(&path, page, with_index, &tx) {
                                let _ = tx.blocking_send(Err(e));
                            }
                        }
                    });
                if let Err(e) = spawned {
                    let _ = tx.try_send(Err(StoreError::Io(e)));
                }
            }
            AnyStore::Postgres(_) => {
                let store = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = paged_stream(&store, page, with_index, &tx).await {
                        let _ = tx.send(Err(e)).await;
                    }
                });
            }
        }
        rx
    }
}

type Sender = mpsc::Sender<Result<Page, StoreError>>;

fn sqlite_stream(
    path: &Path,
    page: usize,
    with_index: bool,
    tx: &Sender,
) -> Result<(), StoreError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // One snapshot for both cursors: appends made meanwhile are not seen.
    let snapshot = conn.transaction()?;
    let mut entries = snapshot.prepare(concat!(
        "SELECT ",
        super::reads::entry_columns!(),
        " FROM entry e ORDER BY e.seq"
    ))?;
    let mut index = snapshot
        .prepare("SELECT seq, param, sys, val, exact, low, high FROM search_index ORDER BY seq")?;
    let mut entry_rows = entries.query([])?;
    let mut index_rows = if with_index {
        Some(index.query([])?)
    } else {
        None
    };
    // The first index row not yet placed in a page.
    let mut pending: Option<(i64, IndexRow)> = None;
    loop {
        let mut out = Page {
            rows: Vec::with_capacity(page),
            index: Vec::new(),
        };
        while out.rows.len() < page {
            let Some(r) = entry_rows.next()? else { break };
            out.rows.push(StoredEntry {
                seq: r.get(0)?,
                id: r.get(1)?,
                body: r.get(2)?,
                body_sha256: r.get(3)?,
                chain_hash: r.get(4)?,
                leaf_hash: r.get(5)?,
                last_updated: r.get(6)?,
            });
        }
        let Some(last) = out.rows.last().map(|e| e.seq) else {
            return Ok(());
        };
        if let Some(cursor) = index_rows.as_mut() {
            loop {
                let next = match pending.take() {
                    Some(p) => Some(p),
                    None => match cursor.next()? {
                        Some(r) => Some((
                            r.get(0)?,
                            IndexRow {
                                param: r.get(1)?,
                                sys: r.get(2)?,
                                val: r.get(3)?,
                                exact: r.get(4)?,
                                low: r.get(5)?,
                                high: r.get(6)?,
                            },
                        )),
                        None => None,
                    },
                };
                match next {
                    Some(row) if row.0 <= last => out.index.push(row),
                    Some(row) => {
                        pending = Some(row);
                        break;
                    }
                    None => break,
                }
            }
        }
        if tx.blocking_send(Ok(out)).is_err() {
            // The consumer stopped (it found a problem): nothing more to read.
            return Ok(());
        }
    }
}

async fn paged_stream(
    store: &AnyStore,
    page: usize,
    with_index: bool,
    tx: &Sender,
) -> Result<(), StoreError> {
    let mut after = 0i64;
    loop {
        let rows = store.entries_after(after, page as i64).await?;
        let Some(last) = rows.last().map(|e| e.seq) else {
            return Ok(());
        };
        let index = if with_index {
            store.index_rows_between(after, last).await?
        } else {
            Vec::new()
        };
        if tx.send(Ok(Page { rows, index })).await.is_err() {
            return Ok(());
        }
        after = last;
    }
}
