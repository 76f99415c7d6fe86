//! Turning a client's AuditEvent JSON into a ledger `Draft`: parse strictly,
//! check structure (fhirbolt) and rules (validate.rs), assign id and meta.

use vellum_json::{self as canonical, Json, Limits, ParseErrorKind, Value};
use vellum_ledger::{Draft, STAMP_PLACEHOLDER};

use super::outcome::{Issue, IssueType};
use super::path::path_at;
use super::profile;
use super::validate::validate_audit_event;

/// Why a create was refused; maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not JSON, not FHIR, or not an AuditEvent (400).
    Malformed(Vec<Issue>),
    /// FHIR JSON, but breaks R4's rules (422).
    Invalid(Vec<Issue>),
}

impl Rejection {
    pub fn issues(&self) -> &[Issue] {
        match self {
            Rejection::Malformed(i) | Rejection::Invalid(i) => i,
        }
    }
}

/// Validates `body` and returns the draft to append, within the default
/// request limits.
pub fn prepare_audit_event(body: &[u8]) -> Result<Draft, Rejection> {
    prepare(body, true, Limits::default())
}

fn prepare(body: &[u8], check_structure: bool, limits: Limits) -> Result<Draft, Rejection> {
    finish(check(body, check_structure, limits)?)
}

/// A valid AuditEvent, parsed once (vellum's exact-number tree), not yet
/// given its server id and `meta`. Enrichment edits it in place.
#[derive(Debug, Clone)]
pub struct Checked {
    root: Json,
}

impl Checked {
    pub fn root_mut(&mut self) -> &mut Json {
        &mut self.root
    }
}

/// Parses `body` strictly and checks it: JSON (within `limits`), an
/// AuditEvent, R4 structure (fhirbolt; skipped when `check_structure` is
/// false, for events vellum built itself), R4 rules, and vellum's profiles
/// when the event names one.
pub fn check(body: &[u8], check_structure: bool, limits: Limits) -> Result<Checked, Rejection> {
    let root = canonical::parse_with(body, limits).map_err(|e| {
        let (line, col) = e.line_column(body);
        let code = match e.kind {
            ParseErrorKind::DuplicateKey(_) => IssueType::Structure,
            ParseErrorKind::TooDeep(_) | ParseErrorKind::TooManyKeys(_) => IssueType::TooLong,
            _ => IssueType::Invalid,
        };
        Rejection::Malformed(vec![Issue::error(
            code,
            format!(
                "request body is not acceptable JSON: {} (line {line}, column {col})",
                e.kind
            ),
        )])
    })?;
    match root.get("resourceType").map(|j| &j.value) {
        Some(Value::String(t)) if t == "AuditEvent" => {}
        Some(Value::String(t)) => {
            return Err(Rejection::Malformed(vec![Issue::error(
                IssueType::Invalid,
                format!("resourceType is \"{t}\"; this endpoint accepts AuditEvent only"),
            )
            .at("resourceType")]))
        }
        _ if !matches!(root.value, Value::Object(_)) => {
            return Err(Rejection::Malformed(vec![Issue::error(
                IssueType::Structure,
                "a FHIR resource must be a JSON object",
            )]))
        }
        _ => {
            return Err(Rejection::Malformed(vec![Issue::error(
                IssueType::Required,
                "resourceType is missing",
            )
            .at("resourceType")]))
        }
    }
    let structure = if check_structure {
        fhir_model::check_audit_event_json(body)
    } else {
        Ok(())
    };
    if let Err(e) = structure {
        let offset = canonical::offset_of(body, e.line, e.column);
        if let Some(field) = missing_field(&e.message) {
            return Err(Rejection::Invalid(missing_element_issues(
                &root, field, offset,
            )));
        }
        // serde reports the position just past the offending token; step
        // back one byte so the span lookup lands inside it.
        let path = path_at(&root, "AuditEvent", offset.saturating_sub(1));
        return Err(Rejection::Malformed(vec![Issue::error(
            IssueType::Structure,
            format!("not a valid R4 AuditEvent: {}", e.message),
        )
        .at(path)]));
    }
    let issues = validate_audit_event(&root);
    if !issues.is_empty() {
        return Err(Rejection::Invalid(issues));
    }
    check_vellum_profiles(body)?;
    Ok(Checked { root })
}

/// Assigns the server id and `meta`, derives the search-index rows and
/// writes the canonical body: the draft the ledger chains.
pub fn finish(checked: Checked) -> Result<Draft, Rejection> {
    let mut root = checked.root;
    let id = uuid::Uuid::new_v4().to_string();
    assign_server_fields(&mut root, &id);
    let index = super::search_index::extract(&root).into_rows();
    let (bytes, mark) = canonical::to_canonical_marking(&root, &["meta", "lastUpdated"]);
    let at = mark.unwrap_or(usize::MAX);
    Draft::with_index(id, bytes, at, index)
        .map_err(|e| Rejection::Invalid(vec![Issue::error(IssueType::Exception, e.to_string())]))
}

/// Events naming a vellum profile in `meta.profile` must conform to it.
fn check_vellum_profiles(body: &[u8]) -> Result<(), Rejection> {
    if !profile::may_name_vellum_profile(body) {
        return Ok(());
    }
    // Already parsed and checked as JSON above: this cannot fail.
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::Malformed(vec![Issue::error(IssueType::Invalid, e.to_string())]))?;
    let issues = profile::validate_profiles(&v);
    if issues.is_empty() {
        Ok(())
    } else {
        Err(Rejection::Invalid(issues))
    }
}

/// The JSON name in serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split('`')
        .next()
        .filter(|f| !f.is_empty())
}

/// A required element is absent (a cardinality rule, so 422 like the other
/// rule violations). serde reports it at the closing brace of the object that
/// lacks it, which names no element; vellum's validator names the missing
/// element itself, and otherwise the object closing at `at` is located.
fn missing_element_issues(root: &Json, field: &str, at: usize) -> Vec<Issue> {
    let suffix = format!(".{field}");
    let required: Vec<Issue> = validate_audit_event(root)
        .into_iter()
        .filter(|i| i.code == IssueType::Required)
        .collect();
    if required.iter().any(|i| {
        i.expression
            .as_deref()
            .is_some_and(|x| x.ends_with(&suffix))
    }) {
        return required;
    }
    let parent = object_closing_at(root, "AuditEvent", at).unwrap_or_else(|| "AuditEvent".into());
    vec![Issue::error(
        IssueType::Required,
        format!("{parent}{suffix} is required but missing"),
    )
    .at(format!("{parent}{suffix}"))]
}

/// The FHIRPath of the object whose closing `}` is at byte `at`.
fn object_closing_at(root: &Json, resource_type: &str, at: usize) -> Option<String> {
    let mut path = resource_type.to_string();
    let mut node = root;
    loop {
        if matches!(node.value, Value::Object(_)) && node.end == at + 1 {
            return Some(path);
        }
        match &node.value {
            Value::Object(members) => {
                let m = members
                    .iter()
                    .find(|m| m.value.start <= at && at < m.value.end)?;
                path.push('.');
                path.push_str(m.key.strip_prefix('_').unwrap_or(&m.key));
                node = &m.value;
            }
            Value::Array(items) => {
                let (i, item) = items
                    .iter()
                    .enumerate()
                    .find(|(_, it)| it.start <= at && at < it.end)?;
                path.push_str(&format!("[{i}]"));
                node = item;
            }
            _ => return None,
        }
    }
}

/// Sets what the server owns on create: `id`, `meta.versionId` and the
/// `meta.lastUpdated` placeholder. Client meta (profile, security, tag,
/// source) is kept.
fn assign_server_fields(root: &mut Json, id: &str) {
    root.set("id", Json::string(id));
    if let Some(meta) = root.object_entry("meta") {
        meta.set("versionId", Json::string("1"));
        meta.set("lastUpdated", Json::string(STAMP_PLACEHOLDER));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"resourceType":"AuditEvent","id":"client-chosen","meta":{"versionId":"9","profile":["http://x/p"]},
        "type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110112"},
        "recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"pacs"}}}"#;

    #[test]
    fn server_owns_id_and_meta_but_keeps_profiles() {
        let d = prepare_audit_event(OK.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(d.body()).unwrap();
        assert_eq!(v["id"], d.id());
        assert_eq!(v["meta"]["versionId"], "1");
        assert_eq!(v["meta"]["lastUpdated"], STAMP_PLACEHOLDER);
        assert_eq!(v["meta"]["profile"][0], "http://x/p");
    }

    #[test]
    fn unknown_element_is_a_structure_error_with_its_path() {
        let bad = OK.replace(r#""requestor":true"#, r#""requestor":true,"colour":"red""#);
        match prepare_audit_event(bad.as_bytes()) {
            Err(Rejection::Malformed(i)) => {
                assert_eq!(
                    i[0].expression.as_deref(),
                    Some("AuditEvent.agent[0].colour"),
                    "{i:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_resource_type_is_malformed() {
        let r = prepare_audit_event(br#"{"resourceType":"Patient"}"#).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)));
    }

    #[test]
    fn rule_violations_are_invalid() {
        let bad = OK.replace(
            r#""recorded":"2026-01-01T00:00:00Z""#,
            r#""recorded":"yesterday""#,
        );
        let r = prepare_audit_event(bad.as_bytes()).unwrap_err();
        assert!(
            matches!(r, Rejection::Invalid(ref i) if i[0].expression.as_deref() == Some("AuditEvent.recorded")),
            "{r:?}"
        );
    }
}
