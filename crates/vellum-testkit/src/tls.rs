//! Certificates made by the tests (openssl) and a TLS client: for the MLLP
//! and syslog TLS listeners' tests.

use std::path::Path;
use std::pin::Pin;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

fn key() -> PKey<Private> {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    PKey::from_rsa(rsa).unwrap()
}

/// A certificate for `cn`, signed by `issuer` (self-signed when `None`).
fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, ca: bool) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    } else {
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    match issuer {
        Some((issuer_cert, issuer_key)) => {
            b.set_issuer_name(issuer_cert.subject_name()).unwrap();
            b.sign(issuer_key, MessageDigest::sha256()).unwrap();
        }
        None => {
            b.set_issuer_name(&name).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

fn rand_serial() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff
}

/// A throwaway PKI for TLS tests: a CA, a server certificate for
/// `localhost` and a client certificate, as PEM files in a temporary
/// directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: X509,
    ca_key: PKey<Private>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = key();
        let ca = cert("vellum test CA", &ca_key, None, true);
        let server_key = key();
        let server = cert("localhost", &server_key, Some((&ca, &ca_key)), false);
        let client_key = key();
        let client = cert("sender.example", &client_key, Some((&ca, &ca_key)), false);
        let write = |name: &str, pem: Vec<u8>| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca.to_pem().unwrap());
        write("server.pem", server.to_pem().unwrap());
        write("server.key", server_key.private_key_to_pem_pkcs8().unwrap());
        write("client.pem", client.to_pem().unwrap());
        write("client.key", client_key.private_key_to_pem_pkcs8().unwrap());
        Pki { dir, ca, ca_key }
    }

    /// Makes another client certificate, for `CN=<cn>`, signed by the CA:
    /// `<cn>.pem` and `<cn>.key`.
    pub fn client(&self, cn: &str) {
        let key = key();
        let cert = cert(cn, &key, Some((&self.ca, &self.ca_key)), false);
        std::fs::write(self.path(&format!("{cn}.pem")), cert.to_pem().unwrap()).unwrap();
        std::fs::write(
            self.path(&format!("{cn}.key")),
            key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
    }

    /// The path of `ca.pem`, `server.pem`, `server.key`, `client.pem` or
    /// `client.key`.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Connects with TLS (trusting `ca`), optionally with a client certificate.
pub async fn tls_connect(
    port: u16,
    pki: &Pki,
    with_client_cert: bool,
) -> Option<SslStream<TcpStream>> {
    tls_connect_as(port, pki, with_client_cert.then_some("client")).await
}

/// Connects with TLS (trusting `ca`), presenting the client certificate
/// `<name>.pem` of [`Pki`] when a name is given (`client` or one made by
/// [`Pki::client`]).
pub async fn tls_connect_as(
    port: u16,
    pki: &Pki,
    client: Option<&str>,
) -> Option<SslStream<TcpStream>> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(Path::new(&pki.path("ca.pem"))).unwrap();
    if let Some(name) = client {
        b.set_certificate_file(pki.path(&format!("{name}.pem")), SslFiletype::PEM)
            .unwrap();
        b.set_private_key_file(pki.path(&format!("{name}.key")), SslFiletype::PEM)
            .unwrap();
    }
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut s = SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.ok()?;
    Some(s)
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
