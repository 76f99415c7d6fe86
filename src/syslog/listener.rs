//! The TCP and TLS syslog listeners (shaped like the MLLP listener): an
//! accept loop bounded by a connection semaphore and a per-address cap,
//! one handler per connection, graceful shutdown (stop accepting, store
//! the frames already received whole, then close).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use openssl::ssl::SslAcceptor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};

use crate::atna::XmlLimits;
use crate::auth::client_cert::ClientCertMap;
use crate::config::SyslogSettings;
use crate::intake::Intake;
use crate::mllp::tls;
use crate::tls_refusals::RefusalLog;

use super::frame::{self, Decoded};
use super::process::{self, Context};

/// A bound syslog TCP or TLS listener, not yet accepting.
pub struct SyslogListener {
    /// Taken at shutdown to accept what the kernel already queued.
    listener: Option<TcpListener>,
    local: SocketAddr,
    ctx: Arc<Context>,
    settings: SyslogSettings,
    tls: Option<Arc<SslAcceptor>>,
    /// With mutual TLS: the certificates that may send, and as whom.
    clients: Option<Arc<ClientCertMap>>,
    /// With TLS: where refused client certificates are recorded.
    refusals: Option<Arc<RefusalLog>>,
    peers: crate::peers::PeerCounts,
}

impl SyslogListener {
    /// Binds `addr`; `tls` makes it RFC 5425 (the certificate comes from
    /// `settings.tls`).
    pub async fn bind(
        addr: SocketAddr,
        tls: bool,
        intake: Intake,
        settings: SyslogSettings,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let tls = match (tls, &settings.tls) {
            (true, Some(t)) => Some(Arc::new(tls::acceptor(t)?)),
            (true, None) => {
                return Err(std::io::Error::other(
                    "the syslog TLS listener needs a certificate and key",
                ))
            }
            (false, _) => None,
        };
        let refusals = tls
            .is_some()
            .then(|| Arc::new(RefusalLog::new(intake.clone(), "syslog", local)));
        Ok(SyslogListener {
            listener: Some(listener),
            local,
            refusals,
            ctx: Arc::new(Context {
                intake,
                privacy: settings.privacy.clone(),
                limits: XmlLimits {
                    max_bytes: settings.max_frame_bytes,
                    ..XmlLimits::default()
                },
            }),
            settings,
            tls,
            clients: None,
            peers: Default::default(),
        })
    }

    /// On a TLS listener with a client CA, each connection's certificate
    /// must map through `clients` (`auth.clients`) to a principal with the
    /// `source` role, whose subject is then the sender of its messages;
    /// other certificates have their connection closed. Call before `run`.
    pub fn with_clients(mut self, clients: &ClientCertMap) -> Self {
        let client_ca = self
            .settings
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some());
        self.clients = clients.for_listener(self.tls.is_some(), client_ca);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts until `shutdown` completes, then lets every handler store
    /// the frames it has received whole and returns when all are done.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let (notify_shutdown, _) = broadcast::channel::<()>(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let stopping = Arc::new(AtomicBool::new(false));
        let limit = Arc::new(Semaphore::new(self.settings.max_connections));
        tokio::select! {
            _ = self.accept_loop(&limit, &notify_shutdown, &done_tx, &stopping) => {}
            _ = shutdown => {
                tracing::info!(tls = self.is_tls(), "syslog: shutting down, storing received messages");
            }
        }
        stopping.store(true, Ordering::Relaxed);
        if let Some(listener) = self.listener.take() {
            self.admit_backlog(listener, &limit, &notify_shutdown, &done_tx, &stopping);
        }
        drop(notify_shutdown);
        drop(done_tx);
        let _ = done_rx.recv().await;
        tracing::info!("syslog: stopped");
    }

    /// Syslog has no acknowledgement: a sender whose connection the kernel
    /// completed but the accept loop had not yet taken (a busy server) has
    /// written its frames all the same. Closing the listener would reset
    /// those connections and lose them, so at shutdown every connection
    /// already queued is accepted (the syscall itself, not the reactor's
    /// possibly stale readiness) and drained like the others.
    fn admit_backlog(
        &self,
        listener: TcpListener,
        limit: &Arc<Semaphore>,
        notify_shutdown: &broadcast::Sender<()>,
        done_tx: &mpsc::Sender<()>,
        stopping: &Arc<AtomicBool>,
    ) {
        let listener = match listener.into_std() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error_kind = ?e.kind(), "syslog: queued connections not taken at shutdown");
                return;
            }
        };
        let mut admitted = 0usize;
        loop {
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                break;
            };
            let (socket, peer) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: the queue is empty
            };
            let socket = match socket
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(socket))
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error_kind = ?e.kind(), "syslog: a queued connection could not be taken");
                    continue;
                }
            };
            admitted += 1;
            self.spawn_handler(socket, peer, permit, notify_shutdown, done_tx, stopping);
        }
        if admitted > 0 {
            tracing::info!(
                connections = admitted,
                "syslog: queued connections taken in at shutdown"
            );
        }
    }

    async fn accept_loop(
        &self,
        limit: &Arc<Semaphore>,
        notify_shutdown: &broadcast::Sender<()>,
        done_tx: &mpsc::Sender<()>,
        stopping: &Arc<AtomicBool>,
    ) {
        let Some(listener) = &self.listener else {
            return;
        };
        let mut backoff = Duration::from_millis(10);
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let (socket, peer) = match listener.accept().await {
                Ok(s) => {
                    backoff = Duration::from_millis(10);
                    s
                }
                Err(e) => {
                    tracing::warn!(error_kind = ?e.kind(), "syslog: accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            self.spawn_handler(socket, peer, permit, notify_shutdown, done_tx, stopping);
        }
    }

    /// One handler per connection, within the per-address cap (over it,
    /// the connection is closed at once).
    fn spawn_handler(
        &self,
        socket: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        notify_shutdown: &broadcast::Sender<()>,
        done_tx: &mpsc::Sender<()>,
        stopping: &Arc<AtomicBool>,
    ) {
        let slot = self
            .peers
            .claim(peer.ip(), self.settings.max_connections_per_peer);
        let Some(slot) = slot else {
            tracing::warn!(
                peer_port = peer.port(),
                "syslog: too many connections from one address; closed"
            );
            drop(socket);
            return;
        };
        let handler = Handler {
            ctx: self.ctx.clone(),
            settings: self.settings.clone(),
            tls: self.tls.clone(),
            clients: self.clients.clone(),
            refusals: self.refusals.clone(),
            peer,
            shutdown: notify_shutdown.subscribe(),
            stopping: stopping.clone(),
            _done: done_tx.clone(),
        };
        tokio::spawn(async move {
            handler.run(socket).await;
            drop(slot);
            drop(permit);
        });
    }
}

/// At shutdown, a connection is closed once its peer sent nothing for
/// this long: every frame sent before the signal has arrived by then.
const DRAIN_QUIET: Duration = Duration::from_millis(250);

struct Handler {
    ctx: Arc<Context>,
    settings: SyslogSettings,
    tls: Option<Arc<SslAcceptor>>,
    clients: Option<Arc<ClientCertMap>>,
    refusals: Option<Arc<RefusalLog>>,
    peer: SocketAddr,
    shutdown: broadcast::Receiver<()>,
    stopping: Arc<AtomicBool>,
    _done: mpsc::Sender<()>,
}

impl Handler {
    async fn run(mut self, socket: TcpStream) {
        let started = Instant::now();
        let transport = if self.tls.is_some() { "tls" } else { "tcp" };
        let mut sender: Option<String> = None;
        let mut stream: Box<dyn tls::Io> = match &self.tls {
            None => Box::new(socket),
            Some(acceptor) => {
                // Taken in at shutdown (from the accept queue): the sender
                // has written its frames, so the handshake is finished
                // rather than abandoned (still bounded by the read timeout).
                let taken_at_shutdown = self.stopping.load(Ordering::Relaxed);
                let handshake = tokio::select! {
                    r = tokio::time::timeout(self.settings.read_timeout, tls::accept(acceptor, socket)) => r,
                    _ = self.shutdown.recv(), if !taken_at_shutdown => return,
                };
                match handshake {
                    Ok(Ok(mut s)) => {
                        if let Some(clients) = &self.clients {
                            match clients.sender(s.ssl().peer_certificate().as_deref()) {
                                Ok(subject) => sender = Some(subject),
                                Err(why) => {
                                    if let Some(r) = &self.refusals {
                                        let text = why.to_string();
                                        r.record(
                                            self.peer,
                                            crate::tls_refusals::Refused::of_sender(&why, &text),
                                        );
                                    }
                                    tracing::warn!(
                                        peer_port = self.peer.port(),
                                        reason = %why,
                                        "syslog: client certificate may not send; connection closed"
                                    );
                                    let _ = s.shutdown().await;
                                    return;
                                }
                            }
                        }
                        Box::new(s)
                    }
                    Ok(Err(tls::HandshakeError::Certificate(why))) => {
                        if let Some(r) = &self.refusals {
                            r.record(
                                self.peer,
                                crate::tls_refusals::Refused::Unauthenticated(&why),
                            );
                        }
                        tracing::warn!(
                            peer_port = self.peer.port(),
                            reason = %why,
                            "syslog: client certificate refused in the TLS handshake"
                        );
                        return;
                    }
                    _ => {
                        tracing::debug!(
                            peer_port = self.peer.port(),
                            "syslog: TLS handshake failed or timed out"
                        );
                        return;
                    }
                }
            }
        };
        let max = self.settings.max_frame_bytes;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut messages = 0usize;
        let mut why = "closed by peer";
        let stopping = self.stopping.clone();
        let is_stopping = || stopping.load(Ordering::Relaxed);
        // Set once shutdown began: the end of the drain.
        let mut drain_until: Option<Instant> = None;
        'conn: loop {
            // Store every whole frame already buffered, one at a time.
            loop {
                match frame::decode(&mut buf, max) {
                    Some(Decoded::Frame(f)) => {
                        messages += 1;
                        if !process::store_until_stored(
                            &self.ctx,
                            &f,
                            self.peer,
                            sender.as_deref(),
                            transport,
                            &stopping,
                        )
                        .await
                        {
                            why = "store unavailable at shutdown";
                            break 'conn;
                        }
                    }
                    Some(Decoded::TooLarge) => {
                        tracing::warn!(
                            peer_port = self.peer.port(),
                            limit = max,
                            "syslog: frame larger than max_frame_bytes; connection closed"
                        );
                        why = "frame too large";
                        break 'conn;
                    }
                    None => break,
                }
            }
            if is_stopping() && drain_until.is_none() {
                drain_until = Some(Instant::now() + self.settings.read_timeout);
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            let read = match drain_until {
                // Shutting down: what the peer sent before the signal may
                // still be in the socket (or on its way). Read on until the
                // peer is quiet, storing each whole frame, but no longer
                // than one read timeout.
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(DRAIN_QUIET.min(left), stream.read_buf(&mut buf))
                        .await
                    {
                        Err(_) => {
                            why = "server shutdown";
                            break;
                        }
                        Ok(r) => Ok(r),
                    }
                }
                None => tokio::select! {
                    r = tokio::time::timeout(self.settings.read_timeout, stream.read_buf(&mut buf)) => r,
                    _ = self.shutdown.recv() => {
                        // Frames already whole in the buffer are stored first.
                        self.stopping.store(true, Ordering::Relaxed);
                        continue;
                    }
                },
            };
            match read {
                Err(_) => {
                    why = "read timeout";
                    break;
                }
                Ok(Ok(0)) => {
                    // A last LF-framed message without its LF (logger sends
                    // none after the final line on some versions).
                    if !buf.is_empty() && buf.len() <= max && !buf[0].is_ascii_digit() {
                        let f = buf.split().freeze();
                        messages += 1;
                        process::store_until_stored(
                            &self.ctx,
                            &f,
                            self.peer,
                            sender.as_deref(),
                            transport,
                            &stopping,
                        )
                        .await;
                    } else if !buf.is_empty() {
                        why = "closed by peer inside a frame";
                    }
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    why = "read error";
                    break;
                }
            }
        }
        let _ = stream.shutdown().await;
        tracing::debug!(
            peer_port = self.peer.port(),
            transport,
            messages,
            duration_ms = started.elapsed().as_millis() as u64,
            reason = why,
            "syslog: connection closed"
        );
    }
}
