//! Witness cosignatures (https://c2sp.org/tlog-cosignature, Ed25519
//! `cosignature/v1`): the key ID is the first 4 bytes of
//! SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key); the signed message is
//! `cosignature/v1\ntime <unix seconds>\n` followed by the whole checkpoint
//! text; a cosignature line is
//! `— <name> <base64(key ID ‖ u64_be timestamp ‖ signature)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::hash::Hash;
use crate::note::{NoteError, NoteKey, PublicNoteKey, ALG_ED25519};

/// The signed-note signature type of Ed25519 `cosignature/v1`.
const ALG_COSIGNATURE_V1: u8 = 0x04;

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
pub struct Cosigner(NoteKey);

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cosigner({} [redacted])", self.0.name())
    }
}

impl Cosigner {
    /// A fresh key for witness `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        NoteKey::generate(
            name,
            ALG_COSIGNATURE_V1,
            "the witness name may not be empty or contain '+' or spaces",
        )
        .map(Cosigner)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(type ‖ seed)>`, type
    /// 0x04 (a witness key) or 0x01 (a log key file reused as witness key).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        NoteKey::parse(text, &[ALG_COSIGNATURE_V1, ALG_ED25519], ALG_COSIGNATURE_V1).map(Cosigner)
    }

    /// The private key file text (keep it 0600).
    pub fn to_key_file(&self) -> Result<String, NoteError> {
        self.0.to_key_file()
    }

    pub fn verifier(&self) -> CosignerVerifier {
        CosignerVerifier(self.0.public())
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The cosignature line (ending in a newline) over checkpoint `text`
    /// (the note without its signatures) at `timestamp` (Unix seconds).
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("note text must end with a newline"));
        }
        let sig = self.0.sign(signed_message(text, timestamp).as_bytes())?;
        let mut raw = self.0.id().to_vec();
        raw.extend(timestamp.to_be_bytes());
        raw.extend(sig);
        Ok(format!("\u{2014} {} {}\n", self.0.name(), B64.encode(raw)))
    }
}

/// A witness's public key: `<name>+<hex id>+<base64(0x04 ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerVerifier(PublicNoteKey);

impl CosignerVerifier {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        PublicNoteKey::parse(
            text,
            ALG_COSIGNATURE_V1,
            "not an Ed25519 cosignature/v1 key (type 0x04)",
        )
        .map(CosignerVerifier)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// `<name>+<hex id>`: how stored cosignatures name their witness.
    pub fn label(&self) -> String {
        format!("{}+{}", self.0.name(), hex::encode(self.0.id()))
    }

    pub fn to_vkey(&self) -> String {
        self.0.to_vkey()
    }

    /// Checks one signature line against checkpoint `text`; returns its
    /// timestamp when it is this witness's valid cosignature.
    pub fn verify_line(&self, text: &str, line: &str) -> Option<u64> {
        let rest = line.trim_end_matches('\n').strip_prefix("\u{2014} ")?;
        let (name, b64) = rest.split_once(' ')?;
        if name != self.0.name() {
            return None;
        }
        let raw = B64.decode(b64).ok()?;
        if raw.len() != 4 + 8 + 64 || raw.get(..4)? != self.0.id() {
            return None;
        }
        let timestamp = u64::from_be_bytes(raw.get(4..12)?.try_into().ok()?);
        self.0
            .verifies(raw.get(12..)?, signed_message(text, timestamp).as_bytes())
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
