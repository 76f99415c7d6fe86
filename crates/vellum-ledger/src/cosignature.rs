//! Witness cosignatures (https://c2sp.org/tlog-cosignature, Ed25519
//! `cosignature/v1`): the key ID is the first 4 bytes of
//! SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key); the signed message is
//! `cosignature/v1\ntime <unix seconds>\n` followed by the whole checkpoint
//! text; a cosignature line is
//! `— <name> <base64(key ID ‖ u64_be timestamp ‖ signature)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer as OsslSigner, Verifier as OsslVerifier};
use sha2::{Digest, Sha256};

use crate::hash::Hash;
use crate::note::NoteError;

/// The signed-note signature type of Ed25519 `cosignature/v1`.
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// A log key's type; its seed may serve as a cosigner key too.
const ALG_ED25519: u8 = 0x01;

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_COSIGNATURE_V1]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace())
}

/// The message a cosignature signs.
fn signed_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// The first three lines of any C2SP checkpoint: origin, size, root. Other
/// logs need not carry vellum's `chain` and `time` extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointHead {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl CheckpointHead {
    /// Parses the text of a checkpoint note (without its signatures).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = NoteError::Malformed;
        if !text.ends_with('\n') {
            return Err(bad("checkpoint must end with a newline"));
        }
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(bad("checkpoint origin"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or(bad("checkpoint size"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| crate::hash::from_slice(&r))
            .ok_or(bad("checkpoint root"))?;
        Ok(CheckpointHead {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// Splits a signed note into its text (ending in a newline) and its
/// signature lines.
pub fn split_note(note: &str) -> Option<(&str, &str)> {
    let split = note.find("\n\n")?;
    Some((&note[..split + 1], &note[split + 2..]))
}

/// A witness's Ed25519 signing key with its name.
pub struct Cosigner {
    name: String,
    key: PKey<Private>,
    id: [u8; 4],
    public: Vec<u8>,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({} [redacted])", self.name)
    }
}

impl Cosigner {
    /// A fresh key for witness `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key(
                "the witness name may not be empty or contain '+' or spaces",
            ));
        }
        Self::from_key(name, PKey::generate_ed25519()?)
    }

    fn from_key(name: &str, key: PKey<Private>) -> Result<Self, NoteError> {
        let public = key.raw_public_key()?;
        Ok(Cosigner {
            id: key_id(name, &public),
            name: name.to_string(),
            key,
            public,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(type ‖ seed)>`, type
    /// 0x04 (a witness key) or 0x01 (a log key file reused as witness key).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::Key("a signer key starts with PRIVATE+KEY+"))?;
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
            Some((&(ALG_COSIGNATURE_V1 | ALG_ED25519), seed)) if seed.len() == 32 => {
                Self::from_key(name, PKey::private_key_from_raw_bytes(seed, Id::ED25519)?)
            }
            _ => Err(NoteError::Key("not an Ed25519 key")),
        }
    }

    /// The private key file text (keep it 0600).
    pub fn to_key_file(&self) -> Result<String, NoteError> {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend(self.key.raw_private_key()?);
        Ok(format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        ))
    }

    pub fn verifier(&self) -> CosignerVerifier {
        CosignerVerifier {
            name: self.name.clone(),
            id: self.id,
            public: self.public.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cosignature line (ending in a newline) over checkpoint `text`
    /// (the note without its signatures) at `timestamp` (Unix seconds).
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("note text must end with a newline"));
        }
        let mut signer = OsslSigner::new_without_digest(&self.key)?;
        let sig = signer.sign_oneshot_to_vec(signed_message(text, timestamp).as_bytes())?;
        let mut raw = self.id.to_vec();
        raw.extend(timestamp.to_be_bytes());
        raw.extend(sig);
        Ok(format!("\u{2014} {} {}\n", self.name, B64.encode(raw)))
    }
}

/// A witness's public key: `<name>+<hex id>+<base64(0x04 ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerVerifier {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
}

impl CosignerVerifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
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
            Some((&ALG_COSIGNATURE_V1, pk)) if pk.len() == 32 => pk.to_vec(),
            _ => {
                return Err(NoteError::Key(
                    "not an Ed25519 cosignature/v1 key (type 0x04)",
                ))
            }
        };
        let id = key_id(name, &public);
        if hex::encode(id) != id_hex.to_ascii_lowercase() {
            return Err(NoteError::Key("key ID does not match the key"));
        }
        Ok(CosignerVerifier {
            name: name.to_string(),
            id,
            public,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<hex id>`: how stored cosignatures name their witness.
    pub fn label(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.id))
    }

    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend(&self.public);
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    /// Checks one signature line against checkpoint `text`; returns its
    /// timestamp when it is this witness's valid cosignature.
    pub fn verify_line(&self, text: &str, line: &str) -> Option<u64> {
        let rest = line.trim_end_matches('\n').strip_prefix("\u{2014} ")?;
        let (name, b64) = rest.split_once(' ')?;
        if name != self.name {
            return None;
        }
        let raw = B64.decode(b64).ok()?;
        if raw.len() != 4 + 8 + 64 || raw.get(..4)? != self.id {
            return None;
        }
        let timestamp = u64::from_be_bytes(raw.get(4..12)?.try_into().ok()?);
        let public = PKey::<Public>::public_key_from_raw_bytes(&self.public, Id::ED25519).ok()?;
        let mut v = OsslVerifier::new_without_digest(&public).ok()?;
        v.verify_oneshot(raw.get(12..)?, signed_message(text, timestamp).as_bytes())
            .unwrap_or(false)
            .then_some(timestamp)
    }

    /// The first of `lines` (signature lines) that is this witness's valid
    /// cosignature of `text`.
    pub fn find<'a>(&self, text: &str, lines: &'a str) -> Option<&'a str> {
        lines.lines().find(|l| self.verify_line(text, l).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_verify_and_refuse() {
        let w = Cosigner::generate("witness.example/w1").unwrap();
        let v = CosignerVerifier::parse(&w.verifier().to_vkey()).unwrap();
        assert_eq!(v, w.verifier());
        let again = Cosigner::parse(&w.to_key_file().unwrap()).unwrap();
        assert_eq!(again.verifier(), v);
        let text = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let line = w.cosign(text, 1_679_315_147).unwrap();
        assert!(line.starts_with("\u{2014} witness.example/w1 "));
        assert_eq!(v.verify_line(text, &line), Some(1_679_315_147));
        assert_eq!(v.verify_line(&text.replace('5', "6"), &line), None);
        let other = Cosigner::generate("witness.example/w1").unwrap();
        assert_eq!(other.verifier().verify_line(text, &line), None);
        // A log vkey (type 0x01) is not a cosigner key.
        let log = crate::note::NoteSigner::generate("example.com/log").unwrap();
        assert!(CosignerVerifier::parse(&log.verifier().to_vkey()).is_err());
    }

    #[test]
    fn checkpoint_heads_parse_only_canonical_sizes() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let h = CheckpointHead::parse(&format!("o\n20\n{root}\nextra\n")).unwrap();
        assert_eq!((h.origin.as_str(), h.size), ("o", 20));
        assert!(CheckpointHead::parse(&format!("o\n020\n{root}\n")).is_err());
        assert!(CheckpointHead::parse(&format!("o\n\n{root}\n")).is_err());
    }
}
