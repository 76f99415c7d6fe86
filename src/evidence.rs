//! Evidence an outsider can check: the checkpoint signing key, the
//! checkpoint timer, the verifiable export and its offline check, and the
//! offline proof bundle. The hashing, proofs and signatures themselves live
//! in vellum-ledger (merkle.rs, note.rs, checkpoint.rs).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::config::{DatabaseUrl, EvidenceSettings};
use vellum_ledger::checkpoint::Checkpoint;
use vellum_ledger::cosignature::{split_note, Cosigner, CosignerVerifier};
use vellum_ledger::hash::{self, Hash};
use vellum_ledger::merkle::{self, Accumulator};
use vellum_ledger::note::{NoteError, NoteSigner, NoteVerifier};
use vellum_ledger::Ledger;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("store: {0}")]
    Store(#[from] vellum_ledger::store::StoreError),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `dir/log.key` (mode 0600, created new) and `dir/log.vkey`.
pub fn write_key_files(dir: &Path, signer: &NoteSigner) -> Result<(), EvidenceError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = dir.join("log.key");
    write_private(&key, &signer.to_key_file()?)?;
    let vkey = dir.join("log.vkey");
    std::fs::write(&vkey, format!("{}\n", signer.verifier().to_vkey())).map_err(io(&vkey))?;
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), EvidenceError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

pub fn read_signer(path: &Path) -> Result<NoteSigner, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(NoteSigner::parse(&text)?)
}

/// A witness key file (`vellum keygen --witness`, or a log key file).
pub fn read_cosigner(path: &Path) -> Result<Cosigner, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(Cosigner::parse(&text)?)
}

/// Writes `dir/witness.key` (mode 0600, created new) and `dir/witness.vkey`.
pub fn write_witness_key_files(dir: &Path, cosigner: &Cosigner) -> Result<(), EvidenceError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_private(&dir.join("witness.key"), &cosigner.to_key_file()?)?;
    let vkey = dir.join("witness.vkey");
    std::fs::write(&vkey, format!("{}\n", cosigner.verifier().to_vkey())).map_err(io(&vkey))?;
    Ok(())
}

pub fn read_verifier(path: &Path) -> Result<NoteVerifier, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(NoteVerifier::parse(&text)?)
}

/// Where the key made on first start lives: beside the SQLite file.
pub fn default_key_path(url: &DatabaseUrl) -> Option<PathBuf> {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let mut p = path.clone().into_os_string();
            p.push(".log.key");
            Some(PathBuf::from(p))
        }
        DatabaseUrl::Postgres(_) => None,
    }
}

/// The signing key: the configured file; without one on SQLite, the key
/// beside the database file, created (and its vkey logged) on first start.
/// `None` on PostgreSQL without a configured key (no checkpoints).
pub fn signer_for(
    settings: &EvidenceSettings,
    url: &DatabaseUrl,
    create: bool,
) -> Result<Option<NoteSigner>, EvidenceError> {
    if let Some(path) = &settings.signing_key_file {
        return read_signer(path).map(Some);
    }
    let Some(path) = default_key_path(url) else {
        return Ok(None);
    };
    if path.exists() || !create {
        return if path.exists() {
            read_signer(&path).map(Some)
        } else {
            Ok(None)
        };
    }
    let signer = NoteSigner::generate(&settings.origin)?;
    // Written whole under a unique name, then linked into place: a second
    // process starting on the same file at once either wins the link or
    // reads the complete key the first one linked.
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, &signer.to_key_file()?)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return read_signer(&path).map(Some);
        }
        Err(e) => return Err(io(&path)(e)),
    }
    let mut vkey_path = path.clone().into_os_string();
    vkey_path.push(".pub");
    let vkey_path = PathBuf::from(vkey_path);
    let vkey = signer.verifier().to_vkey();
    std::fs::write(&vkey_path, format!("{vkey}\n")).map_err(io(&vkey_path))?;
    tracing::warn!(
        key_file = %path.display(),
        vkey = %vkey,
        "created a checkpoint signing key; publish the vkey to auditors"
    );
    Ok(Some(signer))
}

/// Makes a checkpoint every `every_entries` new entries or, when entries
/// arrived, every `every` — checking the head once a second at most.
pub fn spawn_checkpointer(
    ledger: Ledger,
    signer: Arc<NoteSigner>,
    settings: &EvidenceSettings,
) -> tokio::task::JoinHandle<()> {
    let every_entries = settings.every_entries.max(1) as i64;
    let every = settings.every;
    let tick = every
        .unwrap_or(std::time::Duration::from_secs(1))
        .min(std::time::Duration::from_secs(1));
    tokio::spawn(async move {
        let mut last = match ledger.stored_checkpoint(None).await {
            Ok(c) => c.map_or(0, |c| c.tree_size),
            Err(_) => 0,
        };
        let mut since = tokio::time::Instant::now();
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            let Ok(head) = ledger.head().await else {
                continue;
            };
            let due = head.seq - last >= every_entries
                || (head.seq > last && every.is_some_and(|t| since.elapsed() >= t));
            if !due {
                continue;
            }
            match ledger.checkpoint(&signer).await {
                Ok(_) => {
                    last = head.seq;
                    since = tokio::time::Instant::now();
                }
                Err(e) => tracing::error!(error = %e, "checkpoint failed"),
            }
        }
    })
}

/// One line of `entries.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportLine {
    pub seq: i64,
    pub body: String,
    pub chain_hash: String,
}

/// `prefix.json` of an export that starts after seq 1: what the entries
/// before it hash to, so the export's root can be recomputed.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportPrefix {
    pub size: u64,
    pub chain_hash: String,
    /// Base64 roots of the complete subtrees of the first `size` leaves.
    pub frontier: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Serialize)]
pub struct ExportSummary {
    pub from: i64,
    pub to: i64,
    pub entries: i64,
}

/// Writes `dir/entries.jsonl`, `dir/checkpoint` (signed note of size `to`),
/// `dir/log.vkey` and, when `from` > 1, `dir/prefix.json`.
pub async fn export(
    ledger: &Ledger,
    signer: Option<&NoteSigner>,
    dir: &Path,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<ExportSummary, EvidenceError> {
    let head = ledger.head().await?.seq;
    let from = from.unwrap_or(1).max(1);
    let to = to.unwrap_or(head).min(head);
    if to < from {
        return Err(EvidenceError::Invalid(format!(
            "nothing to export: from {from} to {to} (head {head})"
        )));
    }
    // The signed checkpoint of exactly `to` entries (with its witnesses'
    // cosignatures): stored, or signed now.
    let note = match ledger.cosigned_checkpoint(Some(to)).await? {
        Some(c) => c.note,
        None => match signer {
            Some(s) => ledger
                .checkpoint_at(s, to as u64)
                .await
                .map_err(|e| EvidenceError::Invalid(e.to_string()))?,
            None => {
                return Err(EvidenceError::Invalid(format!(
                    "no checkpoint of size {to} is stored and no signing key is configured"
                )))
            }
        },
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if let Some(s) = signer {
        let vkey = dir.join("log.vkey");
        std::fs::write(&vkey, format!("{}\n", s.verifier().to_vkey())).map_err(io(&vkey))?;
    }
    let cp_path = dir.join("checkpoint");
    std::fs::write(&cp_path, &note).map_err(io(&cp_path))?;
    if from > 1 {
        let size = (from - 1) as u64;
        let mut frontier = Vec::new();
        for id in merkle::frontier_ids(size) {
            frontier.push(B64.encode(ledger.tree_node(id).await?));
        }
        let chain = ledger
            .entries_after(from - 2, 1)
            .await?
            .pop()
            .map(|e| hex::encode(e.chain_hash))
            .unwrap_or_default();
        let prefix = ExportPrefix {
            size,
            chain_hash: chain,
            frontier,
        };
        let p = dir.join("prefix.json");
        std::fs::write(&p, serde_json::to_vec(&prefix).unwrap_or_default()).map_err(io(&p))?;
    }
    let path = dir.join("entries.jsonl");
    let file = std::fs::File::create(&path).map_err(io(&path))?;
    let mut out = std::io::BufWriter::new(file);
    let mut after = from - 1;
    let mut n = 0;
    while after < to {
        let rows = ledger.entries_after(after, (to - after).min(5000)).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for e in rows {
            let line = ExportLine {
                seq: e.seq,
                body: e.body,
                chain_hash: hex::encode(&e.chain_hash),
            };
            serde_json::to_writer(&mut out, &line)
                .map_err(|e| EvidenceError::Invalid(e.to_string()))?;
            out.write_all(b"\n").map_err(io(&path))?;
            n += 1;
        }
    }
    out.flush().map_err(io(&path))?;
    Ok(ExportSummary {
        from,
        to,
        entries: n,
    })
}

/// The outcome of checking an export offline.
#[derive(Debug, Serialize)]
pub struct ExportVerdict {
    pub entries: i64,
    pub tree_size: u64,
    pub root: String,
    /// The first problem, if any.
    pub problem: Option<String>,
}

/// Re-verifies an export with `key`: every body canonical and chained, the
/// Merkle root and chain hash of the last entry equal to the signed
/// checkpoint's.
pub fn verify_export(dir: &Path, key: &NoteVerifier) -> Result<ExportVerdict, EvidenceError> {
    let cp_path = dir.join("checkpoint");
    let note = std::fs::read_to_string(&cp_path).map_err(io(&cp_path))?;
    let mut verdict = ExportVerdict {
        entries: 0,
        tree_size: 0,
        root: String::new(),
        problem: None,
    };
    let cp = match Checkpoint::open(&note, key) {
        Ok(cp) => cp,
        Err(e) => {
            verdict.problem = Some(format!("checkpoint: {e}"));
            return Ok(verdict);
        }
    };
    verdict.tree_size = cp.size;
    verdict.root = B64.encode(cp.root);
    let (mut acc, mut chain, mut seq) = (Accumulator::default(), hash::GENESIS, 0i64);
    let prefix_path = dir.join("prefix.json");
    if prefix_path.exists() {
        let text = std::fs::read(&prefix_path).map_err(io(&prefix_path))?;
        let p: ExportPrefix = serde_json::from_slice(&text)
            .map_err(|e| EvidenceError::Invalid(format!("prefix.json: {e}")))?;
        let frontier = p
            .frontier
            .iter()
            .map(|h| B64.decode(h).ok().and_then(|h| hash::from_slice(&h)))
            .collect::<Option<Vec<Hash>>>()
            .filter(|f| f.len() == merkle::frontier_ids(p.size).len())
            .ok_or_else(|| EvidenceError::Invalid("prefix.json: bad frontier".into()))?;
        acc = Accumulator::from_frontier(p.size, &frontier);
        chain = hex::decode(&p.chain_hash)
            .ok()
            .and_then(|h| hash::from_slice(&h))
            .ok_or_else(|| EvidenceError::Invalid("prefix.json: bad chain_hash".into()))?;
        seq = p.size as i64;
    }
    let path = dir.join("entries.jsonl");
    let file = std::fs::File::open(&path).map_err(io(&path))?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io(&path))?;
        let e: ExportLine = match serde_json::from_str(&line) {
            Ok(e) => e,
            Err(_) => {
                verdict.problem = Some(format!("line after seq {seq} is not an entry"));
                return Ok(verdict);
            }
        };
        let fail = |what: &str| Some(format!("seq {}: {what}", e.seq));
        if e.seq != seq + 1 {
            verdict.problem = Some(format!("seq {} follows seq {seq}", e.seq));
            return Ok(verdict);
        }
        if vellum_json::canonicalize(e.body.as_bytes()).ok().as_deref() != Some(e.body.as_bytes()) {
            verdict.problem = fail("body is not canonical JSON");
            return Ok(verdict);
        }
        chain = hash::chain_hash(&chain, e.seq as u64, &hash::body_sha256(e.body.as_bytes()));
        if hex::encode(chain) != e.chain_hash {
            verdict.problem = fail("chain hash does not match the body");
            return Ok(verdict);
        }
        acc.push(hash::leaf_hash(e.body.as_bytes()));
        seq = e.seq;
        verdict.entries += 1;
    }
    if acc.size() != cp.size {
        verdict.problem = Some(format!(
            "the checkpoint covers {} entries; the export ends at {}",
            cp.size,
            acc.size()
        ));
    } else if acc.root() != cp.root {
        verdict.problem = Some("the entries do not hash to the checkpoint's Merkle root".into());
    } else if chain != cp.chain {
        verdict.problem = Some("the last chain hash is not the checkpoint's".into());
    }
    Ok(verdict)
}

/// An offline proof that one event is in the log: the stored body, its
/// inclusion proof and the signed checkpoint the proof leads to.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProofBundle {
    pub seq: i64,
    pub body: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

/// The bundle for the entry `id` names, against the newest checkpoint (made
/// now with `signer` if none covers the entry yet).
pub async fn proof_bundle(
    ledger: &Ledger,
    signer: Option<&NoteSigner>,
    id: &str,
) -> Result<ProofBundle, EvidenceError> {
    let entry = ledger
        .read(id)
        .await?
        .ok_or_else(|| EvidenceError::Invalid(format!("no entry has id {id}")))?;
    let mut cp = ledger.cosigned_checkpoint(None).await?;
    if cp.as_ref().is_none_or(|c| c.tree_size < entry.seq) {
        let s = signer.ok_or_else(|| {
            EvidenceError::Invalid("no checkpoint covers the entry and no signing key".into())
        })?;
        ledger
            .checkpoint(s)
            .await
            .map_err(|e| EvidenceError::Invalid(e.to_string()))?;
        cp = ledger.cosigned_checkpoint(None).await?;
    }
    let cp = cp.ok_or_else(|| EvidenceError::Invalid("no checkpoint".into()))?;
    let p = ledger
        .inclusion_proof(entry.seq as u64, cp.tree_size as u64)
        .await?
        .ok_or_else(|| EvidenceError::Invalid("entry outside the checkpoint".into()))?;
    Ok(ProofBundle {
        seq: entry.seq,
        body: entry.body,
        leaf_index: p.leaf_index,
        tree_size: p.tree_size,
        leaf_hash: B64.encode(p.leaf_hash),
        proof: p.proof.iter().map(|h| B64.encode(h)).collect(),
        checkpoint: cp.note,
    })
}

/// Checks a bundle offline with `key`; `Err` names what does not hold.
pub fn verify_bundle(b: &ProofBundle, key: &NoteVerifier) -> Result<Checkpoint, String> {
    let cp = Checkpoint::open(&b.checkpoint, key).map_err(|e| format!("checkpoint: {e}"))?;
    if cp.size != b.tree_size {
        return Err("the proof is for another tree size than the checkpoint".into());
    }
    let leaf = hash::leaf_hash(b.body.as_bytes());
    if B64.encode(leaf) != b.leaf_hash {
        return Err("the body does not hash to the leaf hash".into());
    }
    let proof = b
        .proof
        .iter()
        .map(|h| B64.decode(h).ok().and_then(|h| hash::from_slice(&h)))
        .collect::<Option<Vec<Hash>>>()
        .ok_or("a proof hash is not base64 of 32 bytes")?;
    if b.leaf_index + 1 != b.seq as u64
        || !merkle::verify_inclusion(b.leaf_index, cp.size, &leaf, &proof, &cp.root)
    {
        return Err("the inclusion proof does not lead to the checkpoint's root".into());
    }
    Ok(cp)
}

/// What checking the stored witness cosignatures found.
#[derive(Debug, Default, Serialize)]
pub struct CosignatureCheck {
    /// Cosignatures by a configured witness that verified.
    pub verified: usize,
    /// Cosignatures by witnesses not configured (not checked).
    pub unknown_witness: usize,
    /// The first one that did not verify.
    pub problem: Option<String>,
}

/// Checks every stored cosignature by one of `witnesses` against the
/// stored checkpoint it cosigns.
pub async fn verify_cosignatures(
    ledger: &Ledger,
    witnesses: &[CosignerVerifier],
) -> Result<CosignatureCheck, EvidenceError> {
    let mut check = CosignatureCheck::default();
    for c in ledger.cosignatures(None).await? {
        let Some(w) = witnesses.iter().find(|w| w.label() == c.witness) else {
            check.unknown_witness += 1;
            continue;
        };
        let note = ledger
            .stored_checkpoint(Some(c.tree_size))
            .await?
            .map(|cp| cp.note);
        let text = note.as_deref().and_then(split_note).map(|(t, _)| t);
        match text.and_then(|t| w.verify_line(t, &c.line)) {
            Some(_) => check.verified += 1,
            None => {
                check.problem = Some(format!(
                    "the cosignature of checkpoint {} by {} does not verify",
                    c.tree_size,
                    w.name()
                ));
                return Ok(check);
            }
        }
    }
    Ok(check)
}
