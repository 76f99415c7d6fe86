//! The single writer: drains append requests, chains them in batches and
//! commits each batch in one transaction (group commit). Requests that arrive
//! while a commit is in flight form the next batch, so throughput grows with
//! concurrency without anyone waiting on a timer.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{hash, stamp, AppendError, Committed, Draft, Receipt, STAMP_LEN};
use crate::observe::WriterObserver;
use crate::store::last_updated_row;
use crate::store::{AnyStore, Appended, ChainHead, IndexRow, NewEntry, Store};
use crate::WriterSettings;

/// One caller's drafts: committed together in one transaction (a FHIR
/// transaction Bundle has several; a single create has one).
pub(super) struct Request {
    pub drafts: Vec<Draft>,
    pub reply: oneshot::Sender<Result<Vec<Committed>, AppendError>>,
}

/// Keeps the writer task alive; aborting is never needed because the task
/// ends by itself when every sender is dropped (after draining the queue).
pub struct WriterHandle {
    _task: JoinHandle<()>,
}

/// Where commit stamps come from: the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub(super) fn spawn(
    store: AnyStore,
    settings: WriterSettings,
    observer: Arc<dyn WriterObserver>,
    clock: Clock,
) -> (mpsc::Sender<Request>, WriterHandle) {
    let (tx, rx) = mpsc::channel(settings.queue);
    let task = tokio::spawn(run(store, rx, settings, observer, clock));
    (tx, WriterHandle { _task: task })
}

async fn run(
    store: AnyStore,
    mut rx: mpsc::Receiver<Request>,
    settings: WriterSettings,
    observer: Arc<dyn WriterObserver>,
    clock: Clock,
) {
    let max = settings.batch_max_events.max(1);
    let mut batch: Vec<Request> = Vec::with_capacity(max);
    loop {
        match rx.recv().await {
            Some(first) => batch.push(first),
            None => return, // every sender gone and the queue drained
        }
        while batch.len() < max {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if !settings.batch_max_wait.is_zero() && batch.len() < max {
            let deadline = tokio::time::Instant::now() + settings.batch_max_wait;
            while batch.len() < max {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    _ => break,
                }
            }
        }
        commit(
            &store,
            std::mem::take(&mut batch),
            observer.as_ref(),
            &clock,
        )
        .await;
    }
}

async fn commit(
    store: &AnyStore,
    batch: Vec<Request>,
    observer: &dyn WriterObserver,
    clock: &Clock,
) {
    let started = Instant::now();
    let mut sizes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut drafts: Vec<Draft> = Vec::with_capacity(batch.len());
    for r in batch {
        sizes.push(r.drafts.len());
        replies.push(r.reply);
        drafts.extend(r.drafts);
    }
    let n = drafts.len();
    let keys: Vec<Option<String>> = drafts.iter().map(|d| d.key.clone()).collect();
    let clock = clock.clone();
    let chain = Box::new(move |head: ChainHead, fresh: &[bool]| {
        let wanted = drafts
            .into_iter()
            .zip(fresh)
            .filter(|(_, f)| **f)
            .map(|(d, _)| d)
            .collect();
        chain_batch(head, wanted, clock())
    });
    match store.append_batch(keys, chain).await {
        Ok(outcomes) => {
            observer.batch_committed(n, started.elapsed());
            tracing::debug!(
                events = n,
                elapsed_us = started.elapsed().as_micros() as u64,
                "batch committed"
            );
            let mut results = resolve(outcomes).into_iter();
            for (size, reply) in sizes.into_iter().zip(replies) {
                let mine: Result<Vec<Committed>, AppendError> =
                    results.by_ref().take(size).collect();
                // The client may have gone away; the entry is committed regardless.
                let _ = reply.send(mine);
            }
        }
        Err(e) => {
            // No PHI here: store errors carry SQL state, never bodies.
            observer.batch_failed(n);
            tracing::error!(events = n, error = %e, "batch commit failed");
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(AppendError::Store(msg.clone())));
            }
        }
    }
}

/// Turns the store's per-request outcomes into replies.
fn resolve(outcomes: Vec<Appended>) -> Vec<Result<Committed, AppendError>> {
    let mut done: Vec<Option<Committed>> = outcomes
        .iter()
        .map(|o| match o {
            Appended::Inserted(e) => Some(Committed {
                receipt: Receipt {
                    seq: e.seq,
                    chain_hash: e.chain_hash,
                    id: e.id.clone(),
                },
                body: e.body.clone(),
                last_updated: e.last_updated.clone(),
                created: true,
            }),
            Appended::Existing(s) => Some(Committed {
                receipt: Receipt {
                    seq: s.seq,
                    chain_hash: hash::from_slice(&s.chain_hash).unwrap_or_default(),
                    id: s.id.clone(),
                },
                body: s.body.clone(),
                last_updated: s.last_updated.clone(),
                created: false,
            }),
            Appended::SameAs(_) => None,
        })
        .collect();
    for (i, o) in outcomes.iter().enumerate() {
        if let Appended::SameAs(j) = o {
            done[i] = done.get(*j).cloned().flatten().map(|mut c| {
                c.created = false;
                c
            });
        }
    }
    done.into_iter()
        .map(|c| c.ok_or_else(|| AppendError::Store("inconsistent batch outcome".into())))
        .collect()
}

/// Stamps, numbers and hashes a batch onto `head`.
fn chain_batch(head: ChainHead, drafts: Vec<Draft>, now: OffsetDateTime) -> Vec<NewEntry> {
    let stamp = stamp(now);
    let mut prev = head.chain_hash;
    drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let seq = head.seq + 1 + i as i64;
            let mut body = d.body;
            body[d.stamp_at..d.stamp_at + STAMP_LEN].copy_from_slice(stamp.as_bytes());
            let body_sha256 = hash::body_sha256(&body);
            let chain_hash = hash::chain_hash(&prev, seq as u64, &body_sha256);
            prev = chain_hash;
            let mut index: Vec<_> = d.index.into_iter().map(IndexRow::bounded).collect();
            index.push(last_updated_row(now));
            NewEntry {
                seq,
                id: d.id,
                leaf_hash: hash::leaf_hash(&body),
                // The draft was canonical UTF-8 and the stamp is ASCII.
                body: String::from_utf8(body).unwrap_or_default(),
                body_sha256,
                chain_hash,
                last_updated: stamp.clone(),
                index,
                summary: d.summary.map(Box::new),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STAMP_PLACEHOLDER;

    #[test]
    fn batch_is_stamped_numbered_and_chained() {
        let body = format!(r#"{{"meta":{{"lastUpdated":"{STAMP_PLACEHOLDER}"}}}}"#);
        let at = body.find("0000").unwrap();
        let drafts = vec![
            Draft::with_index("a".into(), body.clone().into_bytes(), at, vec![]).unwrap(),
            Draft::with_index("b".into(), body.into_bytes(), at, vec![]).unwrap(),
        ];
        let now = time::macros::datetime!(2026-01-02 03:04:05.678901 UTC);
        let out = chain_batch(
            ChainHead {
                seq: 41,
                chain_hash: [7; 32],
            },
            drafts,
            now,
        );
        assert_eq!(out[0].seq, 42);
        assert_eq!(out[1].seq, 43);
        assert_eq!(
            out[0].body,
            r#"{"meta":{"lastUpdated":"2026-01-02T03:04:05.678901Z"}}"#
        );
        let b0 = hash::body_sha256(out[0].body.as_bytes());
        assert_eq!(out[0].chain_hash, hash::chain_hash(&[7; 32], 42, &b0));
        assert_eq!(
            out[1].chain_hash,
            hash::chain_hash(&out[0].chain_hash, 43, &out[1].body_sha256)
        );
    }
}
