//! The access policy: which roles may call each endpoint, and which calls
//! read the audit log (and so are themselves recorded). One table, matched
//! on method and path before routing, so no route can be reached without a
//! decision here: an unknown path still needs an authenticated caller.

use super::role::{Role, RoleSet};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No credentials (`/healthz`, `/readyz`, `/metrics` when configured
    /// public).
    Public,
    /// Any authenticated caller (the CapabilityStatement, the OpenAPI
    /// document, and paths that answer 404/405 anyway).
    Authenticated,
    /// A caller holding at least one of these roles.
    AnyOf(RoleSet),
}

impl Requirement {
    pub fn allows(self, roles: RoleSet) -> bool {
        match self {
            Requirement::Public | Requirement::Authenticated => true,
            Requirement::AnyOf(needed) => needed.intersects(roles),
        }
    }
}

/// The kind of audit-log access a call is (BALP: Read, Query, and vellum's
/// operations on the log), recorded as an `audit-log-access` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    VRead,
    Search,
    Report,
    Verify,
    Proof,
    Export,
}

impl Access {
    /// Its code in vellum's `audit-log-operation` code system.
    pub fn code(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::VRead => "vread",
            Access::Search => "search",
            Access::Report => "report",
            Access::Verify => "verify",
            Access::Proof => "proof",
            Access::Export => "export",
        }
    }
}

/// The decision for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub need: Requirement,
    /// `Some` when the call reads the audit log.
    pub access: Option<Access>,
}

const fn roles(list: &[Role]) -> Requirement {
    let mut bits = 0u8;
    let mut i = 0;
    while i < list.len() {
        bits |= 1 << (list[i] as u8);
        i += 1;
    }
    Requirement::AnyOf(RoleSet::from_bits(bits))
}

const SOURCE: Requirement = roles(&[Role::Source]);
const READERS: Requirement = roles(&[Role::Auditor, Role::Clinician]);
const REPORTS: Requirement = roles(&[Role::Auditor, Role::Qa]);
const AUDITOR: Requirement = roles(&[Role::Auditor]);
const ADMIN: Requirement = roles(&[Role::Admin]);
const AUDITOR_OR_ADMIN: Requirement = roles(&[Role::Auditor, Role::Admin]);
/// A Bundle may create (source) or read (auditor); each entry is checked
/// against its own method by the Bundle handler.
const BUNDLE: Requirement = roles(&[Role::Source, Role::Auditor]);
const MODEL_REGISTRY: Requirement = roles(&[Role::Source, Role::Auditor, Role::Qa]);

fn rule(need: Requirement) -> Rule {
    Rule { need, access: None }
}

fn audited(need: Requirement, access: Access) -> Rule {
    Rule {
        need,
        access: Some(access),
    }
}

/// The rule for `method` on `path` (without query string).
pub fn requirement(method: &str, path: &str, metrics_public: bool) -> Rule {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST";
    match (segments.as_slice(), get, post) {
        (["healthz"] | ["readyz"], true, _) => rule(Requirement::Public),
        (["metrics"], true, _) if metrics_public => rule(Requirement::Public),
        (["metrics"], true, _) => rule(ADMIN),

        (["fhir"], _, true) => rule(BUNDLE),
        (["fhir", "AuditEvent"], _, true) => rule(SOURCE),
        (["fhir", "AuditEvent"], true, _) => audited(READERS, Access::Search),
        (["fhir", "AuditEvent", "_search"], _, _) if get || post => {
            audited(READERS, Access::Search)
        }
        // FHIR Bulk Data $export: the kick-off is the audited read; the
        // status, cancel and download of a job are the auditor's too.
        (["fhir", "$export"] | ["fhir", "AuditEvent", "$export"], true, _) => {
            audited(AUDITOR, Access::Export)
        }
        (["fhir", "$export-status", _], _, _) => rule(AUDITOR),
        (["fhir", "$export-file", ..], true, _) => rule(AUDITOR),
        (["fhir", "AuditEvent", _], true, _) => audited(READERS, Access::Read),
        (["fhir", "AuditEvent", _, "_history", _], true, _) => audited(READERS, Access::VRead),

        (["ai", "v1", "models"], true, _) => audited(MODEL_REGISTRY, Access::Search),
        (["ai", "v1", "models", _, "versions"], true, _) => audited(MODEL_REGISTRY, Access::Search),
        (
            ["ai", "v1", "models" | "inferences" | "overrides" | "renderings" | "guard-events"],
            _,
            true,
        ) => rule(SOURCE),
        (["dicom", "digest"], _, true) => rule(SOURCE),

        // Names one patient in clear: never for QA staff, who see only
        // pseudonyms.
        (["reports", "patient-access"], true, _) => audited(AUDITOR, Access::Report),
        // Names users and client addresses: the security team's, not QA's.
        (["reports", "detections"], true, _) => audited(AUDITOR_OR_ADMIN, Access::Report),
        (["reports", ..], true, _) | (["ui", ..], true, _) => audited(REPORTS, Access::Report),

        (["atna", "messages", _], true, _) => audited(AUDITOR, Access::Read),

        (["admin", "verify"], true, _) => audited(AUDITOR_OR_ADMIN, Access::Verify),
        (["admin", "checkpoints"], _, true) => rule(ADMIN),
        (["admin", "checkpoints", ..], true, _) => rule(AUDITOR_OR_ADMIN),
        (["admin", "proof", ..], true, _) => audited(AUDITOR, Access::Proof),
        (["admin", "export", ..], _, _) => audited(AUDITOR, Access::Export),
        // Another log asking this vellum, as its witness, to cosign.
        (["witness", "add-checkpoint"], _, true) => rule(SOURCE),

        // The CapabilityStatement, the OpenAPI document, and everything that
        // answers 404 or 405: only who is calling must be known.
        _ => rule(Requirement::Authenticated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_public_and_unknown_paths_are_not() {
        assert_eq!(
            requirement("GET", "/healthz", false).need,
            Requirement::Public
        );
        assert_eq!(
            requirement("GET", "/readyz", false).need,
            Requirement::Public
        );
        assert_eq!(
            requirement("GET", "/metrics", true).need,
            Requirement::Public
        );
        assert_ne!(
            requirement("GET", "/metrics", false).need,
            Requirement::Public
        );
        assert_eq!(
            requirement("GET", "/nothing/here", false).need,
            Requirement::Authenticated
        );
        assert_eq!(
            requirement("POST", "/healthz", false).need,
            Requirement::Authenticated
        );
    }

    #[test]
    fn reads_are_audited_and_writes_are_not() {
        let read = requirement("GET", "/fhir/AuditEvent/abc", false);
        assert_eq!(read.access, Some(Access::Read));
        assert!(read.need.allows(RoleSet::of(&[Role::Clinician])));
        assert!(!read.need.allows(RoleSet::of(&[Role::Source])));
        let create = requirement("POST", "/fhir/AuditEvent", false);
        assert_eq!(create.access, None);
        assert!(create.need.allows(RoleSet::of(&[Role::Source])));
        assert!(!create.need.allows(RoleSet::of(&[Role::Auditor])));
    }

    #[test]
    fn the_patient_access_report_is_for_auditors_only() {
        let qa = RoleSet::of(&[Role::Qa]);
        let auditor = RoleSet::of(&[Role::Auditor]);
        let pa = requirement("GET", "/reports/patient-access", false);
        assert_eq!(pa.access, Some(Access::Report));
        assert!(pa.need.allows(auditor) && !pa.need.allows(qa));
        for path in [
            "/reports/cases",
            "/reports/study-history",
            "/reports/quality",
            "/reports/drift",
        ] {
            let r = requirement("GET", path, false);
            assert_eq!(r.access, Some(Access::Report), "{path}");
            assert!(r.need.allows(qa) && r.need.allows(auditor), "{path}");
        }
    }

    #[test]
    fn bulk_export_is_the_auditors_and_its_kick_off_is_audited() {
        for path in ["/fhir/$export", "/fhir/AuditEvent/$export"] {
            let r = requirement("GET", path, false);
            assert_eq!(r.access, Some(Access::Export), "{path}");
            assert!(r.need.allows(RoleSet::of(&[Role::Auditor])));
            assert!(!r.need.allows(RoleSet::of(&[Role::Clinician])), "{path}");
        }
        for (m, path) in [
            ("GET", "/fhir/$export-status/j"),
            ("DELETE", "/fhir/$export-status/j"),
            ("GET", "/fhir/$export-file/j/AuditEvent.ndjson"),
        ] {
            let r = requirement(m, path, false);
            assert!(r.need.allows(RoleSet::of(&[Role::Auditor])), "{m} {path}");
            assert!(!r.need.allows(RoleSet::of(&[Role::Admin])), "{m} {path}");
        }
    }
}
