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

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client's certificate was refused: none was sent, or the client
    /// CA did not verify it (the text says which).
    #[error("client certificate refused: {0}")]
    Certificate(String),
    #[error(transparent)]
    Other(#[from] io::Error),
}

/// The server side of the handshake.
pub async fn accept(
    acceptor: &SslAcceptor,
    tcp: TcpStream,
) -> Result<SslStream<TcpStream>, HandshakeError> {
    let ssl = Ssl::new(acceptor.context()).map_err(|e| other("session", e))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| other("stream", e))?;
    if let Err(e) = Pin::new(&mut stream).accept().await {
        return Err(match certificate_refusal(stream.ssl(), &e) {
            Some(why) => HandshakeError::Certificate(why),
            None => HandshakeError::Other(other("handshake", e)),
        });
    }
    Ok(stream)
}

/// Why the client's certificate failed the handshake, if it did: the
/// verification result of a certificate that was sent, or openssl's
/// "peer did not return a certificate" when one was required.
fn certificate_refusal(ssl: &openssl::ssl::SslRef, e: &openssl::ssl::Error) -> Option<String> {
    let verify = ssl.verify_result();
    if verify != openssl::x509::X509VerifyResult::OK {
        return Some(verify.error_string().to_string());
    }
    let missing = e.ssl_error().is_some_and(|stack| {
        stack
            .errors()
            .iter()
            .any(|x| x.reason() == Some("peer did not return a certificate"))
    });
    missing.then(|| "no client certificate was presented".to_string())
}
