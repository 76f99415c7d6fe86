//! The evidence commands of the `vellum` binary: keygen, checkpoint,
//! export, verify (with checkpoints, or of an export), proof, verify-proof.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vellum::config::Settings;
use vellum::evidence::{self, ProofBundle};
use vellum::ledger::cosignature::{split_note, CosignerVerifier};
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
        .with_indexer(vellum::fhir::search_index::derive_rows)
        .with_keyer(vellum::intake::keys::expected_key)
        .with_summarizer(vellum::radiology::summary::of_tape);
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

/// The trusted TSA certificates: `--tsa-ca`, else the configured
/// `tsa_ca_file`; `None` when neither is set.
fn tsa_trust(
    s: Option<&Settings>,
    tsa_ca: Option<&Path>,
) -> Result<Option<openssl::x509::store::X509Store>, ExitCode> {
    let configured = s.and_then(|s| s.evidence.tsa_ca_file.as_deref());
    match tsa_ca.or(configured) {
        Some(p) => vellum::time_seal::read_trust(p)
            .map(Some)
            .map_err(|e| fail(2, e)),
        None => Ok(None),
    }
}

/// `vellum verify [--vkey FILE] [--tsa-ca FILE] [--json]`: the chain, every
/// stored checkpoint, the stored tree and the stored time seals. Exit 0 ok,
/// 1 tampered, 2 cannot check.
pub async fn verify(
    s: &Settings,
    vkey: Option<&PathBuf>,
    tsa_ca: Option<&Path>,
    json: bool,
) -> ExitCode {
    let key = match verifier(s, vkey) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let trust = match tsa_trust(Some(s), tsa_ca) {
        Ok(t) => t,
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
    let seals = match vellum::time_seal::verify_stored(&ledger, trust.as_ref()).await {
        Ok(v) => v,
        Err(e) => return fail(2, format!("cannot read the store: {e}")),
    };
    if trust.is_none() && seals.seals > 0 {
        eprintln!("vellum: no TSA certificates (--tsa-ca): time seals are checked against their checkpoints but not against a trusted TSA");
    }
    if json {
        let mut out = serde_json::to_value(&v).unwrap_or_default();
        if let Some(o) = out.as_object_mut() {
            o.insert(
                "cosignatures".into(),
                serde_json::to_value(&cosigned).unwrap_or_default(),
            );
            o.insert("time_seals".into(), serde_json::json!(&seals));
        }
        println!("{out}");
    }
    if let Some(p) = &v.problem {
        eprintln!("TAMPERED at seq {}: {:?}: {}", p.seq, p.kind, p.detail);
        return ExitCode::from(1);
    }
    if let Some(p) = cosigned.problem.as_ref().or(seals.problem.as_ref()) {
        eprintln!("TAMPERED: {p}");
        return ExitCode::from(1);
    }
    if !json {
        println!(
            "ok: {} entries, {} checkpoints, {} witness cosignatures, {} time seals, head chain hash {}",
            v.entries, v.checkpoints, cosigned.verified, seals.seals, v.head_chain_hash
        );
    }
    ExitCode::SUCCESS
}

/// The witness keys in `paths` (witness.vkey files).
fn witness_keys(paths: &[PathBuf]) -> Result<Vec<CosignerVerifier>, ExitCode> {
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| e.to_string())
                .and_then(|t| CosignerVerifier::parse(&t).map_err(|e| e.to_string()))
                .map_err(|e| fail(2, format!("{}: {e}", p.display())))
        })
        .collect()
}

/// Each witness's valid cosignature on the signed `note`, reported one per
/// line; `Err` names the first witness without one.
fn check_witnesses(note: &str, witnesses: &[CosignerVerifier]) -> Result<usize, String> {
    let (text, sigs) = split_note(note).unwrap_or((note, ""));
    for w in witnesses {
        match w.find(text, sigs) {
            Some(_) => eprintln!("witness {}: cosignature verifies", w.label()),
            None => return Err(format!("no valid cosignature by witness {}", w.label())),
        }
    }
    Ok(witnesses.len())
}

/// `vellum verify --export DIR [--vkey FILE] [--tsa-ca FILE] [--witness-vkey FILE]…`.
pub fn verify_export(
    dir: &Path,
    vkey: Option<&PathBuf>,
    tsa_ca: Option<&Path>,
    witness_vkeys: &[PathBuf],
    json: bool,
) -> ExitCode {
    let witnesses = match witness_keys(witness_vkeys) {
        Ok(w) => w,
        Err(c) => return c,
    };
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
    let trust = match tsa_trust(None, tsa_ca) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let sealed = dir
        .join(format!("{}1", vellum::time_seal::EXPORT_PREFIX))
        .exists();
    let seals = match (&trust, sealed) {
        (Some(t), _) => vellum::time_seal::verify_export_seals(dir, t),
        (None, true) => {
            eprintln!("vellum: the export has time seals; pass --tsa-ca to check them");
            Ok(0)
        }
        (None, false) => Ok(0),
    };
    let cosigned = std::fs::read_to_string(dir.join("checkpoint"))
        .map_err(|e| format!("checkpoint: {e}"))
        .and_then(|note| check_witnesses(&note, &witnesses));
    match evidence::verify_export(dir, &key) {
        Ok(v) => {
            if json {
                let mut doc = serde_json::to_value(&v).unwrap_or_default();
                if let Some(o) = doc.as_object_mut() {
                    let (n, problem) = match &seals {
                        Ok(n) => (*n, None),
                        Err(p) => (0, Some(p.as_str())),
                    };
                    o.insert(
                        "time_seals".into(),
                        serde_json::json!({ "seals": n, "problem": problem }),
                    );
                    let (n, problem) = match &cosigned {
                        Ok(n) => (*n, None),
                        Err(p) => (0, Some(p.as_str())),
                    };
                    o.insert(
                        "cosignatures".into(),
                        serde_json::json!({ "verified": n, "problem": problem }),
                    );
                }
                println!("{doc}");
            }
            match (&v.problem, &seals, &cosigned) {
                (None, Ok(n), Ok(w)) => {
                    if !json {
                        println!(
                            "ok: {} entries, tree size {}, root {}, {n} time seals, {w} witness cosignatures",
                            v.entries, v.tree_size, v.root
                        );
                    }
                    ExitCode::SUCCESS
                }
                (Some(p), _, _) => fail(1, format!("TAMPERED: {p}")),
                (None, Err(p), _) => fail(1, format!("TAMPERED: time seal {p}")),
                (None, Ok(_), Err(p)) => fail(1, format!("TAMPERED: {p}")),
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
    let sum = match evidence::export(&ledger, key.as_ref(), out, from, to).await {
        Ok(sum) => sum,
        Err(e) => return fail(2, e),
    };
    let seals = match vellum::time_seal::export_seals(&ledger, out, sum.to).await {
        Ok(n) => n,
        Err(e) => return fail(2, e),
    };
    println!(
        "exported seq {}..={} ({} entries, {seals} time seals) to {}",
        sum.from,
        sum.to,
        sum.entries,
        out.display()
    );
    ExitCode::SUCCESS
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

/// `vellum verify-proof FILE --vkey KEY [--witness-vkey FILE]…`: offline,
/// no database.
pub fn verify_proof(file: &Path, vkey: &Path, witness_vkeys: &[PathBuf]) -> ExitCode {
    let witnesses = match witness_keys(witness_vkeys) {
        Ok(w) => w,
        Err(c) => return c,
    };
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
    if let Err(e) = check_witnesses(&bundle.checkpoint, &witnesses) {
        return fail(1, format!("NOT PROVEN: {e}"));
    }
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
