//! `[privacy]`: data minimisation (env `VELLUM_PRIVACY_<KEY>`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::secret::Secret;
use super::ConfigError;

/// Shortest accepted pseudonym key, bytes.
const MIN_KEY_BYTES: usize = 16;

/// `[privacy]` as written by an operator.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPrivacy {
    /// Store prompt/output bodies and free text (reasons, diffs). When false
    /// only their SHA-256 is stored.
    pub store_content: bool,
    /// Replace patient identifiers by HMAC-SHA-256 pseudonyms.
    pub pseudonymise_patients: bool,
    /// The HMAC key (at least 16 bytes; keep it secret and stable).
    pub pseudonym_key: Option<Secret<String>>,
}

impl fmt::Debug for RawPrivacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawPrivacy")
            .field("store_content", &self.store_content)
            .field("pseudonymise_patients", &self.pseudonymise_patients)
            .field("pseudonym_key", &self.pseudonym_key)
            .finish()
    }
}

/// Validated `[privacy]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivacySettings {
    pub store_content: bool,
    /// The HMAC key when patient identifiers are pseudonymised.
    pub pseudonym_key: Option<Secret<Vec<u8>>>,
}

impl PrivacySettings {
    pub fn validate(raw: &RawPrivacy) -> Result<Self, ConfigError> {
        let pseudonym_key = match (raw.pseudonymise_patients, &raw.pseudonym_key) {
            (false, _) => None,
            (true, Some(k)) if k.expose().len() >= MIN_KEY_BYTES => {
                Some(Secret::new(k.expose().as_bytes().to_vec()))
            }
            (true, _) => {
                return Err(ConfigError::Invalid {
                    key: "privacy.pseudonym_key",
                    reason: "pseudonymise_patients needs a pseudonym_key of at least 16 bytes"
                        .into(),
                })
            }
        };
        Ok(PrivacySettings {
            store_content: raw.store_content,
            pseudonym_key,
        })
    }
}
