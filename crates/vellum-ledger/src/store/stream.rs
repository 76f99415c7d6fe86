//! Every entry in seq order, with (as a digest) its search-index rows and
//! its idempotency keys, streamed in large pages for `verify`: a reader
//! produces pages ahead of the consumer, which hashes and re-derives the
//! previous page meanwhile (both cores busy).
//!
//! SQLite: one read transaction on its own connection and thread (one
//! snapshot, three cursors — entries, index rows, keys, all in seq order —
//! merged page by page; no per-row hand-off to sqlx's worker thread, and no
//! allocation per index row: each is hashed straight from SQLite's buffer).
//! PostgreSQL: keyset pages of entries plus the index rows and keys of their
//! seq range, read by a task on the runtime.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use super::{bound_index_text, AnyStore, IndexRow, RowRef, Store, StoreError, StoredEntry};

/// Pages kept ready ahead of the consumer.
const AHEAD: usize = 2;

/// A multiset of rows as (count, sum of keyed row hashes): the stored rows
/// of an entry and the rows its body gives compare equal exactly when the
/// multisets do, short of a 64-bit collision under a key chosen at random
/// for each run (so rows cannot be crafted to collide). Nothing is
/// allocated per row on either side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowsDigest {
    pub count: u64,
    pub sum: u64,
}

impl RowsDigest {
    pub fn add(&mut self, h: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
    }

    pub fn merge(&mut self, other: RowsDigest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// The keyed row hash both sides of the comparison use.
#[derive(Debug, Clone)]
pub struct RowHasher(RandomState);

impl Default for RowHasher {
    fn default() -> Self {
        RowHasher(RandomState::new())
    }
}

/// A column as the hash sees it: absent, text, or a number. A column of
/// another type hashes as `Odd`, which no derived row produces.
enum Col<'a> {
    Null,
    Text(&'a [u8]),
    Int(i64),
    Odd,
}

impl Col<'_> {
    /// Appends the column's unambiguous encoding (tag, then length and
    /// bytes or the integer), so a row is hashed in one call: SipHash fed
    /// column by column spent most of its time on per-call overhead.
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Col::Null => out.push(0),
            Col::Text(t) => {
                out.push(1);
                out.extend_from_slice(&(t.len() as u64).to_le_bytes());
                out.extend_from_slice(t);
            }
            Col::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Col::Odd => out.push(3),
        }
    }
}

thread_local! {
    /// The encoding buffer of [`RowHasher::cols`], reused across rows.
    static ROW_BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn text(v: Option<&str>) -> Col<'_> {
    v.map_or(Col::Null, |t| Col::Text(t.as_bytes()))
}

fn int(v: Option<i64>) -> Col<'static> {
    v.map_or(Col::Null, Col::Int)
}

fn col(v: ValueRef<'_>) -> Col<'_> {
    match v {
        ValueRef::Null => Col::Null,
        ValueRef::Text(t) => Col::Text(t),
        ValueRef::Integer(i) => Col::Int(i),
        _ => Col::Odd,
    }
}

impl RowHasher {
    fn cols(&self, c: [Col<'_>; 7]) -> u64 {
        ROW_BYTES.with_borrow_mut(|buf| {
            buf.clear();
            for col in &c {
                col.encode(buf);
            }
            self.0.hash_one(buf.as_slice())
        })
    }

    /// The hash of one index row of entry `seq` (the seq is hashed too, so
    /// the rows of all entries can also be compared as one multiset).
    pub fn index_row(&self, seq: i64, r: &IndexRow) -> u64 {
        self.cols([
            Col::Int(seq),
            Col::Text(r.param.as_bytes()),
            text(r.sys.as_deref()),
            text(r.val.as_deref()),
            text(r.exact.as_deref()),
            int(r.low),
            int(r.high),
        ])
    }

    /// [`RowHasher::index_row`] of a derived row once bounded as the writer
    /// stores it ([`IndexRow::bounded`]), without copying its text.
    pub fn derived_row(&self, seq: i64, r: &RowRef<'_>) -> u64 {
        let (sys, val, exact) = (
            r.sys.map(bound_index_text),
            r.val.map(bound_index_text),
            r.exact.map(bound_index_text),
        );
        self.cols([
            Col::Int(seq),
            Col::Text(r.param.as_bytes()),
            text(sys.as_deref()),
            text(val.as_deref()),
            text(exact.as_deref()),
            int(r.low),
            int(r.high),
        ])
    }

    /// The hash of one Merkle tree node (stored or recomputed).
    pub fn node(&self, id: crate::merkle::NodeId, hash: &[u8]) -> u64 {
        self.0.hash_one((id.level, id.index, hash))
    }

    /// The hash of entry `seq`'s report summary row (stored or derived:
    /// the same struct, so equal rows hash alike).
    pub fn summary(&self, seq: i64, s: &super::summary::Summary) -> u64 {
        self.0.hash_one((seq, s))
    }

    /// The hash of a stored row `seq, param, sys, val, exact, low, high`,
    /// straight from SQLite's buffers.
    fn sqlite_row(&self, r: &rusqlite::Row<'_>) -> Result<(i64, u64), rusqlite::Error> {
        let seq: i64 = r.get(0)?;
        let h = self.cols([
            Col::Int(seq),
            col(r.get_ref(1)?),
            col(r.get_ref(2)?),
            col(r.get_ref(3)?),
            col(r.get_ref(4)?),
            col(r.get_ref(5)?),
            col(r.get_ref(6)?),
        ]);
        Ok((seq, h))
    }
}

/// What the stream carries besides the entries.
#[derive(Debug, Clone, Default)]
pub struct Wants {
    /// Each entry's stored index rows, as a digest under this hasher.
    pub index: Option<RowHasher>,
    /// On SQLite, read the index rows in table order (a sequential scan,
    /// not an index walk with a table lookup per row) and send only their
    /// sum ([`Page::index_total`]): the consumer compares the sums of all
    /// entries, and streams again per entry only when they differ.
    pub index_in_table_order: bool,
    /// Each entry's stored idempotency keys.
    pub keys: bool,
}

/// Consecutive entries with, when asked for, the digest of each one's
/// stored index rows and their idempotency keys.
#[derive(Debug, Default)]
pub struct Page {
    pub rows: Vec<StoredEntry>,
    /// One per row of `rows`, same order (empty when not asked for).
    pub index: Vec<RowsDigest>,
    /// In table order ([`Wants::index_in_table_order`]): the digest of the
    /// index rows read with this page, whatever their entry.
    pub index_total: RowsDigest,
    /// `(seq, key)` of these entries, in seq order.
    pub keys: Vec<(i64, String)>,
    /// The first seq of an index row whose entry is not stored (before the
    /// last entry of this page), and how many such rows.
    pub stray_index: Option<(i64, u64)>,
    /// The same for idempotency keys.
    pub stray_keys: Option<(i64, u64)>,
}

impl Page {
    /// The stored keys of the entry with `seq`.
    pub fn keys_of(&self, seq: i64) -> impl Iterator<Item = &str> {
        let lo = self.keys.partition_point(|(s, _)| *s < seq);
        let hi = self.keys.partition_point(|(s, _)| *s <= seq);
        self.keys
            .get(lo..hi)
            .unwrap_or(&[])
            .iter()
            .map(|(_, k)| k.as_str())
    }
}

pub type PageReceiver = mpsc::Receiver<Result<Page, StoreError>>;

impl AnyStore {
    /// Streams every entry in pages of `page` rows, with what `wants`
    /// names. The stream ends after the last entry, or after the first
    /// error.
    pub fn stream_entries(&self, page: usize, wants: Wants) -> PageReceiver {
        let (tx, rx) = mpsc::channel(AHEAD);
        match self {
            AnyStore::Sqlite(s) => {
                let path = s.path.clone();
                let spawned = std::thread::Builder::new()
                    .name("vellum-verify-read".into())
                    .spawn({
                        let tx = tx.clone();
                        move || {
                            if let Err(e) = sqlite_stream(&path, page, &wants, &tx) {
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
                    if let Err(e) = paged_stream(&store, page, &wants, &tx).await {
                        let _ = tx.send(Err(e)).await;
                    }
                });
            }
        }
        rx
    }
}

/// Places rows given in seq order against the entries of a page (also in
/// seq order): each row goes to the entry with its seq, or counts as stray.
struct Placer {
    /// Index into the page's rows of the entry being filled.
    at: usize,
    stray: Option<(i64, u64)>,
}

impl Placer {
    fn new() -> Self {
        Placer { at: 0, stray: None }
    }

    /// The position of the entry with `seq` in `seqs`, `None` for a stray
    /// row (its seq names no entry of the page).
    fn place(&mut self, seqs: &[StoredEntry], seq: i64) -> Option<usize> {
        while seqs.get(self.at).is_some_and(|e| e.seq < seq) {
            self.at += 1;
        }
        match seqs.get(self.at) {
            Some(e) if e.seq == seq => Some(self.at),
            _ => {
                let s = self.stray.get_or_insert((seq, 0));
                s.1 += 1;
                None
            }
        }
    }
}

type Sender = mpsc::Sender<Result<Page, StoreError>>;

fn sqlite_stream(path: &Path, page: usize, wants: &Wants, tx: &Sender) -> Result<(), StoreError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // One snapshot for every cursor: appends made meanwhile are not seen.
    let snapshot = conn.transaction()?;
    let mut entries = snapshot.prepare(concat!(
        "SELECT ",
        super::reads::entry_columns!(),
        " FROM entry e ORDER BY e.seq"
    ))?;
    let in_table_order = wants.index_in_table_order;
    let mut index = snapshot.prepare(if in_table_order {
        "SELECT seq, param, sys, val, exact, low, high FROM search_index ORDER BY rowid"
    } else {
        "SELECT seq, param, sys, val, exact, low, high FROM search_index ORDER BY seq"
    })?;
    let mut keys = snapshot.prepare("SELECT seq, key FROM entry_key ORDER BY seq")?;
    let mut entry_rows = entries.query([])?;
    let mut index_rows = match &wants.index {
        Some(_) => Some(index.query([])?),
        None => None,
    };
    let mut key_rows = if wants.keys {
        Some(keys.query([])?)
    } else {
        None
    };
    // A row already read that belongs to a later page.
    let mut index_pending: Option<(i64, u64)> = None;
    let mut key_pending: Option<(i64, String)> = None;
    loop {
        let mut out = Page {
            rows: Vec::with_capacity(page),
            ..Page::default()
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
            // Rows after the last entry belong to no entry.
            let mut tail = Page::default();
            match (index_rows.as_mut(), wants.index.as_ref()) {
                (Some(cursor), Some(hasher)) if in_table_order => {
                    if let Some((_, h)) = index_pending.take() {
                        tail.index_total.add(h);
                    }
                    while let Some(r) = cursor.next()? {
                        tail.index_total.add(hasher.sqlite_row(r)?.1);
                    }
                }
                (Some(cursor), _) => {
                    tail.stray_index = stray_tail(index_pending.map(|(s, _)| s), cursor)?;
                }
                _ => {}
            }
            if let Some(cursor) = key_rows.as_mut() {
                tail.stray_keys = stray_tail(key_pending.map(|(s, _)| s), cursor)?;
            }
            if tail.stray_index.is_some()
                || tail.stray_keys.is_some()
                || tail.index_total != RowsDigest::default()
            {
                let _ = tx.blocking_send(Ok(tail));
            }
            return Ok(());
        };
        if let (Some(cursor), Some(hasher), true) =
            (index_rows.as_mut(), wants.index.as_ref(), in_table_order)
        {
            // Rows up to this page's last seq, roughly: any row counts once
            // in the sum, whichever page carries it.
            if let Some((_, h)) = index_pending.take() {
                out.index_total.add(h);
            }
            while let Some(r) = cursor.next()? {
                let (seq, h) = hasher.sqlite_row(r)?;
                if seq > last {
                    index_pending = Some((seq, h));
                    break;
                }
                out.index_total.add(h);
            }
        } else if let (Some(cursor), Some(hasher)) = (index_rows.as_mut(), wants.index.as_ref()) {
            out.index = vec![RowsDigest::default(); out.rows.len()];
            let mut placer = Placer::new();
            loop {
                let next = match index_pending.take() {
                    Some(p) => Some(p),
                    None => match cursor.next()? {
                        Some(r) => Some(hasher.sqlite_row(r)?),
                        None => None,
                    },
                };
                let Some((seq, h)) = next else { break };
                if seq > last {
                    index_pending = Some((seq, h));
                    break;
                }
                if let Some(d) = placer
                    .place(&out.rows, seq)
                    .and_then(|i| out.index.get_mut(i))
                {
                    d.add(h);
                }
            }
            out.stray_index = placer.stray;
        }
        if let Some(cursor) = key_rows.as_mut() {
            let mut placer = Placer::new();
            loop {
                let next = match key_pending.take() {
                    Some(p) => Some(p),
                    None => match cursor.next()? {
                        Some(r) => Some((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                        None => None,
                    },
                };
                let Some((seq, key)) = next else { break };
                if seq > last {
                    key_pending = Some((seq, key));
                    break;
                }
                if placer.place(&out.rows, seq).is_some() {
                    out.keys.push((seq, key));
                }
            }
            out.stray_keys = placer.stray;
        }
        if tx.blocking_send(Ok(out)).is_err() {
            // The consumer stopped (it found a problem): nothing more to read.
            return Ok(());
        }
    }
}

/// The first seq and the number of the rows left in `cursor` (plus one
/// already read, `pending`).
fn stray_tail(
    pending: Option<i64>,
    cursor: &mut rusqlite::Rows<'_>,
) -> Result<Option<(i64, u64)>, StoreError> {
    let mut stray = pending.map(|s| (s, 1));
    while let Some(r) = cursor.next()? {
        let seq: i64 = r.get(0)?;
        stray.get_or_insert((seq, 0)).1 += 1;
    }
    Ok(stray)
}

const STRAY_INDEX_SQL: &str = "SELECT MIN(seq) AS first, COUNT(*) AS n FROM search_index r \
     WHERE r.seq > $1 AND NOT EXISTS (SELECT 1 FROM entry e WHERE e.seq = r.seq)";
const STRAY_KEYS_SQL: &str = "SELECT MIN(seq) AS first, COUNT(*) AS n FROM entry_key r \
     WHERE r.seq > $1 AND NOT EXISTS (SELECT 1 FROM entry e WHERE e.seq = r.seq)";

impl AnyStore {
    /// (first seq, count) of the rows `sql` finds after `after`.
    async fn orphans_after(
        &self,
        sql: &'static str,
        after: i64,
    ) -> Result<Option<(i64, u64)>, StoreError> {
        let (first, n): (Option<i64>, i64) = match self {
            AnyStore::Sqlite(s) => sqlx::query_as(sql).bind(after).fetch_one(s.pool()).await?,
            AnyStore::Postgres(s) => sqlx::query_as(sql).bind(after).fetch_one(s.pool()).await?,
        };
        Ok(first.map(|f| (f, u64::try_from(n).unwrap_or(0))))
    }
}

async fn paged_stream(
    store: &AnyStore,
    page: usize,
    wants: &Wants,
    tx: &Sender,
) -> Result<(), StoreError> {
    let mut after = 0i64;
    loop {
        let rows = store.entries_after(after, page as i64).await?;
        let Some(last) = rows.last().map(|e| e.seq) else {
            // Rows after the last entry read that name no entry. One
            // statement each, which sees an entry appended meanwhile
            // together with its rows (one transaction), so a live ledger
            // shows no strays.
            let mut tail = Page::default();
            if wants.index.is_some() {
                tail.stray_index = store.orphans_after(STRAY_INDEX_SQL, after).await?;
            }
            if wants.keys {
                tail.stray_keys = store.orphans_after(STRAY_KEYS_SQL, after).await?;
            }
            if tail.stray_index.is_some() || tail.stray_keys.is_some() {
                let _ = tx.send(Ok(tail)).await;
            }
            return Ok(());
        };
        let mut out = Page::default();
        if let Some(hasher) = &wants.index {
            out.index = vec![RowsDigest::default(); rows.len()];
            let mut placer = Placer::new();
            for (seq, r) in store.index_rows_between(after, last).await? {
                if let Some(d) = placer.place(&rows, seq).and_then(|i| out.index.get_mut(i)) {
                    d.add(hasher.index_row(seq, &r));
                }
            }
            out.stray_index = placer.stray;
        }
        if wants.keys {
            let mut placer = Placer::new();
            for (seq, k) in store.keys_between(after, last).await? {
                if placer.place(&rows, seq).is_some() {
                    out.keys.push((seq, k));
                }
            }
            out.stray_keys = placer.stray;
        }
        out.rows = rows;
        if tx.send(Ok(out)).await.is_err() {
            return Ok(());
        }
        after = last;
    }
}
