//! Data minimisation (`[privacy]`): content is stored only when configured
//! (its SHA-256 always); patient identifiers may be replaced by
//! HMAC-SHA-256 pseudonyms under a configured key.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::PrivacySettings;

/// `Identifier.system` of a pseudonymised patient identifier.
pub use crate::vocabulary::PSEUDONYM_SYSTEM;

/// A patient identifier as it is to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPatientId {
    pub system: Option<String>,
    pub value: String,
    pub pseudonymised: bool,
}

/// HMAC-SHA-256(key, `<system>|<value>`) in lowercase hex. The issuing
/// system is part of the input so equal numbers from two issuers differ.
pub fn pseudonym(key: &[u8], system: Option<&str>, value: &str) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(system.unwrap_or("").as_bytes());
    mac.update(b"|");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The identifier to store for a patient.
pub fn patient_id(p: &PrivacySettings, system: Option<&str>, value: &str) -> StoredPatientId {
    match &p.pseudonym_key {
        Some(key) => StoredPatientId {
            system: Some(PSEUDONYM_SYSTEM.to_string()),
            value: pseudonym(key.expose(), system, value),
            pseudonymised: true,
        },
        None => StoredPatientId {
            system: system.map(str::to_string),
            value: value.to_string(),
            pseudonymised: false,
        },
    }
}

/// Free text or a body: kept only when `store_content`.
pub fn keep_content<'a>(p: &PrivacySettings, text: &'a str) -> Option<&'a str> {
    p.store_content.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_hmacs() {
        // Known answer from `printf 'urn:oid:1.2|123' | openssl dgst -sha256 -hmac 0123456789abcdef`.
        let h = pseudonym(b"0123456789abcdef", Some("urn:oid:1.2"), "123");
        assert_eq!(
            h,
            "e2de5a6d1ba454a340f057a672acf2689610e3b210277b81d095471fdb93a4b4"
        );
        let p = PrivacySettings {
            store_content: false,
            pseudonym_key: Some(b"0123456789abcdef".to_vec().into()),
        };
        let a = patient_id(&p, Some("urn:oid:1.2"), "123");
        let b = patient_id(&p, Some("urn:oid:1.3"), "123");
        assert_ne!(a.value, b.value);
        assert_eq!(a.system.as_deref(), Some(PSEUDONYM_SYSTEM));
        let clear = patient_id(&PrivacySettings::default(), None, "123");
        assert_eq!((clear.value.as_str(), clear.pseudonymised), ("123", false));
        assert_eq!(keep_content(&p, "x"), None);
    }
}
