//! C2SP signed notes with Ed25519 keys (https://c2sp.org/signed-note):
//! key ID = first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key); a
//! signature line is `— <name> <base64(key ID ‖ signature)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer as OsslSigner, Verifier as OsslVerifier};
use sha2::{Digest, Sha256};

/// The signed-note algorithm byte of Ed25519.
const ALG_ED25519: u8 = 0x01;

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

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace())
}

/// An Ed25519 signing key with its note name (the log's origin).
pub struct NoteSigner {
    name: String,
    key: PKey<Private>,
    id: [u8; 4],
    public: Vec<u8>,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({} [redacted])", self.name)
    }
}

impl NoteSigner {
    /// A fresh key for `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key(
                "the origin may not be empty or contain '+' or spaces",
            ));
        }
        let key = PKey::generate_ed25519()?;
        Self::from_key(name, key)
    }

    fn from_key(name: &str, key: PKey<Private>) -> Result<Self, NoteError> {
        let public = key.raw_public_key()?;
        Ok(NoteSigner {
            id: key_id(name, &public),
            name: name.to_string(),
            key,
            public,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::Key("a signer key starts with PRIVATE+KEY+"))?;
        // Names never contain '+'; base64 may.
        let mut parts = rest.splitn(3, '+');
        let (name, _id, b64) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(b)) => (n, i, b),
            _ => return Err(NoteError::Key("expected name+id+key")),
        };
        let raw = B64.decode(b64).map_err(|_| NoteError::Key("bad base64"))?;
        match raw.split_first() {
            Some((&ALG_ED25519, seed)) if seed.len() == 32 => {
                let key = PKey::private_key_from_raw_bytes(seed, Id::ED25519)?;
                Self::from_key(name, key)
            }
            _ => Err(NoteError::Key("not an Ed25519 key")),
        }
    }

    /// The private key file text (keep it 0600).
    pub fn to_key_file(&self) -> Result<String, NoteError> {
        let mut raw = vec![ALG_ED25519];
        raw.extend(self.key.raw_private_key()?);
        Ok(format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        ))
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            public: self.public.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `text` (which must end in a newline) as a note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("note text must end with a newline"));
        }
        let mut signer = OsslSigner::new_without_digest(&self.key)?;
        let sig = signer.sign_oneshot_to_vec(text.as_bytes())?;
        let mut raw = self.id.to_vec();
        raw.extend(sig);
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            B64.encode(raw)
        ))
    }
}

/// A verifier key: `<name>+<hex id>+<base64(0x01 ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
}

impl NoteVerifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
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
            Some((&ALG_ED25519, pk)) if pk.len() == 32 => pk.to_vec(),
            _ => return Err(NoteError::Key("not an Ed25519 key")),
        };
        let id = key_id(name, &public);
        if hex::encode(id) != id_hex.to_ascii_lowercase() {
            return Err(NoteError::Key("key ID does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            public,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend(&self.public);
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    /// Checks a signed note; returns its text when one of its signatures is
    /// this key's and valid.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end with a newline",
            ));
        }
        let public = PKey::<Public>::public_key_from_raw_bytes(&self.public, Id::ED25519)?;
        for line in sigs.lines() {
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let Some((name, b64)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed(
                    "signature line needs name and signature",
                ));
            };
            if name != self.name {
                continue;
            }
            let Ok(raw) = B64.decode(b64) else { continue };
            if raw.len() != 4 + 64 || raw[..4] != self.id {
                continue;
            }
            let mut v = OsslVerifier::new_without_digest(&public)?;
            if v.verify_oneshot(&raw[4..], text.as_bytes())
                .unwrap_or(false)
            {
                return Ok(text);
            }
        }
        Err(NoteError::NotSigned(self.name.clone()))
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
