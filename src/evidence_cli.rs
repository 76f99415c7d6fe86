//! The evidence commands of the `vellum` binary: keygen, checkpoint,
//! export, verify (with checkpoints, or of an export), proof, verify-proof.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vellum::config::Settings;
use vellum::evidence::{self, ProofBundle};
use vellum::ledger::note::{NoteSigner, NoteVerifier};
use vellum::ledger::{Ledger, WriterSettings};
use vellum::store::AnyStore;

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("vellum: {msg}");
    ExitCode::from(code)
}

/// `vellum keygen [--witness] --origin ORIGIN --out DIR`.
pub fn keygen(origin: &str, out: &Path, witness: bool) -> ExitCode {
    if witness {
        let cosigner = match vellum::ledger::cosignature::Cosigner::generate(origin) {
            Ok(c) => c,
            Err(e) => return fail(2, e),
        };
        return match evidence::write_witness_key_files(out, &cosigner) {
            Ok(()) => {
                println!("{}", cosigner.verifier().to_vkey());
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, e),
        };
    }
    let signer = match NoteSigner::generate(origin) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    match evidence::write_key_files(out, &signer) {
        Ok(()) => {
            println!("{}", signer.verifier().to_vkey());
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, e),
    }
}

/// A bar of entries verified on stderr, only when stderr is a terminal (a
/// pipe or file gets nothing extra).
fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} verified {human_pos} entries ({per_sec}) {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

async fn open(s: &Settings) -> Result<(Ledger, AnyStore), ExitCode> {
    let store = AnyStore::connect(&s.database_url, s.database_role.as_deref())
        .await
        .map_err(|e| fail(2, format!("cannot open the store: {e}")))?
        .with_indexer(vellum::fhir::search_index::rows_for_body);
    Ok((
        Ledger::start(store.clone(), WriterSettings::default()),
        store,
    ))
}

fn signer(s: &Settings) -> Result<Option<NoteSigner>, ExitCode> {
    evidence::signer_for(&s.evidence, &s.database_url, false).map_err(|e| fail(2, e))
}

/// The key checkpoints are checked with: `--vkey`, else the configured
/// signing key's public half.
fn verifier(s: &Settings, vkey: Option<&PathBuf>) -> Result<Option<NoteVerifier>, ExitCode> {
    match vkey {
        Some(p) => evidence::read_verifier(p).map(Some).map_err(|e| fail(2, e)),
        None => Ok(signer(s)?.map(|k| k.verifier())),
    }
}

/// `vellum checkpoint`: sign and store a checkpoint of the head; print it.
pub async fn checkpoint(s: &Settings) -> ExitCode {
    let Some(key) = (match signer(s) {
        Ok(k) => k,
        Err(c) => return c,
    }) else {
        return fail(
            2,
            "no signing key: set signing_key_file (VELLUM_SIGNING_KEY_FILE)",
        );
    };
    let (ledger, _) = match open(s).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    match ledger.checkpoint(&key).await {
        Ok(note) => {
            print!("{note}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, e),
    }
}

/// `vellum verify [--vkey FILE] [--json]`: the chain, every stored
/// checkpoint and the stored tree. Exit 0 ok, 1 tampered, 2 cannot check.
pub async fn verify(s: &Settings, vkey: Option<&PathBuf>, json: bool) -> ExitCode {
    let key = match verifier(s, vkey) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let (ledger, store) = match open(s).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    if key.is_none() {
        eprintln!("vellum: no verifier key (--vkey): checkpoint signatures are not checked");
    }
    let progress = progress_bar();
    let report = progress
        .clone()
        .map(|bar| Box::new(move |n: u64| bar.set_position(n)) as vellum::ledger::verify::Progress);
    let verdict = vellum::ledger::verify::verify_all_with(&store, key.as_ref(), report).await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let v = match verdict {
        Ok(v) => v,
        Err(e) => return fail(2, format!("cannot read the store: {e}")),
    };
    let witnesses: Vec<_> = s.witness.targets.iter().map(|t| t.vkey.clone()).collect();
    let cosigned = if v.problem.is_none() {
        match evidence::verify_cosignatures(&ledger, &witnesses).await {
            Ok(c) => c,
            Err(e) => return fail(2, format!("cannot read the store: {e}")),
        }
    } else {
        evidence::CosignatureCheck::default()
    };
    if json {
        let mut out = serde_json::to_value(&v).unwrap_or_default();
        if let Some(o) = out.as_object_mut() {
            o.insert(
                "cosignatures".into(),
                serde_json::to_value(&cosigned).unwrap_or_default(),
            );
        }
        println!("{out}");
    }
    match (&v.problem, &cosigned.problem) {
        (None, None) => {
            if !json {
                println!(
                    "ok: {} entries, {} checkpoints, {} witness cosignatures, head chain hash {}",
                    v.entries, v.checkpoints, cosigned.verified, v.head_chain_hash
                );
            }
            ExitCode::SUCCESS
        }
        (Some(p), _) => {
            eprintln!("TAMPERED at seq {}: {:?}: {}", p.seq, p.kind, p.detail);
            ExitCode::from(1)
        }
        (None, Some(p)) => {
            eprintln!("TAMPERED: {p}");
            ExitCode::from(1)
        }
    }
}

/// `vellum verify --export DIR [--vkey FILE]`.
pub fn verify_export(dir: &Path, vkey: Option<&PathBuf>, json: bool) -> ExitCode {
    let vkey_path = vkey.cloned().unwrap_or_else(|| dir.join("log.vkey"));
    if vkey.is_none() {
        eprintln!(
            "vellum: using the exporter's {} — pass --vkey with a key you trust",
            vkey_path.display()
        );
    }
    let key = match evidence::read_verifier(&vkey_path) {
        Ok(k) => k,
        Err(e) => return fail(2, e),
    };
    match evidence::verify_export(dir, &key) {
        Ok(v) => {
            if json {
                println!("{}", serde_json::to_string(&v).unwrap_or_default());
            }
            match &v.problem {
                None => {
                    if !json {
                        println!(
                            "ok: {} entries, tree size {}, root {}",
                            v.entries, v.tree_size, v.root
                        );
                    }
                    ExitCode::SUCCESS
                }
                Some(p) => fail(1, format!("TAMPERED: {p}")),
            }
        }
        Err(e) => fail(2, e),
    }
}

/// `vellum export --out DIR [--from SEQ] [--to SEQ]`.
pub async fn export(s: &Settings, out: &Path, from: Option<i64>, to: Option<i64>) -> ExitCode {
    let key = match signer(s) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let (ledger, _) = match open(s).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    match evidence::export(&ledger, key.as_ref(), out, from, to).await {
        Ok(sum) => {
            println!(
                "exported seq {}..={} ({} entries) to {}",
                sum.from,
                sum.to,
                sum.entries,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, e),
    }
}

/// `vellum proof --id EVENT_ID --out FILE`.
pub async fn proof(s: &Settings, id: &str, out: &Path) -> ExitCode {
    let key = match signer(s) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let (ledger, _) = match open(s).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let bundle = match evidence::proof_bundle(&ledger, key.as_ref(), id).await {
        Ok(b) => b,
        Err(e) => return fail(2, e),
    };
    let text = serde_json::to_vec_pretty(&bundle).unwrap_or_default();
    match std::fs::write(out, text) {
        Ok(()) => {
            println!("seq {} in tree of {} entries", bundle.seq, bundle.tree_size);
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, format!("{}: {e}", out.display())),
    }
}

/// `vellum verify-proof FILE --vkey KEY`: offline, no database.
pub fn verify_proof(file: &Path, vkey: &Path) -> ExitCode {
    let key = match evidence::read_verifier(vkey) {
        Ok(k) => k,
        Err(e) => return fail(2, e),
    };
    let bundle: ProofBundle = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => return fail(2, format!("{}: {e}", file.display())),
    };
    match evidence::verify_bundle(&bundle, &key) {
        Ok(cp) => {
            println!(
                "ok: seq {} is in {}'s log of {} entries (checkpoint time {})",
                bundle.seq, cp.origin, cp.size, cp.time
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("NOT PROVEN: {e}")),
    }
}
