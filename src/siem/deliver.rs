//! Delivery of one batch to one receiver, acknowledged or failed.
//!
//! Syslog over TCP has no acknowledgements (RFC 6587), so each batch goes
//! over its own connection: after the last frame vellum closes its sending
//! side (TLS `close_notify`, then TCP FIN) and waits for the receiver to
//! close in turn. A receiver closes only after it has read everything up to
//! vellum's close, so its close is the acknowledgement of the whole batch;
//! a connection that breaks first leaves the batch unacknowledged, and it
//! is sent again. Over HTTP, a 2xx answer acknowledges the batch.

use std::pin::Pin;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::config::Secret;
use crate::config::{Endpoint, ExportTls};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the collector answered HTTP {0}")]
    Status(u16),
    #[error("the receiver did not acknowledge within the timeout")]
    Timeout,
    #[error("{0} is not a valid HTTP header")]
    Header(&'static str),
}

fn tls_error(e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Tls(e.to_string())
}

/// A syslog receiver over TCP, or over TLS with this client context.
pub struct SyslogTarget {
    endpoint: Endpoint,
    tls: Option<SslConnector>,
}

impl SyslogTarget {
    pub fn tcp(endpoint: Endpoint) -> Self {
        SyslogTarget {
            endpoint,
            tls: None,
        }
    }

    /// TLS 1.2+ that verifies the receiver's certificate against `tls.ca`
    /// (else the system's trust store) and its name against the host.
    pub fn tls(endpoint: Endpoint, tls: &ExportTls) -> Result<Self, DeliveryError> {
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(tls_error)?;
        b.set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
            .map_err(tls_error)?;
        // A receiver that closes TCP without close_notify has still read
        // everything vellum sent before its own close.
        b.set_options(SslOptions::IGNORE_UNEXPECTED_EOF);
        if let Some(ca) = &tls.ca {
            b.set_ca_file(ca)
                .map_err(|e| tls_error(format!("export.tls_ca: {e}")))?;
        }
        if let Some((cert, key)) = &tls.client {
            b.set_certificate_chain_file(cert)
                .map_err(|e| tls_error(format!("export.tls_client_cert: {e}")))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| tls_error(format!("export.tls_client_key: {e}")))?;
            b.check_private_key()
                .map_err(|e| tls_error(format!("client key does not match: {e}")))?;
        }
        Ok(SyslogTarget {
            endpoint,
            tls: Some(b.build()),
        })
    }

    /// Sends `frames` (octet-counted messages) over a new connection and
    /// waits for the receiver to close it (the acknowledgement).
    pub async fn deliver(&self, frames: &[u8]) -> Result<(), DeliveryError> {
        let tcp = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port)).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => send_and_await_close(tcp, frames).await,
            Some(connector) => {
                let ssl = connector
                    .configure()
                    .and_then(|c| c.into_ssl(&self.endpoint.host))
                    .map_err(tls_error)?;
                let mut s = SslStream::new(ssl, tcp).map_err(tls_error)?;
                Pin::new(&mut s).connect().await.map_err(tls_error)?;
                send_and_await_close(s, frames).await
            }
        }
    }
}

async fn send_and_await_close<S>(mut s: S, frames: &[u8]) -> Result<(), DeliveryError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(frames).await?;
    s.flush().await?;
    s.shutdown().await?;
    // Receivers send nothing back; whatever comes is read and dropped
    // until their close.
    let mut buf = [0u8; 1024];
    while s.read(&mut buf).await? > 0 {}
    Ok(())
}

/// A JSON Lines collector over HTTP(S).
pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    /// The token header, marked sensitive (kept out of debug output).
    header: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

impl HttpTarget {
    pub fn new(
        url: String,
        header: Option<(String, Secret<String>)>,
        tls: &ExportTls,
        timeout: std::time::Duration,
    ) -> Result<Self, DeliveryError> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .min_tls_version(reqwest::tls::Version::TLS_1_2);
        if let Some(ca) = &tls.ca {
            let pem = std::fs::read(ca)?;
            for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(tls_error)? {
                b = b.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = &tls.client {
            let (cert, key) = (std::fs::read(cert)?, std::fs::read(key)?);
            b = b.identity(reqwest::Identity::from_pkcs8_pem(&cert, &key).map_err(tls_error)?);
        }
        let header = match header {
            None => None,
            Some((name, value)) => {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| DeliveryError::Header("export.http_header_name"))?;
                let mut value = reqwest::header::HeaderValue::from_str(value.expose())
                    .map_err(|_| DeliveryError::Header("export.http_header_value"))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(HttpTarget {
            client: b.build().map_err(tls_error)?,
            url,
            header,
        })
    }

    /// POSTs `lines` (JSON Lines); any 2xx acknowledges them.
    pub async fn deliver(&self, lines: Vec<u8>) -> Result<(), DeliveryError> {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(lines);
        if let Some((name, value)) = &self.header {
            req = req.header(name, value.clone());
        }
        let status = req.send().await?.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}
