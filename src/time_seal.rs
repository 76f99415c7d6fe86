//! RFC 3161 time seals of checkpoints: a background task sends each new
//! checkpoint's signed note (its SHA-256) to the configured time-stamping
//! authorities, verifies the tokens and stores them insert-only; the export
//! writes them beside the checkpoint and the offline and stored checks
//! verify them. The DER and CMS work lives in vellum-ledger (rfc3161.rs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openssl::x509::store::X509Store;
use vellum_ledger::rfc3161::{self, SealError};
use vellum_ledger::store::StoredTimeSeal;
use vellum_ledger::Ledger;

use crate::config::EvidenceSettings;

/// How long one TSA request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait before a TSA that failed is asked again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How an export names the n-th token of its checkpoint (n from 1).
pub const EXPORT_PREFIX: &str = "checkpoint.tsr.";

#[derive(Debug, thiserror::Error)]
pub enum TimeSealError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the TSA could not be reached or answered HTTP {0}")]
    Transport(String),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("store: {0}")]
    Store(#[from] vellum_ledger::store::StoreError),
}

impl TimeSealError {
    /// The `outcome` label of a failure in `vellum_time_seals_total`.
    fn outcome(&self) -> &'static str {
        match self {
            TimeSealError::Transport(_) => "unreachable",
            TimeSealError::Seal(SealError::Refused(_) | SealError::NoToken) => "refused",
            TimeSealError::Store(_) => "store_error",
            TimeSealError::File { .. } | TimeSealError::Seal(_) => "invalid",
        }
    }
}

/// Reads the trusted TSA certificates (PEM).
pub fn read_trust(path: &Path) -> Result<X509Store, TimeSealError> {
    let file_err = |reason: String| TimeSealError::File {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
    rfc3161::trust_store(&pem).map_err(|e| file_err(e.to_string()))
}

/// Asks TSAs for tokens and checks them before they are kept.
pub struct Sealer {
    client: reqwest::Client,
    urls: Vec<String>,
    trust: X509Store,
}

impl Sealer {
    /// The sealer of `settings`, or `None` when no TSA is configured.
    pub fn from_settings(settings: &EvidenceSettings) -> Result<Option<Self>, TimeSealError> {
        let Some(ca) = settings
            .tsa_ca_file
            .as_ref()
            .filter(|_| !settings.tsa_urls.is_empty())
        else {
            return Ok(None);
        };
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| TimeSealError::Transport(e.to_string()))?;
        Ok(Some(Sealer {
            client,
            urls: settings.tsa_urls.clone(),
            trust: read_trust(ca)?,
        }))
    }

    /// One token for `note` (the checkpoint of `tree_size`) from `url`,
    /// verified: granted, signed by a trusted TSA, sealing exactly `note`,
    /// with our nonce.
    pub async fn seal(
        &self,
        url: &str,
        tree_size: i64,
        note: &str,
    ) -> Result<StoredTimeSeal, TimeSealError> {
        let req = rfc3161::request(note.as_bytes())?;
        let mut resp = self
            .client
            .post(url)
            .header("Content-Type", "application/timestamp-query")
            .header("Accept", "application/timestamp-reply")
            .body(req.der)
            .send()
            .await
            .map_err(|e| TimeSealError::Transport(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(TimeSealError::Transport(resp.status().to_string()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TimeSealError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > rfc3161::MAX_RESPONSE_BYTES {
                return Err(SealError::Der("response larger than the limit").into());
            }
            body.extend_from_slice(&chunk);
        }
        let token = rfc3161::token_of_response(&body)?;
        let info =
            rfc3161::verify_token(&token, note.as_bytes(), Some(&self.trust), Some(&req.nonce))?;
        Ok(StoredTimeSeal {
            tree_size,
            tsa: url.to_string(),
            token,
            gen_time: info.gen_time,
        })
    }
}

/// When a TSA that failed may be asked again.
struct Backoff {
    failures: u32,
    next: tokio::time::Instant,
}

/// Seals the newest checkpoint with every TSA that has not sealed it yet,
/// checking once a second; a TSA that fails is asked again after a wait
/// doubling from 2 s up to 5 min. Appends never wait for it.
pub fn spawn_sealer(ledger: Ledger, sealer: Arc<Sealer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff: HashMap<String, Backoff> = HashMap::new();
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Ok(Some(cp)) = ledger.stored_checkpoint(None).await else {
                continue;
            };
            let Ok(done) = ledger.time_seals(Some(cp.tree_size)).await else {
                continue;
            };
            for url in &sealer.urls {
                if done.iter().any(|s| &s.tsa == url)
                    || backoff
                        .get(url)
                        .is_some_and(|b| b.next > tokio::time::Instant::now())
                {
                    continue;
                }
                let result = match sealer.seal(url, cp.tree_size, &cp.note).await {
                    Ok(seal) => ledger
                        .store_time_seal(&seal)
                        .await
                        .map_err(TimeSealError::from),
                    Err(e) => Err(e),
                };
                let metrics = crate::metrics::global();
                match result {
                    Ok(()) => {
                        backoff.remove(url);
                        metrics.time_seal("sealed");
                    }
                    Err(e) => {
                        metrics.time_seal(e.outcome());
                        let b = backoff.entry(url.clone()).or_insert(Backoff {
                            failures: 0,
                            next: tokio::time::Instant::now(),
                        });
                        b.failures = b.failures.saturating_add(1);
                        let wait = Duration::from_secs(1u64 << b.failures.min(9)).min(MAX_BACKOFF);
                        b.next = tokio::time::Instant::now() + wait;
                        // The error names what failed, never the token or note.
                        tracing::warn!(
                            tree_size = cp.tree_size,
                            tsa = %tsa_host(url),
                            error = %e,
                            retry_in_s = wait.as_secs(),
                            "time seal failed"
                        );
                    }
                }
            }
        }
    })
}

/// The host of a TSA URL, for logs (a URL may carry credentials).
fn tsa_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority)
}

/// Writes the stored tokens of checkpoint `size` as `dir/checkpoint.tsr.<n>`
/// (n from 1); returns how many.
pub async fn export_seals(ledger: &Ledger, dir: &Path, size: i64) -> Result<usize, TimeSealError> {
    let seals = ledger.time_seals(Some(size)).await?;
    for (n, s) in seals.iter().enumerate() {
        let path = dir.join(format!("{EXPORT_PREFIX}{}", n + 1));
        std::fs::write(&path, &s.token).map_err(|e| TimeSealError::File {
            path,
            reason: e.to_string(),
        })?;
    }
    Ok(seals.len())
}

/// Verifies every `dir/checkpoint.tsr.<n>` against `dir/checkpoint` and the
/// TSA certificates in `trust`. `Ok(n)`: all n hold; `Err` names the first
/// that does not.
pub fn verify_export_seals(dir: &Path, trust: &X509Store) -> Result<usize, String> {
    let note = std::fs::read(dir.join("checkpoint")).map_err(|e| format!("checkpoint: {e}"))?;
    let mut n = 0;
    loop {
        let path = dir.join(format!("{EXPORT_PREFIX}{}", n + 1));
        if !path.exists() {
            return Ok(n);
        }
        let token = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        rfc3161::verify_token(&token, &note, Some(trust), None)
            .map_err(|e| format!("{EXPORT_PREFIX}{}: {e}", n + 1))?;
        n += 1;
    }
}

/// The outcome of checking the stored seals.
#[derive(Debug, Default, serde::Serialize)]
pub struct SealVerdict {
    pub seals: usize,
    /// The first seal that does not hold, if any.
    pub problem: Option<String>,
}

/// Checks every stored token against its stored checkpoint: signature,
/// imprint, and the chain to `trust` when given.
pub async fn verify_stored(
    ledger: &Ledger,
    trust: Option<&X509Store>,
) -> Result<SealVerdict, TimeSealError> {
    let mut verdict = SealVerdict::default();
    // Seals come ordered by checkpoint size: read each checkpoint once.
    let mut current: Option<(i64, String)> = None;
    for s in ledger.time_seals(None).await? {
        if current.as_ref().map(|c| c.0) != Some(s.tree_size) {
            let note = ledger
                .stored_checkpoint(Some(s.tree_size))
                .await?
                .map(|c| c.note)
                .unwrap_or_default();
            current = Some((s.tree_size, note));
        }
        let note = current.as_ref().map_or("", |c| c.1.as_str());
        if let Err(e) = rfc3161::verify_token(&s.token, note.as_bytes(), trust, None) {
            verdict.problem = Some(format!(
                "time seal of checkpoint {} from {}: {e}",
                s.tree_size,
                tsa_host(&s.tsa)
            ));
            return Ok(verdict);
        }
        verdict.seals += 1;
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_name_the_tsa_host_without_credentials_or_path() {
        assert_eq!(
            tsa_host("https://u:p@tsa.example:8443/ts?x=1"),
            "tsa.example:8443"
        );
        assert_eq!(tsa_host("http://127.0.0.1:9/"), "127.0.0.1:9");
    }
}
