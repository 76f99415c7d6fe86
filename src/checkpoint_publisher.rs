//! Publishes each new checkpoint outside the database, in the background:
//! writes it to `evidence.checkpoint_dir`, hands it to
//! `evidence.checkpoint_command`, and sends it to the configured witnesses
//! (C2SP tlog-witness), storing the cosignatures they return. Checkpoints
//! are found by reading the store, so those made by the timer, by
//! `POST /admin/checkpoints` or by `vellum checkpoint` in another process
//! are all published. Nothing here blocks an append: a failure is logged
//! (without content) and counted in `vellum_checkpoint_publish_failures`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::config::{PublishSettings, WitnessSettings, WitnessTarget};
use vellum_ledger::cosignature::split_note;
use vellum_ledger::store::StoredCheckpoint;
use vellum_ledger::Ledger;

/// How often the store is asked for a new checkpoint.
const POLL: Duration = Duration::from_secs(1);
/// Longest wait before a failed witness is asked again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Checkpoints handed off per store read.
const PAGE: i64 = 100;

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the command could not be started: {0}")]
    Spawn(std::io::Error),
    #[error("the command exited with {0}")]
    Exit(std::process::ExitStatus),
    #[error("the command did not finish within {0:?} and was killed")]
    Timeout(Duration),
    #[error("the witness answered {0}")]
    Status(u16),
    #[error("the witness could not be reached: {0}")]
    Http(String),
    #[error("the witness answered no valid cosignature by its configured key")]
    NoCosignature,
    #[error("the witness has cosigned a larger size ({0}) than this checkpoint")]
    Ahead(u64),
    #[error("store: {0}")]
    Store(#[from] vellum_ledger::store::StoreError),
    #[error("the publishing task stopped: {0}")]
    Join(String),
}

/// Where a witness stands and when to ask it again.
struct WitnessState {
    target: WitnessTarget,
    /// The largest size it cosigned (-1: none known yet).
    cosigned: Option<i64>,
    next_try: tokio::time::Instant,
    backoff: Duration,
}

/// Starts publishing when anything is configured.
pub fn spawn(
    ledger: Ledger,
    publish: PublishSettings,
    witness: &WitnessSettings,
) -> Option<tokio::task::JoinHandle<()>> {
    if !publish.is_on() && witness.targets.is_empty() {
        return None;
    }
    let client = reqwest::Client::builder()
        .timeout(witness.timeout)
        .build()
        .ok()?;
    let mut witnesses: Vec<WitnessState> = witness
        .targets
        .iter()
        .map(|t| WitnessState {
            target: t.clone(),
            cosigned: None,
            next_try: tokio::time::Instant::now(),
            backoff: POLL,
        })
        .collect();
    Some(tokio::spawn(async move {
        let mut handed: Option<i64> = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let latest = match ledger.stored_checkpoint(None).await {
                Ok(Some(latest)) => latest,
                // None yet: every checkpoint from the first on is new.
                Ok(None) => {
                    handed.get_or_insert(0);
                    continue;
                }
                Err(_) => continue,
            };
            handed = Some(hand_off_new(&ledger, &publish, handed, &latest).await);
            for w in &mut witnesses {
                ask_witness(&client, &ledger, w, &latest).await;
            }
        }
    }))
}

/// Hands off every checkpoint after `handed`; at start (`None`) only the
/// newest, to the directory, when it is not there yet. Returns the size
/// handed off last.
async fn hand_off_new(
    ledger: &Ledger,
    publish: &PublishSettings,
    handed: Option<i64>,
    latest: &StoredCheckpoint,
) -> i64 {
    let Some(mut after) = handed else {
        if let Some(dir) = &publish.checkpoint_dir {
            if !dir.join(latest.tree_size.to_string()).exists() {
                report("dir", write_to_dir(dir.clone(), latest.clone()).await);
            }
        }
        return latest.tree_size;
    };
    while after < latest.tree_size {
        let Ok(page) = ledger.checkpoints_after(after, PAGE).await else {
            break;
        };
        let Some(last) = page.last().map(|c| c.tree_size) else {
            break;
        };
        for cp in page {
            if let Some(dir) = &publish.checkpoint_dir {
                report("dir", write_to_dir(dir.clone(), cp.clone()).await);
            }
            if let Some(argv) = &publish.checkpoint_command {
                report(
                    "command",
                    run_command(argv.clone(), cp.note.clone(), publish.command_timeout).await,
                );
            }
        }
        after = last;
    }
    after.max(latest.tree_size)
}

fn report(target: &'static str, outcome: Result<(), PublishError>) {
    if let Err(e) = outcome {
        crate::metrics::global().publish_failed(target);
        tracing::warn!(target_kind = target, error = %e, "checkpoint hand-off failed");
    }
}

/// Writes `dir/<size>` and then `dir/latest`, each whole under a temporary
/// name and then renamed, so a reader never sees half a checkpoint.
async fn write_to_dir(dir: PathBuf, cp: StoredCheckpoint) -> Result<(), PublishError> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_whole(&dir, &cp.tree_size.to_string(), &cp.note)?;
        write_whole(&dir, "latest", &cp.note)
    })
    .await
    .map_err(|e| PublishError::Join(e.to_string()))?
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_whole(dir: &Path, name: &str, text: &str) -> Result<(), PublishError> {
    use std::io::Write as _;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Runs `argv` (no shell) with `note` on stdin; kills it after `timeout`.
async fn run_command(
    argv: Vec<String>,
    note: String,
    timeout: Duration,
) -> Result<(), PublishError> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| PublishError::Spawn(std::io::Error::other("no program")))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(PublishError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its input is judged by its exit.
            let _ = stdin.write_all(note.as_bytes());
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(PublishError::Exit(status)),
                Ok(None) if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(PublishError::Timeout(timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(PublishError::Spawn(e)),
            }
        }
    })
    .await
    .map_err(|e| PublishError::Join(e.to_string()))?
}

/// Sends `latest` to one witness when it has not cosigned it yet and its
/// back-off has passed.
async fn ask_witness(
    client: &reqwest::Client,
    ledger: &Ledger,
    w: &mut WitnessState,
    latest: &StoredCheckpoint,
) {
    let now = tokio::time::Instant::now();
    if now < w.next_try {
        return;
    }
    let cosigned = match w.cosigned {
        Some(n) => n,
        None => match ledger.latest_cosigned(&w.target.vkey.label()).await {
            Ok(n) => *w.cosigned.insert(n),
            Err(_) => return,
        },
    };
    if cosigned >= latest.tree_size {
        return;
    }
    match submit(client, ledger, &w.target, cosigned.max(0) as u64, latest).await {
        Ok(()) => {
            w.cosigned = Some(latest.tree_size);
            w.backoff = POLL;
        }
        Err(e) => {
            crate::metrics::global().publish_failed("witness");
            tracing::warn!(
                witness = w.target.vkey.name(),
                size = latest.tree_size,
                error = %e,
                "a witness did not cosign the checkpoint"
            );
            w.next_try = now + w.backoff;
            w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
            // Ask the store again: another process may have stored one.
            w.cosigned = None;
        }
    }
}

/// One tlog-witness exchange: `add-checkpoint` from `old`, retried once
/// from the size the witness reports on 409; the returned cosignature is
/// verified with the configured vkey and stored.
async fn submit(
    client: &reqwest::Client,
    ledger: &Ledger,
    target: &WitnessTarget,
    mut old: u64,
    cp: &StoredCheckpoint,
) -> Result<(), PublishError> {
    let size = cp.tree_size.max(0) as u64;
    let text = split_note(&cp.note).map_or("", |(t, _)| t);
    for _ in 0..2 {
        let proof = if old == 0 {
            Vec::new()
        } else {
            ledger
                .consistency_proof(old, size)
                .await?
                .ok_or(PublishError::Ahead(old))?
        };
        let mut body = format!("old {old}\n");
        for h in &proof {
            body.push_str(&B64.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&cp.note);
        let mut req = client
            .post(&target.url)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body);
        if let Some(t) = &target.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| PublishError::Http(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let is_size = resp
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/x.tlog.size"));
        let answer = resp
            .text()
            .await
            .map_err(|e| PublishError::Http(e.without_url().to_string()))?;
        match status {
            200 => {
                let line = target
                    .vkey
                    .find(text, &answer)
                    .ok_or(PublishError::NoCosignature)?;
                ledger
                    .store_cosignature(cp.tree_size, &target.vkey.label(), line)
                    .await?;
                crate::metrics::global().witness_cosignatures.inc();
                return Ok(());
            }
            409 if is_size => {
                let known: u64 = answer
                    .trim()
                    .parse()
                    .map_err(|_| PublishError::Status(409))?;
                if known > size {
                    return Err(PublishError::Ahead(known));
                }
                if known == old {
                    return Err(PublishError::Status(409));
                }
                old = known;
            }
            other => return Err(PublishError::Status(other)),
        }
    }
    Err(PublishError::Status(409))
}
