//! The MLLP TCP listener (mini-redis `server.rs`): an accept loop bounded
//! by a connection-limit semaphore, one `Handler` per connection, graceful
//! shutdown (a broadcast tells handlers to stop after the messages already
//! received; an mpsc whose closing says every handler is done).
//!
//! Logging: counts, durations and the peer's port only — never message
//! content, control ids or identifiers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openssl::ssl::SslAcceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::auth::client_cert::ClientCertMap;
use crate::config::MllpSettings;
use crate::hl7v2::{self, AckCode, ErrCode, Kind, Origin, Refusal};
use vellum_ledger::Ledger;

use super::ack;
use super::codec::{self, Frame};
use super::connection::{Connection, Read};
use super::index::InferenceIndex;
use super::process::{self, Context, Step};
use super::tls;
use crate::intake::Intake;
use crate::tls_refusals::{RefusalLog, Refused};

/// A bound MLLP listener, not yet accepting.
pub struct MllpListener {
    listener: TcpListener,
    local: SocketAddr,
    ctx: Arc<Context>,
    settings: MllpSettings,
    tls: Option<Arc<SslAcceptor>>,
    /// With mutual TLS: the certificates that may send, and as whom.
    clients: Option<Arc<ClientCertMap>>,
    /// With TLS: where refused client certificates are recorded.
    refusals: Option<Arc<RefusalLog>>,
}

impl MllpListener {
    pub async fn bind(
        addr: SocketAddr,
        ledger: Ledger,
        settings: MllpSettings,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::from_listener(listener, ledger, settings)
    }

    /// Wraps an already bound std listener.
    pub fn from_std(
        listener: std::net::TcpListener,
        ledger: Ledger,
        settings: MllpSettings,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Self::from_listener(TcpListener::from_std(listener)?, ledger, settings)
    }

    fn from_listener(
        listener: TcpListener,
        ledger: Ledger,
        settings: MllpSettings,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let tls = match &settings.tls {
            Some(t) => Some(Arc::new(tls::acceptor(t)?)),
            None => None,
        };
        let intake = Intake::new(ledger.clone(), None, vellum_json::Limits::INTERNAL);
        let refusals = tls
            .is_some()
            .then(|| Arc::new(RefusalLog::new(intake.clone(), "mllp", local)));
        Ok(MllpListener {
            listener,
            local,
            refusals,
            ctx: Arc::new(Context {
                intake,
                ledger,
                index: InferenceIndex::new(),
                privacy: settings.privacy.clone(),
            }),
            settings,
            tls,
            clients: None,
        })
    }

    /// On a TLS listener with a client CA, each connection's certificate
    /// must map through `clients` (`auth.clients`) to a principal with the
    /// `source` role; its subject is the sender, the scope of MSH-10. Other
    /// certificates get every message answered AR. Call before `run`.
    pub fn with_clients(mut self, clients: &ClientCertMap) -> Self {
        let client_ca = self
            .settings
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some());
        self.clients = clients.for_listener(self.tls.is_some(), client_ca);
        self
    }

    /// Enriches mapped events with pixel digests; `None` (the
    /// default) skips the DICOM step. Call before `run`.
    pub fn with_dicom(mut self, dicom: Option<Arc<crate::dicom::service::DicomService>>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.intake = ctx.intake.clone().with_dicom(dicom);
        }
        self
    }

    /// True when the listener speaks TLS only.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts until `shutdown` completes, then stops accepting, lets every
    /// handler finish the messages it has received (append + ACK) and
    /// returns when all are done.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (notify_shutdown, _) = broadcast::channel::<()>(1);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let limit = Arc::new(Semaphore::new(self.settings.max_connections));
        let peers = crate::peers::PeerCounts::default();
        tokio::select! {
            _ = self.accept_loop(&limit, &peers, &notify_shutdown, &done_tx) => {}
            _ = shutdown => {
                tracing::info!("mllp: shutting down, finishing in-flight messages");
            }
        }
        let MllpListener { listener, .. } = self;
        drop(listener);
        drop(notify_shutdown);
        drop(done_tx);
        let _ = done_rx.recv().await;
        tracing::info!("mllp: stopped");
    }

    async fn accept_loop(
        &self,
        limit: &Arc<Semaphore>,
        peers: &crate::peers::PeerCounts,
        notify_shutdown: &broadcast::Sender<()>,
        done_tx: &mpsc::Sender<()>,
    ) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let (socket, peer) = match self.listener.accept().await {
                Ok(s) => {
                    backoff = Duration::from_millis(10);
                    s
                }
                Err(e) => {
                    // EMFILE and friends: back off, never give up.
                    tracing::warn!(error_kind = ?e.kind(), "mllp: accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            // One address may not take every connection slot: refuse (close)
            // its connections beyond the per-peer cap at once.
            let Some(peer_slot) = peers.claim(peer.ip(), self.settings.max_connections_per_peer)
            else {
                tracing::warn!(
                    peer_port = peer.port(),
                    limit = self.settings.max_connections_per_peer,
                    "mllp: connection refused, peer is at limits.mllp_max_connections_per_peer"
                );
                drop(socket);
                continue;
            };
            let _ = socket.set_nodelay(true);
            let local = socket.local_addr().unwrap_or(self.local);
            let handler = Handler {
                ctx: self.ctx.clone(),
                settings: self.settings.clone(),
                tls: self.tls.clone(),
                clients: self.clients.clone(),
                refusals: self.refusals.clone(),
                sender: Ok(None),
                origin: Origin { peer, local },
                shutdown: notify_shutdown.subscribe(),
                _done: done_tx.clone(),
            };
            tokio::spawn(async move {
                handler.run(socket).await;
                drop(peer_slot);
                drop(permit);
            });
        }
    }
}

struct Handler {
    ctx: Arc<Context>,
    settings: MllpSettings,
    tls: Option<Arc<SslAcceptor>>,
    clients: Option<Arc<ClientCertMap>>,
    refusals: Option<Arc<RefusalLog>>,
    /// Who this connection's messages come from: `Ok(None)` without mutual
    /// TLS, `Err(why)` for a certificate that may not send.
    sender: Result<Option<Arc<str>>, String>,
    origin: Origin,
    shutdown: broadcast::Receiver<()>,
    _done: mpsc::Sender<()>,
}

/// A message being answered: its ACK is ready or still being stored.
enum Pending {
    Ready(Option<String>),
    Task(JoinHandle<Option<String>>),
}

impl Handler {
    async fn run(mut self, socket: TcpStream) {
        let started = Instant::now();
        let stream: Box<dyn tls::Io> = match &self.tls {
            None => Box::new(socket),
            Some(acceptor) => {
                let handshake = tokio::select! {
                    r = tokio::time::timeout(self.settings.read_timeout, tls::accept(acceptor, socket)) => r,
                    _ = self.shutdown.recv() => return,
                };
                match handshake {
                    Ok(Ok(s)) => {
                        if let Some(clients) = &self.clients {
                            self.sender = self.authorise(clients, s.ssl().peer_certificate());
                        }
                        Box::new(s)
                    }
                    Ok(Err(tls::HandshakeError::Certificate(why))) => {
                        if let Some(r) = &self.refusals {
                            r.record(self.origin.peer, Refused::Unauthenticated(&why));
                        }
                        tracing::warn!(
                            peer_port = self.origin.peer.port(),
                            reason = %why,
                            "mllp: client certificate refused in the TLS handshake"
                        );
                        return;
                    }
                    _ => {
                        tracing::debug!(
                            peer_port = self.origin.peer.port(),
                            "mllp: TLS handshake failed or timed out"
                        );
                        return;
                    }
                }
            }
        };
        let mut conn = Connection::new(stream, self.settings.max_frame_bytes);
        let mut messages = 0usize;
        let mut why = "closed by peer";
        loop {
            // Until its first message a connection gets the short first-byte
            // timeout; after that, the idle read timeout.
            let timeout = if messages == 0 {
                self.settings
                    .first_byte_timeout
                    .min(self.settings.read_timeout)
            } else {
                self.settings.read_timeout
            };
            let read = tokio::select! {
                r = conn.read_frames(timeout) => r,
                _ = self.shutdown.recv() => {
                    // Answer what was already received completely, then close.
                    let frames = conn.buffered();
                    messages += frames.len();
                    let _ = self.answer(&mut conn, frames).await;
                    why = "server shutdown";
                    break;
                }
            };
            match read {
                Ok(Read::Frames(frames)) => {
                    messages += frames.len();
                    if self.answer(&mut conn, frames).await.is_err() {
                        why = "write failed";
                        break;
                    }
                }
                Ok(Read::TooLarge(head)) => {
                    let ack = too_large_ack(&head, self.settings.max_frame_bytes);
                    let mut out = Vec::new();
                    codec::encode(ack.as_bytes(), &mut out);
                    let _ = conn.write_all(&out, self.settings.read_timeout).await;
                    why = "frame too large";
                    break;
                }
                Ok(Read::Closed { partial }) => {
                    if partial {
                        why = "closed by peer inside a frame";
                    }
                    break;
                }
                Ok(Read::TimedOut) => {
                    why = "read timeout";
                    break;
                }
                Err(_) => {
                    why = "read error";
                    break;
                }
            }
        }
        conn.shutdown().await;
        tracing::debug!(
            peer_port = self.origin.peer.port(),
            messages,
            discarded_bytes = conn.discarded(),
            duration_ms = started.elapsed().as_millis() as u64,
            reason = why,
            "mllp: connection closed"
        );
    }

    /// The sender a verified client certificate speaks for, or why it may
    /// not send (logged once per connection, without message content).
    fn authorise(
        &self,
        clients: &ClientCertMap,
        cert: Option<openssl::x509::X509>,
    ) -> Result<Option<Arc<str>>, String> {
        match clients.sender(cert.as_deref()) {
            Ok(subject) => Ok(Some(subject.into())),
            Err(why) => {
                if let Some(r) = &self.refusals {
                    let text = why.to_string();
                    r.record(self.origin.peer, Refused::of_sender(&why, &text));
                }
                tracing::warn!(
                    peer_port = self.origin.peer.port(),
                    reason = %why,
                    "mllp: client certificate may not send; every message is answered AR"
                );
                Err(why.to_string())
            }
        }
    }

    /// Processes `frames` (concurrently, except that an AI correction waits
    /// for the messages before it) and writes their ACKs in order.
    async fn answer(&self, conn: &mut Connection, frames: Vec<Frame>) -> std::io::Result<()> {
        if frames.is_empty() {
            return Ok(());
        }
        let single = frames.len() == 1;
        let mut pending: Vec<Pending> = Vec::with_capacity(frames.len());
        for Frame(raw) in frames {
            let sender = match &self.sender {
                Ok(sender) => sender.clone(),
                Err(why) => {
                    let ack = process::not_authorised(&raw, self.origin, why);
                    pending.push(Pending::Ready(ack));
                    continue;
                }
            };
            match process::read(&raw, self.origin) {
                Step::Answer(ack) => pending.push(Pending::Ready(ack)),
                Step::Store(inbound, received) => {
                    if matches!(inbound.kind, Kind::AiOverride { .. }) {
                        settle(&mut pending).await;
                    }
                    if single {
                        // The common case (one message per read): no task.
                        let ack = process::store(self.ctx.clone(), inbound, received, sender).await;
                        pending.push(Pending::Ready(ack));
                    } else {
                        let ctx = self.ctx.clone();
                        pending.push(Pending::Task(tokio::spawn(process::store(
                            ctx, inbound, received, sender,
                        ))));
                    }
                }
            }
        }
        settle(&mut pending).await;
        let mut out = Vec::new();
        for p in pending {
            if let Pending::Ready(Some(ack)) = p {
                codec::encode(ack.as_bytes(), &mut out);
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        conn.write_all(&out, self.settings.read_timeout).await
    }
}

/// Waits for every task in `pending` (in order).
async fn settle(pending: &mut [Pending]) {
    for p in pending.iter_mut() {
        if let Pending::Task(handle) = p {
            let ack = match handle.await {
                Ok(ack) => ack,
                // A panicked task: whether it stored is unknown; AE makes the
                // sender resend, and the MSH-10 key makes that safe.
                Err(_) => Some(ack::build(
                    None,
                    AckCode::Error,
                    Some(&Refusal::error(
                        ErrCode::InternalError,
                        "MSH",
                        1,
                        0,
                        "internal error; resend the message",
                    )),
                    None,
                )),
            };
            *p = Pending::Ready(ack);
        }
    }
}

/// The reject for an oversize frame, built from its MSH when readable.
fn too_large_ack(head: &Bytes, limit: usize) -> String {
    let header = hl7v2::Header::sniff(head);
    let r = Refusal::reject(
        ErrCode::InternalError,
        "MSH",
        1,
        0,
        &format!("message larger than the limit of {limit} bytes; the connection is closed"),
    );
    ack::build(header.as_ref(), AckCode::Reject, Some(&r), None)
}
