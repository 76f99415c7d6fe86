//! C2SP signed notes with Ed25519 keys (https://c2sp.org/signed-note):
//! key ID = first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key); a
//! signature line is `— <name> <base64(key ID ‖ signature)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer as OsslSigner, Verifier as OsslVerifier};
use sha2::{Digest, Sha256};

/// The signed-note algorithm byte of Ed25519.
pub(crate) const ALG_ED25519: u8 = 0x01;

#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    Key(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("no valid signature by {0}")]
    NotSigned(String),
    #[error("crypto error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// First 4 bytes of SHA-256(name ‖ "\n" ‖ type ‖ public key).
fn key_id(name: &str, alg: u8, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace())
}

/// An Ed25519 signed-note key with its name and signature type: a log's
/// (0x01, signed notes) or a witness's (0x04, cosignatures). The type only
/// enters the key ID and the key texts; signing is the same.
pub(crate) struct NoteKey {
    name: String,
    alg: u8,
    key: PKey<Private>,
    id: [u8; 4],
    public: Vec<u8>,
}

impl NoteKey {
    /// A fresh key; `what` names the name in the error (origin, witness name).
    pub(crate) fn generate(name: &str, alg: u8, what: &'static str) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key(what));
        }
        Self::from_key(name, alg, PKey::generate_ed25519()?)
    }

    fn from_key(name: &str, alg: u8, key: PKey<Private>) -> Result<Self, NoteError> {
        let public = key.raw_public_key()?;
        Ok(NoteKey {
            id: key_id(name, alg, &public),
            name: name.to_string(),
            alg,
            key,
            public,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(type ‖ seed)>` whose
    /// type is one of `accept`; the key then has type `alg`.
    pub(crate) fn parse(text: &str, accept: &[u8], alg: u8) -> Result<Self, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::Key("a signer key starts with PRIVATE+KEY+"))?;
        // Names never contain '+'; base64 may.
        let mut parts = rest.splitn(3, '+');
        let (name, b64) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(_), Some(b)) => (n, b),
            _ => return Err(NoteError::Key("expected name+id+key")),
        };
        if !valid_name(name) {
            return Err(NoteError::Key("bad key name"));
        }
        let raw = B64.decode(b64).map_err(|_| NoteError::Key("bad base64"))?;
        match raw.split_first() {
            Some((t, seed)) if accept.contains(t) && seed.len() == 32 => Self::from_key(
                name,
                alg,
                PKey::private_key_from_raw_bytes(seed, Id::ED25519)?,
            ),
            _ => Err(NoteError::Key("not an Ed25519 key")),
        }
    }

    /// The private key file text (keep it 0600).
    pub(crate) fn to_key_file(&self) -> Result<String, NoteError> {
        let mut raw = vec![self.alg];
        raw.extend(self.key.raw_private_key()?);
        Ok(format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        ))
    }

    pub(crate) fn public(&self) -> PublicNoteKey {
        PublicNoteKey {
            name: self.name.clone(),
            alg: self.alg,
            id: self.id,
            public: self.public.clone(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn id(&self) -> [u8; 4] {
        self.id
    }

    /// The Ed25519 signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, NoteError> {
        let mut signer = OsslSigner::new_without_digest(&self.key)?;
        Ok(signer.sign_oneshot_to_vec(message)?)
    }
}

/// The public half of a [`NoteKey`]: `<name>+<hex id>+<base64(type ‖ key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicNoteKey {
    name: String,
    alg: u8,
    id: [u8; 4],
    public: Vec<u8>,
}

impl PublicNoteKey {
    /// Parses a verifier key of type `alg`; `wrong_type` is the error for
    /// another type.
    pub(crate) fn parse(text: &str, alg: u8, wrong_type: &'static str) -> Result<Self, NoteError> {
        // Names never contain '+'; base64 may.
        let mut parts = text.trim().splitn(3, '+');
        let (name, id_hex, b64) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(b)) => (n, i, b),
            _ => return Err(NoteError::Key("expected name+id+key")),
        };
        if !valid_name(name) {
            return Err(NoteError::Key("bad key name"));
        }
        let raw = B64.decode(b64).map_err(|_| NoteError::Key("bad base64"))?;
        let public = match raw.split_first() {
            Some((&t, pk)) if t == alg && pk.len() == 32 => pk.to_vec(),
            _ => return Err(NoteError::Key(wrong_type)),
        };
        let id = key_id(name, alg, &public);
        if hex::encode(id) != id_hex.to_ascii_lowercase() {
            return Err(NoteError::Key("key ID does not match the key"));
        }
        Ok(PublicNoteKey {
            name: name.to_string(),
            alg,
            id,
            public,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn id(&self) -> [u8; 4] {
        self.id
    }

    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public
    }

    pub(crate) fn to_vkey(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend(&self.public);
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub(crate) fn verifies(&self, signature: &[u8], message: &[u8]) -> bool {
        let Ok(public) = PKey::<Public>::public_key_from_raw_bytes(&self.public, Id::ED25519)
        else {
            return false;
        };
        OsslVerifier::new_without_digest(&public)
            .and_then(|mut v| v.verify_oneshot(signature, message))
            .unwrap_or(false)
    }
}

/// An Ed25519 signing key with its note name (the log's origin).
pub struct NoteSigner(NoteKey);

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({} [redacted])", self.0.name())
    }
}

impl NoteSigner {
    /// A fresh key for `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        NoteKey::generate(
            name,
            ALG_ED25519,
            "the origin may not be empty or contain '+' or spaces",
        )
        .map(NoteSigner)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        NoteKey::parse(text, &[ALG_ED25519], ALG_ED25519).map(NoteSigner)
    }

    /// The private key file text (keep it 0600).
    pub fn to_key_file(&self) -> Result<String, NoteError> {
        self.0.to_key_file()
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier(self.0.public())
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Signs `text` (which must end in a newline) as a note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("note text must end with a newline"));
        }
        let mut raw = self.0.id().to_vec();
        raw.extend(self.0.sign(text.as_bytes())?);
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.0.name(),
            B64.encode(raw)
        ))
    }
}

/// A verifier key: `<name>+<hex id>+<base64(0x01 ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier(PublicNoteKey);

impl NoteVerifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        PublicNoteKey::parse(text, ALG_ED25519, "not an Ed25519 key").map(NoteVerifier)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        self.0.public_key()
    }

    pub fn to_vkey(&self) -> String {
        self.0.to_vkey()
    }

    /// Checks a signed note; returns its text when one of its signatures is
    /// this key's and valid.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = note.get(..split + 1).unwrap_or_default();
        let sigs = note.get(split + 2..).unwrap_or_default();
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end with a newline",
            ));
        }
        for line in sigs.lines() {
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let Some((name, b64)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed(
                    "signature line needs name and signature",
                ));
            };
            if name != self.0.name() {
                continue;
            }
            let Ok(raw) = B64.decode(b64) else { continue };
            match raw.split_at_checked(4) {
                Some((id, sig)) if sig.len() == 64 && id == self.0.id() => {
                    if self.0.verifies(sig, text.as_bytes()) {
                        return Ok(text);
                    }
                }
                _ => continue,
            }
        }
        Err(NoteError::NotSigned(self.0.name().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let s = NoteSigner::generate("example.org/log").unwrap();
        let again = NoteSigner::parse(&s.to_key_file().unwrap()).unwrap();
        assert_eq!(again.verifier(), s.verifier());
        let v = NoteVerifier::parse(&s.verifier().to_vkey()).unwrap();
        let note = s.sign("hello\n2\n").unwrap();
        assert_eq!(v.open(&note).unwrap(), "hello\n2\n");
        let forged = note.replace("hello\n2", "hello\n3");
        assert!(v.open(&forged).is_err());
        let other = NoteSigner::generate("example.org/log").unwrap();
        assert!(other.verifier().open(&note).is_err());
    }

    /// The key ID rule against the Go reference (golang.org/x/mod/sumdb/note
    /// example key PeterNeumann).
    #[test]
    fn go_reference_vkey_parses() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let v = NoteVerifier::parse(vkey).unwrap();
        assert_eq!(v.to_vkey(), vkey);
        let note = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        assert!(v.open(note).is_ok());
    }
}
