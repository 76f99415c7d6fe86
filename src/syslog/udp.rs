//! The UDP syslog listener (RFC 5426): one message per datagram. Datagrams
//! are stored concurrently up to `max_connections` at once; beyond that
//! they are dropped and counted (UDP has no back-pressure), which
//! `/metrics` reports as `vellum_syslog_udp_dropped_total`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::atna::XmlLimits;
use crate::config::SyslogSettings;
use crate::intake::Intake;

use super::process::{self, Context};

/// Largest UDP payload (RFC 5426 §3.2: receivers should accept 65,507 octets).
const MAX_DATAGRAM: usize = 65_535;

pub struct UdpListener {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    ctx: Arc<Context>,
    settings: SyslogSettings,
}

impl UdpListener {
    pub async fn bind(
        addr: SocketAddr,
        intake: Intake,
        settings: SyslogSettings,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        Ok(UdpListener {
            socket: Arc::new(socket),
            local,
            ctx: Arc::new(Context {
                intake,
                privacy: settings.privacy.clone(),
                limits: XmlLimits {
                    max_bytes: settings.max_frame_bytes,
                    ..XmlLimits::default()
                },
            }),
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives until `shutdown` completes, then waits for the datagrams
    /// being stored.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(self.settings.max_connections));
        let stopping = Arc::new(AtomicBool::new(false));
        tokio::select! {
            _ = self.receive_loop(&limit, &stopping) => {}
            _ = shutdown => {}
        }
        stopping.store(true, Ordering::Relaxed);
        // Every permit back: every datagram in flight is stored (or lost).
        let _ = limit
            .acquire_many(self.settings.max_connections as u32)
            .await;
        tracing::info!("syslog: UDP listener stopped");
    }

    async fn receive_loop(&self, limit: &Arc<Semaphore>, stopping: &Arc<AtomicBool>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error_kind = ?e.kind(), "syslog: UDP receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                process::udp_dropped();
                continue;
            };
            // Trailing LF/NUL some senders add is not part of the message.
            let mut end = n;
            while end > 0 && matches!(buf[end - 1], b'\n' | b'\r' | b'\0') {
                end -= 1;
            }
            let datagram = buf[..end].to_vec();
            let ctx = self.ctx.clone();
            let stopping = stopping.clone();
            tokio::spawn(async move {
                process::store_until_stored(&ctx, &datagram, peer, None, "udp", &stopping).await;
                drop(permit);
            });
        }
    }
}
