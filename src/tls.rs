//! The TLS server context every listener shares: Mozilla "intermediate"
//! settings (TLS 1.2+), the certificate chain and key, and — with a client
//! CA — mandatory client certificates.

use std::io;
use std::path::Path;

use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod, SslVerifyMode};

/// A server context from these files; errors name `listener` (e.g.
/// "HTTP TLS") and the file at fault, never key material.
pub fn server_builder(
    listener: &str,
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> io::Result<SslAcceptorBuilder> {
    let other = |what: &str, e: openssl::error::ErrorStack| {
        io::Error::other(format!("{listener}: {what}: {e}"))
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| other("context", e))?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| other("certificate", e))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| other("private key", e))?;
    b.check_private_key()
        .map_err(|e| other("key does not match the certificate", e))?;
    if let Some(ca) = client_ca {
        b.set_ca_file(ca).map_err(|e| other("client CA", e))?;
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    Ok(b)
}
