//! HTTPS (openssl): Mozilla "intermediate" settings (TLS 1.2+), the
//! configured certificate chain and key, optionally mandatory client
//! certificates. The certificate can be replaced without a restart: every
//! handshake switches to the current context in the server-name callback
//! (called for every ClientHello, with or without SNI), and
//! [`CertReloader::reload`] builds a new current context from the files.

use std::any::Any;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use actix_tls::accept::openssl::TlsStream;
use actix_web::dev::Extensions;
use openssl::ssl::{select_next_proto, AlpnError, SniError, SslAcceptorBuilder, SslContext};
use openssl::x509::X509;

use crate::config::HttpTls;

/// An acceptor built from the files as they are now.
fn builder(tls: &HttpTls) -> io::Result<SslAcceptorBuilder> {
    let mut b =
        crate::tls::server_builder("HTTP TLS", &tls.cert, &tls.key, tls.client_ca.as_deref())?;
    // ALPN is chosen by the context current at the handshake (after the
    // switch below), so every context offers what actix-web speaks.
    b.set_alpn_select_callback(|_, client| {
        select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
    });
    Ok(b)
}

/// The verified client certificate of a TLS connection (mutual TLS), in
/// the connection's extensions (`ServiceRequest::conn_data`).
#[derive(Clone)]
pub struct PeerCertificate(pub X509);

/// `HttpServer::on_connect`: keeps the peer's certificate, present only
/// when the handshake verified it against `http_tls_client_ca`.
pub fn capture_peer_certificate(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tls) = conn.downcast_ref::<TlsStream<tokio::net::TcpStream>>() {
        if let Some(cert) = tls.ssl().peer_certificate() {
            ext.insert(PeerCertificate(cert));
        }
    }
}

/// Re-reads the TLS files into the context new connections use.
#[derive(Clone)]
pub struct CertReloader {
    tls: HttpTls,
    current: Arc<RwLock<SslContext>>,
}

impl CertReloader {
    /// Builds a context from the files and makes it current. On error the
    /// previous context stays in use.
    pub fn reload(&self) -> io::Result<()> {
        let ctx = builder(&self.tls)?.build().into_context();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = ctx;
        Ok(())
    }
}

/// The acceptor for `HttpServer::listen_openssl`, and its reloader.
pub fn acceptor(tls: &HttpTls) -> io::Result<(SslAcceptorBuilder, CertReloader)> {
    let current = Arc::new(RwLock::new(builder(tls)?.build().into_context()));
    let mut b = builder(tls)?;
    let shared = current.clone();
    b.set_servername_callback(move |ssl, _alert| {
        let ctx = shared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ssl.set_ssl_context(&ctx).map_err(|_| SniError::ALERT_FATAL)
    });
    Ok((
        b,
        CertReloader {
            tls: tls.clone(),
            current,
        },
    ))
}

/// Reloads the certificate on every SIGHUP, for as long as the process
/// runs. A failed reload is logged and the previous certificate kept.
pub async fn reload_on_sighup(reloader: CertReloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("HTTP TLS: cannot listen for SIGHUP; certificate reload is off");
            return;
        };
        while hup.recv().await.is_some() {
            match reloader.reload() {
                Ok(()) => tracing::info!("HTTP TLS: certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "HTTP TLS: reload failed; keeping the previous certificate")
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop(reloader);
}
