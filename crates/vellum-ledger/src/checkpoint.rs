//! Checkpoints (C2SP tlog-checkpoint with vellum's two extension lines):
//! `<origin>\n<size>\n<base64 root>\nchain <hex chain_hash(size)>\ntime <RFC 3339 UTC>\n`,
//! signed as a C2SP signed note.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::hash::Hash;
use crate::note::{NoteError, NoteSigner, NoteVerifier};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub chain: Hash,
    /// RFC 3339 UTC.
    pub time: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("checkpoint origin {0:?} is not the key's {1:?}")]
    Origin(String, String),
}

impl Checkpoint {
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\nchain {}\ntime {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            hex::encode(self.chain),
            self.time
        )
    }

    pub fn sign(&self, signer: &NoteSigner) -> Result<String, NoteError> {
        signer.sign(&self.text())
    }

    /// Parses checkpoint text (no signatures).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = CheckpointError::Malformed;
        let mut lines = text
            .strip_suffix('\n')
            .ok_or(bad("must end with a newline"))?
            .split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(bad("origin"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(bad("size"))?;
        let root = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| crate::hash::from_slice(&r))
            .ok_or(bad("root"))?;
        let chain = lines
            .next()
            .and_then(|l| l.strip_prefix("chain "))
            .and_then(|h| hex::decode(h).ok())
            .and_then(|h| crate::hash::from_slice(&h))
            .ok_or(bad("chain line"))?;
        let time = lines
            .next()
            .and_then(|l| l.strip_prefix("time "))
            .filter(|t| crate::parse_stamp(t).is_some())
            .ok_or(bad("time line"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            chain,
            time: time.to_string(),
        })
    }

    /// Checks the note's signature with `key` and parses it; the origin must
    /// be the key's name.
    pub fn open(note: &str, key: &NoteVerifier) -> Result<Self, CheckpointError> {
        let cp = Self::parse(key.open(note)?)?;
        if cp.origin != key.name() {
            return Err(CheckpointError::Origin(cp.origin, key.name().to_string()));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_open_and_refuse_a_forgery() {
        let s = NoteSigner::generate("vellum.test/log").unwrap();
        let cp = Checkpoint {
            origin: "vellum.test/log".into(),
            size: 3,
            root: [1; 32],
            chain: [2; 32],
            time: "2026-12-03T07:00:00Z".into(),
        };
        let note = cp.sign(&s).unwrap();
        assert!(note.starts_with(&format!(
            "vellum.test/log\n3\n{}\nchain {}\ntime 2026-12-03T07:00:00Z\n\n\u{2014} vellum.test/log ",
            B64.encode([1u8; 32]),
            hex::encode([2u8; 32])
        )));
        assert_eq!(Checkpoint::open(&note, &s.verifier()).unwrap(), cp);
        let forged = note.replace("\n3\n", "\n4\n");
        assert!(Checkpoint::open(&forged, &s.verifier()).is_err());
    }
}
