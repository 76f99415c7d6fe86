//! MLLP over TLS (openssl): the server context from the configured PEM
//! files, optional client-certificate verification (mutual TLS).

use std::io;
use std::pin::Pin;

use openssl::ssl::{Ssl, SslAcceptor};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::config::MllpTls;

/// A connection's byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("MLLP TLS: {what}: {e}"))
}

/// Mozilla "intermediate" settings (TLS 1.2+), the certificate chain and
/// key, and — with a client CA — mandatory client certificates.
pub fn acceptor(tls: &MllpTls) -> io::Result<SslAcceptor> {
    let b = crate::tls::server_builder("MLLP TLS", &tls.cert, &tls.key, tls.client_ca.as_deref())?;
    Ok(b.build())
}

/// The server side of the handshake.
pub async fn accept(acceptor: &SslAcceptor, tcp: TcpStream) -> io::Result<SslStream<TcpStream>> {
    let ssl = Ssl::new(acceptor.context()).map_err(|e| other("session", e))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| other("stream", e))?;
    Pin::new(&mut stream)
        .accept()
        .await
        .map_err(|e| other("handshake", e))?;
    Ok(stream)
}
