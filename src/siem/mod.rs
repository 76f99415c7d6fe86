//! The SIEM feed: every committed entry, in `seq` order, at least once, to
//! each configured destination (`[export]`): RFC 5424 syslog over TCP or
//! TLS, JSON Lines over HTTP(S).
//!
//! One task per destination follows the chain through the ledger's reads
//! (it never appends, so a slow or absent receiver never slows ingestion).
//! A destination's position — the highest seq it acknowledged — is stored
//! as insert-only progress rows through the ledger; after a restart the
//! feed resumes after it, so a batch in flight at a crash is sent again
//! (receivers de-duplicate by `seq`).

mod deliver;
pub mod record;

use std::time::Duration;

use tokio::task::JoinHandle;
use vellum_ledger::Ledger;

use crate::config::ExportSettings;
pub use deliver::DeliveryError;
use deliver::{HttpTarget, SyslogTarget};
use record::{Filter, SyslogHeader};

/// The first wait after a failed delivery (it doubles up to
/// `export.retry_max_ms`).
const FIRST_RETRY: Duration = Duration::from_millis(100);

enum Target {
    Syslog(SyslogTarget, SyslogHeader),
    Http(HttpTarget),
}

/// One destination's exporter.
pub struct Exporter {
    /// The destination's name: its progress rows and its metrics label.
    name: &'static str,
    target: Target,
    ledger: Ledger,
    filter: Filter,
    batch: i64,
    poll: Duration,
    retry_max: Duration,
    timeout: Duration,
}

/// The exporters of every configured destination, started.
pub fn spawn_all(
    ledger: &Ledger,
    settings: &ExportSettings,
) -> Result<Vec<JoinHandle<()>>, DeliveryError> {
    let mut targets = Vec::new();
    if let Some(addr) = &settings.syslog_addr {
        let t = SyslogTarget::tcp(addr.clone());
        targets.push((
            "syslog-tcp",
            Target::Syslog(t, SyslogHeader::of_this_process()),
        ));
    }
    if let Some(addr) = &settings.syslog_tls_addr {
        let t = SyslogTarget::tls(addr.clone(), &settings.tls)?;
        targets.push((
            "syslog-tls",
            Target::Syslog(t, SyslogHeader::of_this_process()),
        ));
    }
    if let Some(url) = &settings.http_url {
        let t = HttpTarget::new(
            url.clone(),
            settings.http_header.clone(),
            &settings.tls,
            settings.timeout,
        )?;
        targets.push(("http", Target::Http(t)));
    }
    Ok(targets
        .into_iter()
        .map(|(name, target)| {
            let e = Exporter {
                name,
                target,
                ledger: ledger.clone(),
                filter: Filter {
                    profiles: settings.profiles.clone(),
                    types: settings.types.clone(),
                },
                batch: i64::try_from(settings.batch_max_events).unwrap_or(i64::MAX),
                poll: settings.poll,
                retry_max: settings.retry_max,
                timeout: settings.timeout,
            };
            tokio::spawn(e.run())
        })
        .collect())
}

impl Exporter {
    /// Follows the chain forever (the task is aborted at shutdown; an
    /// unacknowledged batch is simply sent again after the restart).
    async fn run(self) {
        let metrics = crate::metrics::global();
        let mut pos = self
            .retrying("read the export position", || {
                self.ledger.export_position(self.name)
            })
            .await;
        tracing::info!(
            destination = self.name,
            after_seq = pos,
            "SIEM feed started"
        );
        loop {
            let entries = self
                .retrying("read committed entries", || {
                    self.ledger.entries_after(pos, self.batch)
                })
                .await;
            if let Ok(head) = self.ledger.head().await {
                metrics.export_position(self.name, pos, head.seq);
            }
            let Some(last) = entries.last().map(|e| e.seq) else {
                tokio::time::sleep(self.poll).await;
                continue;
            };
            let records: Vec<_> = entries
                .iter()
                .filter_map(|e| self.filter.record(e))
                .collect();
            if !records.is_empty() {
                let mut backoff = FIRST_RETRY;
                loop {
                    match self.deliver(&records).await {
                        Ok(()) => break,
                        Err(e) => {
                            metrics.export_error(self.name);
                            // The lag keeps growing while the receiver is away.
                            if let Ok(head) = self.ledger.head().await {
                                metrics.export_position(self.name, pos, head.seq);
                            }
                            tracing::warn!(
                                destination = self.name,
                                error = %e,
                                retry_in_ms = backoff.as_millis() as u64,
                                "SIEM feed delivery failed; retrying"
                            );
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(self.retry_max);
                        }
                    }
                }
                metrics.export_sent(self.name, records.len() as u64);
            }
            self.retrying("record the export position", || {
                self.ledger.record_export_position(self.name, last)
            })
            .await;
            pos = last;
        }
    }

    async fn deliver(&self, records: &[record::Record<'_>]) -> Result<(), DeliveryError> {
        let send = async {
            match &self.target {
                Target::Syslog(t, header) => {
                    let mut frames = Vec::new();
                    for r in records {
                        r.syslog_frame(header, &mut frames);
                    }
                    t.deliver(&frames).await
                }
                Target::Http(t) => {
                    let mut lines = Vec::new();
                    for r in records {
                        r.json_line(&mut lines);
                    }
                    t.deliver(lines).await
                }
            }
        };
        tokio::time::timeout(self.timeout, send)
            .await
            .unwrap_or(Err(DeliveryError::Timeout))
    }

    /// Runs a store operation until it succeeds, backing off between tries.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, vellum_ledger::store::StoreError>>,
    {
        let mut backoff = FIRST_RETRY;
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    crate::metrics::global().store_error("export");
                    tracing::warn!(destination = self.name, error = %e, "SIEM feed could not {what}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry_max);
                }
            }
        }
    }
}
