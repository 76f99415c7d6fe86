//! vellum as a witness of other logs (https://c2sp.org/tlog-witness): a
//! log sends `old <size>`, the consistency proof from that size, a blank
//! line and its new signed checkpoint; the witness checks the log's
//! signature, that `old` is the size it last cosigned for that origin, and
//! the proof from its stored checkpoint to the new one, stores the new one
//! (insert-only) and answers with its cosignature. It never cosigns a
//! smaller tree or a second root for the same size (a fork).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use vellum_ledger::cosignature::{split_note, CheckpointHead, Cosigner};
use vellum_ledger::hash::{self, Hash};
use vellum_ledger::merkle;
use vellum_ledger::note::NoteVerifier;
use vellum_ledger::store::{StoreError, Witnessed};
use vellum_ledger::Ledger;

/// Most consistency proof lines a request may carry (the protocol's bound).
const MAX_PROOF_LINES: usize = 63;

/// Why a checkpoint was not cosigned; each maps to the protocol's status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("this witness does not witness that log")]
    UnknownOrigin,
    #[error("the checkpoint is not signed by the log's key")]
    NotSigned,
    #[error("the old size is larger than the checkpoint's")]
    OldTooLarge,
    /// The old size is not the one last cosigned, which is this.
    #[error("the old size is not the size last cosigned ({0})")]
    StaleOld(u64),
    #[error("the checkpoint has the size last cosigned but another root (a fork)")]
    Fork,
    #[error("the consistency proof does not verify")]
    BadProof,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("signing failed")]
    Sign,
}

/// A parsed `add-checkpoint` request body.
struct Request<'a> {
    old: u64,
    proof: Vec<Hash>,
    note: &'a str,
}

fn parse_request(body: &str) -> Result<Request<'_>, Refusal> {
    let bad = Refusal::Malformed;
    let (head, note) = body
        .split_once("\n\n")
        .ok_or(bad("no blank line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|s| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (*s == "0" || !s.starts_with('0'))
        })
        .and_then(|s| s.parse().ok())
        .ok_or(bad("the first line must be `old <size>`"))?;
    let proof = lines
        .map(|l| B64.decode(l).ok().and_then(|h| hash::from_slice(&h)))
        .collect::<Option<Vec<Hash>>>()
        .ok_or(bad("a proof line is not base64 of 32 bytes"))?;
    if proof.len() > MAX_PROOF_LINES {
        return Err(bad("more than 63 proof lines"));
    }
    Ok(Request { old, proof, note })
}

/// The witness: its key and the logs it witnesses, by origin.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, NoteVerifier>,
    /// Check-then-store is one step per witness process, so two requests
    /// checked against the same state cannot both advance it (the stored
    /// insert is also conditional on that state, for other processes).
    lock: tokio::sync::Mutex<()>,
}

impl Witness {
    pub fn new(cosigner: Cosigner, logs: Vec<NoteVerifier>) -> Self {
        Witness {
            cosigner,
            logs: logs
                .into_iter()
                .map(|l| (l.name().to_string(), l))
                .collect(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// This witness's cosigner vkey.
    pub fn vkey(&self) -> String {
        self.cosigner.verifier().to_vkey()
    }

    /// Handles one `add-checkpoint` body; returns the cosignature line.
    pub async fn add_checkpoint(&self, ledger: &Ledger, body: &str) -> Result<String, Refusal> {
        let req = parse_request(body)?;
        let (text, _) =
            split_note(req.note).ok_or(Refusal::Malformed("the checkpoint has no signatures"))?;
        let head =
            CheckpointHead::parse(text).map_err(|_| Refusal::Malformed("not a checkpoint"))?;
        let key = self.logs.get(&head.origin).ok_or(Refusal::UnknownOrigin)?;
        if key.open(req.note).is_err() {
            return Err(Refusal::NotSigned);
        }
        if req.old > head.size {
            return Err(Refusal::OldTooLarge);
        }
        let _one_at_a_time = self.lock.lock().await;
        let (known_size, known_root) = match ledger.witnessed_latest(&head.origin).await? {
            Some((size, root)) => (size as u64, root),
            None => (0, merkle::empty_root()),
        };
        if req.old != known_size {
            return Err(Refusal::StaleOld(known_size));
        }
        if head.size == known_size {
            if head.root != known_root {
                return Err(Refusal::Fork);
            }
            if !req.proof.is_empty() {
                return Err(Refusal::BadProof);
            }
        } else if !merkle::verify_consistency(
            known_size,
            head.size,
            &known_root,
            &head.root,
            &req.proof,
        ) {
            return Err(Refusal::BadProof);
        }
        let size = i64::try_from(head.size).map_err(|_| Refusal::Malformed("size too large"))?;
        if head.size > known_size {
            let stored = ledger
                .record_witnessed(&Witnessed {
                    origin: &head.origin,
                    old: known_size as i64,
                    size,
                    root: head.root,
                    note: req.note,
                })
                .await?;
            if !stored {
                // Another process moved this log's state meanwhile.
                let now = ledger.witnessed_latest(&head.origin).await?;
                return Err(Refusal::StaleOld(now.map_or(0, |(s, _)| s as u64)));
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        tracing::info!(
            origin = %head.origin,
            old = req.old,
            size = head.size,
            "witness: cosigned a checkpoint"
        );
        self.cosigner.cosign(text, now).map_err(|_| Refusal::Sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let root = B64.encode([7u8; 32]);
        let ok = format!("old 3\n{root}\n{root}\n\nnote\n\n— x y\n");
        let r = parse_request(&ok).unwrap();
        assert_eq!((r.old, r.proof.len()), (3, 2));
        assert!(r.note.starts_with("note\n"));
        let empty = parse_request("old 0\n\nnote\n\n— x y\n").unwrap();
        assert!(empty.proof.is_empty());
        for bad in [
            "old 03\n\nn\n",
            "old\n\nn\n",
            "new 3\n\nn\n",
            "old 3\nnot-base64\n\nn\n",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
    }
}
