//! Patient identifiers in report output. An auditor sees them as stored;
//! QA staff see an HMAC-SHA-256 pseudonym under the configured pseudonym
//! key, or nothing when no key is configured — never the identifier in
//! clear. The same rule serves every list and report.

use serde_json::Value;

use crate::radiology::privacy::{pseudonym, PSEUDONYM_SYSTEM};

/// How patient identifiers are shown to one caller.
#[derive(Debug, Clone, Copy)]
pub enum PatientView<'k> {
    /// As stored.
    Clear,
    /// Pseudonymised under this key.
    Pseudonym(&'k [u8]),
    /// Left out.
    Removed,
}

impl<'k> PatientView<'k> {
    /// The view for a caller: `pseudonyms_only` callers get pseudonyms under
    /// `key`, or nothing without a key.
    pub fn for_caller(pseudonyms_only: bool, key: Option<&'k [u8]>) -> Self {
        match (pseudonyms_only, key) {
            (false, _) => PatientView::Clear,
            (true, Some(k)) => PatientView::Pseudonym(k),
            (true, None) => PatientView::Removed,
        }
    }

    /// What the JSON answers say in `patient_identifiers`.
    pub fn label(&self) -> &'static str {
        match self {
            PatientView::Clear => "as-stored",
            PatientView::Pseudonym(_) => "pseudonymised",
            PatientView::Removed => "removed",
        }
    }

    /// A patient entity's `what` as text: `system|value` for an
    /// identifier, the reference for a reference; empty when removed.
    pub fn show(&self, what: Option<&Value>) -> String {
        let Some((system, value)) = what.and_then(parts) else {
            return String::new();
        };
        match self {
            PatientView::Clear => join(system, value),
            PatientView::Removed => String::new(),
            // Already a pseudonym when stored (`[privacy]
            // pseudonymise_patients`): shown as stored.
            PatientView::Pseudonym(_) if system == Some(PSEUDONYM_SYSTEM) => join(system, value),
            PatientView::Pseudonym(key) => {
                join(Some(PSEUDONYM_SYSTEM), &pseudonym(key, system, value))
            }
        }
    }
}

/// (system, value) of an identifier, or (None, reference) of a reference.
fn parts(what: &Value) -> Option<(Option<&str>, &str)> {
    let id = &what["identifier"];
    if let Some(v) = id["value"].as_str() {
        return Some((id["system"].as_str(), v));
    }
    what["reference"].as_str().map(|r| (None, r))
}

fn join(system: Option<&str>, value: &str) -> String {
    match system {
        Some(s) => format!("{s}|{value}"),
        None => value.to_string(),
    }
}

/// Whether a stored patient `what` is the patient asked for. `wanted` is
/// `system|value`, a bare value (any system), or a reference
/// (`Patient/<id>`). With a pseudonym key the stored pseudonym of the
/// same identifier matches too.
pub fn matches(what: &Value, wanted: &str, key: Option<&[u8]>) -> bool {
    let Some((system, value)) = parts(what) else {
        return false;
    };
    let is_reference = what["identifier"]["value"].as_str().is_none();
    if is_reference {
        return value == wanted;
    }
    let (want_system, want_value) = match wanted.split_once('|') {
        Some((s, v)) => (Some(s), v),
        None => (None, wanted),
    };
    if value == want_value && (want_system.is_none() || want_system == system) {
        return true;
    }
    match key {
        Some(k) if system == Some(PSEUDONYM_SYSTEM) => {
            want_system.is_some() && value == pseudonym(k, want_system, want_value)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn qa_never_sees_an_identifier_in_clear() {
        let what = json!({"identifier": {"system": "urn:oid:1.2", "value": "123"}});
        assert_eq!(PatientView::Clear.show(Some(&what)), "urn:oid:1.2|123");
        assert_eq!(PatientView::Removed.show(Some(&what)), "");
        // Known answer from `printf 'urn:oid:1.2|123' | openssl dgst -sha256 -hmac 0123456789abcdef`.
        let key = b"0123456789abcdef";
        assert_eq!(
            PatientView::Pseudonym(key).show(Some(&what)),
            format!(
                "{PSEUDONYM_SYSTEM}|e2de5a6d1ba454a340f057a672acf2689610e3b210277b81d095471fdb93a4b4"
            )
        );
        let stored = json!({"identifier": {"system": PSEUDONYM_SYSTEM, "value": "abc"}});
        assert_eq!(
            PatientView::Pseudonym(key).show(Some(&stored)),
            format!("{PSEUDONYM_SYSTEM}|abc")
        );
        let reference = json!({"reference": "Patient/p1"});
        assert!(!PatientView::Pseudonym(key)
            .show(Some(&reference))
            .contains("p1"));
    }

    #[test]
    fn patients_match_by_identifier_reference_or_pseudonym() {
        let what = json!({"identifier": {"system": "urn:oid:1.2", "value": "123"}});
        assert!(matches(&what, "urn:oid:1.2|123", None));
        assert!(matches(&what, "123", None));
        assert!(!matches(&what, "urn:oid:9|123", None));
        assert!(matches(
            &json!({"reference": "Patient/p1"}),
            "Patient/p1",
            None
        ));
        let key = b"0123456789abcdef";
        let stored = json!({"identifier": {"system": PSEUDONYM_SYSTEM,
            "value": "e2de5a6d1ba454a340f057a672acf2689610e3b210277b81d095471fdb93a4b4"}});
        assert!(matches(&stored, "urn:oid:1.2|123", Some(key)));
        assert!(!matches(&stored, "urn:oid:1.2|124", Some(key)));
    }
}
