//! The SQLite append path: one thread owns a write connection and runs each
//! batch's whole transaction (BEGIN IMMEDIATE, head, keys, chain, inserts,
//! COMMIT) as one blocking call with cached prepared statements. Through
//! sqlx every statement was a hand-off to its worker thread and back (about
//! twenty per MLLP batch), each a wake-up that waited for a core held by the
//! request path (docs/performance.md).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::{
    extend_tree, head_from_row, merge_plan, plan_batch, Appended, ChainFn, ChainHead, StoreError,
    StoredEntry, TreeCache,
};
use crate::hash::Hash;

type Reply = oneshot::Sender<Result<Vec<Appended>, StoreError>>;

struct Job {
    keys: Vec<Option<String>>,
    chain: ChainFn,
    reply: Reply,
}

/// Handle to the append thread; the thread ends when every clone is dropped.
#[derive(Clone)]
pub(super) struct Appender {
    tx: mpsc::Sender<Job>,
}

impl Appender {
    /// Opens the write connection on a new thread (the schema must exist).
    pub(super) async fn start(path: &Path) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("vellum-sqlite-append".into())
            .spawn(move || match open(&path) {
                Ok(mut conn) => {
                    let _ = ready_tx.send(Ok(()));
                    let mut tree: Option<TreeCache> = None;
                    for job in rx {
                        let result = append(&mut conn, &mut tree, &job.keys, job.chain);
                        // The writer may have gone away; the outcome stands regardless.
                        let _ = job.reply.send(result);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(StoreError::Io)?;
        ready_rx.await.map_err(|_| StoreError::AppenderGone)??;
        Ok(Appender { tx })
    }

    pub(super) async fn append(
        &self,
        keys: Vec<Option<String>>,
        chain: ChainFn,
    ) -> Result<Vec<Appended>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { keys, chain, reply })
            .map_err(|_| StoreError::AppenderGone)?;
        rx.await.map_err(|_| StoreError::AppenderGone)?
    }
}

/// The same settings as the sqlx connections (sqlite.rs): WAL,
/// `synchronous=FULL` (COMMIT returns once the WAL is fsynced), foreign keys
/// and recursive triggers on.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "recursive_triggers", "ON")?;
    conn.set_prepared_statement_cache_capacity(24);
    Ok(conn)
}

const ENTRY_COLUMNS: &str = super::reads::entry_columns!();

/// The frontier hashes of a tree of `size` leaves, read inside the
/// transaction (only when the cached head is not the stored one).
fn load_frontier(tx: &rusqlite::Transaction<'_>, size: u64) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::new();
    for id in crate::merkle::frontier_ids(size) {
        let span = id.stored_span();
        let (first, end) = (span.first as i64, (span.first + span.count) as i64);
        let rows = if span.level == 0 {
            tx.prepare_cached(super::reads::LEAF_SPAN_SQL)?
                .query_map([first + 1, end + 1], |r| r.get(0))?
                .collect::<Result<Vec<Vec<u8>>, _>>()?
        } else {
            tx.prepare_cached(super::reads::NODES_SQL)?
                .query_map([span.level as i64, first, end, span.count as i64], |r| {
                    r.get("hash")
                })?
                .collect::<Result<Vec<Vec<u8>>, _>>()?
        };
        out.push(super::node_from_span(id, &rows)?);
    }
    Ok(out)
}

fn append(
    conn: &mut Connection,
    tree: &mut Option<TreeCache>,
    keys: &[Option<String>],
    chain: ChainFn,
) -> Result<Vec<Appended>, StoreError> {
    // IMMEDIATE takes the write lock up front, so the head read below cannot
    // change under us even if another process shares the file.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = tx
        .prepare_cached("SELECT seq, chain_hash FROM entry ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    let head = match head {
        Some((seq, hash)) => head_from_row(Some(seq), Some(hash))?,
        None => ChainHead::EMPTY,
    };
    let mut stored = std::collections::HashMap::new();
    {
        let mut by_key = tx.prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entry_key k JOIN entry e ON e.seq = k.seq WHERE k.key = ?1"
        ))?;
        for key in keys.iter().flatten() {
            if stored.contains_key(key) {
                continue;
            }
            let found = by_key
                .query_row([key], |r| {
                    Ok(StoredEntry {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        body: r.get(2)?,
                        body_sha256: r.get(3)?,
                        chain_hash: r.get(4)?,
                        leaf_hash: r.get(5)?,
                        last_updated: r.get(6)?,
                    })
                })
                .optional()?;
            if let Some(e) = found {
                stored.insert(key.clone(), e);
            }
        }
    }
    let frontier = match tree.as_ref() {
        Some(t) if t.head == head => t.frontier.clone(),
        _ => load_frontier(&tx, head.seq as u64)?,
    };
    let (fresh, plan) = plan_batch(keys, stored);
    let entries = chain(head, &fresh);
    let (nodes, next_tree) = extend_tree(head, &frontier, &entries);
    {
        let mut node =
            tx.prepare_cached("INSERT INTO merkle_node (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for (id, h) in &nodes {
            node.execute(params![id.level, id.index as i64, &h[..]])?;
        }
        let mut entry = tx.prepare_cached(
            "INSERT INTO entry (seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut index = tx.prepare_cached(
            "INSERT INTO search_index (seq, param, sys, val, exact, low, high) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for e in &entries {
            entry.execute(params![
                e.seq,
                e.id,
                e.body,
                &e.body_sha256[..],
                &e.chain_hash[..],
                &e.leaf_hash[..],
                e.last_updated
            ])?;
            for r in &e.index {
                index.execute(params![
                    e.seq, r.param, r.sys, r.val, r.exact, r.low, r.high
                ])?;
            }
        }
        super::summary::insert_sqlite(&tx, &entries)?;
        let mut key_insert =
            tx.prepare_cached("INSERT INTO entry_key (key, seq) VALUES (?1, ?2)")?;
        let new_keys = keys.iter().zip(&fresh).filter(|(_, f)| **f).map(|(k, _)| k);
        for (key, e) in new_keys.zip(&entries) {
            if let Some(key) = key {
                key_insert.execute(params![key, e.seq])?;
            }
        }
    }
    tx.commit()?;
    *tree = Some(next_tree);
    Ok(merge_plan(plan, entries))
}
