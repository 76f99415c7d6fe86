//! vellum's own R4 AuditEvent checks: what fhirbolt's Strict mode lets
//! through (see CRATES.md): primitive formats (instant, dateTime, id, uri,
//! base64Binary, boolean-free empties), required value-set bindings,
//! cardinalities and invariant sev-1. Every issue carries its FHIRPath.

use std::fmt::Write as _;
use std::sync::OnceLock;

use vellum_json::{Json, Value};

use super::outcome::{Issue, IssueType};

/// AuditEvent.action (required binding, audit-event-action).
pub const ACTIONS: &[&str] = &["C", "R", "U", "D", "E"];
/// AuditEvent.outcome (required binding, audit-event-outcome).
pub const OUTCOMES: &[&str] = &["0", "4", "8", "12"];
/// AuditEvent.agent.network.type (required binding, network-type).
pub const NETWORK_TYPES: &[&str] = &["1", "2", "3", "4", "5"];

/// Checks a parsed AuditEvent (whose structure fhirbolt has accepted).
pub fn validate_audit_event(root: &Json) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut v = Validator {
        issues: &mut issues,
    };
    // One path buffer, extended and truncated while walking: no allocation
    // per element on the (common) path where nothing is wrong.
    let mut path = String::with_capacity(128);
    path.push_str("AuditEvent");
    v.generic(root, &mut path);
    v.audit_event(root);
    issues
}

/// A primitive format test and the name of the format it accepts.
type FormatCheck = (fn(&str) -> bool, &'static str);

struct Validator<'a> {
    issues: &'a mut Vec<Issue>,
}

fn members(j: &Json) -> &[vellum_json::Member] {
    match &j.value {
        Value::Object(m) => m,
        _ => &[],
    }
}

impl Validator<'_> {
    fn push(&mut self, code: IssueType, path: &str, msg: impl Into<String>) {
        self.issues
            .push(Issue::error(code, msg).at(path.to_string()));
    }

    /// Rules that hold for every element of every FHIR JSON resource.
    fn generic(&mut self, node: &Json, path: &mut String) {
        if let Value::String(s) = &node.value {
            // R4 strings SHALL NOT hold characters below U+0020 but tab, CR
            // and LF (a NUL would also break every XML response).
            if let Some(c) = s
                .chars()
                .find(|c| (*c as u32) < 0x20 && !matches!(c, '\t' | '\r' | '\n'))
            {
                self.push(
                    IssueType::Value,
                    path,
                    format!(
                        "control character U+{:04X} is not allowed in a FHIR string",
                        c as u32
                    ),
                );
            }
            if path.ends_with(".text.div") {
                if let Err(why) = super::narrative::check_div(s) {
                    self.push(IssueType::Value, path, why);
                }
            }
        }
        match &node.value {
            Value::String(s) if s.is_empty() => self.push(
                IssueType::Value,
                path,
                "empty string: a FHIR primitive must have a value or be absent",
            ),
            Value::String(s) if s.trim() != s && !path.ends_with(".div") => {
                // Only `string`/`markdown` may keep edge whitespace, and those
                // SHOULD not either; codes, ids, uris MUST not.
                let leaf = path.rsplit('.').next().unwrap_or("");
                if matches!(
                    leaf,
                    "code" | "system" | "id" | "url" | "reference" | "version"
                ) {
                    self.push(
                        IssueType::Value,
                        path,
                        "leading or trailing whitespace is not allowed here",
                    )
                }
            }
            Value::Array(items) => {
                if items.is_empty() {
                    self.push(
                        IssueType::Structure,
                        path,
                        "empty array: omit the element instead",
                    );
                }
                let len = path.len();
                for (i, item) in items.iter().enumerate() {
                    let _ = write!(path, "[{i}]");
                    self.generic(item, path);
                    path.truncate(len);
                }
            }
            Value::Object(ms) => {
                if ms.is_empty() {
                    self.push(
                        IssueType::Structure,
                        path,
                        "empty object: omit the element instead",
                    );
                }
                let len = path.len();
                for m in ms {
                    // `_x` carries the extensions of primitive `x`: same element.
                    path.push('.');
                    path.push_str(m.key.strip_prefix('_').unwrap_or(&m.key));
                    self.generic(&m.value, path);
                    self.primitive_format(&m.key, &m.value, path);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// Formats of primitives whose element name fixes their type everywhere
    /// they occur in an AuditEvent and its data types.
    fn primitive_format(&mut self, key: &str, value: &Json, path: &mut String) {
        let check: Option<FormatCheck> = match key {
            "recorded" | "lastUpdated" => {
                Some((is_instant, "instant (YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm))"))
            }
            "start" | "end" => Some((is_date_time, "dateTime")),
            "query" | "valueBase64Binary" | "data" => Some((is_base64, "base64Binary")),
            "id" => Some((is_id, "id ([A-Za-z0-9-.]{1,64})")),
            "system" | "url" | "profile" | "policy" => Some((is_uri, "uri (no whitespace)")),
            "code" => Some((is_code, "code (no leading/trailing or repeated whitespace)")),
            _ => None,
        };
        let Some((ok, what)) = check else { return };
        let test = |v: &mut Self, s: &str, p: &str| {
            if !s.is_empty() && !ok(s) {
                v.push(
                    IssueType::Value,
                    p,
                    format!("\"{s}\" is not a valid {what}"),
                );
            }
        };
        match &value.value {
            Value::String(s) => test(self, s, path),
            Value::Array(items) => {
                let len = path.len();
                for (i, x) in items.iter().enumerate() {
                    if let Some(s) = x.as_str() {
                        let _ = write!(path, "[{i}]");
                        test(self, s, path);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }

    fn audit_event(&mut self, root: &Json) {
        let code_in =
            |v: &mut Self, node: Option<&Json>, path: &str, allowed: &[&str], vs: &str| {
                if let Some(s) = node.and_then(Json::as_str) {
                    if !allowed.contains(&s) {
                        v.push(
                            IssueType::CodeInvalid,
                            path,
                            format!(
                                "\"{s}\" is not in the required value set {vs} ({})",
                                allowed.join(", ")
                            ),
                        );
                    }
                }
            };
        code_in(
            self,
            root.get("action"),
            "AuditEvent.action",
            ACTIONS,
            "audit-event-action",
        );
        code_in(
            self,
            root.get("outcome"),
            "AuditEvent.outcome",
            OUTCOMES,
            "audit-event-outcome",
        );

        // Required single elements fhirbolt already enforces for presence;
        // repeat them here so the message names the FHIRPath.
        if root.get("type").is_none() {
            self.push(
                IssueType::Required,
                "AuditEvent.type",
                "AuditEvent.type is required (1..1)",
            );
        }
        if root.get("recorded").is_none() {
            self.push(
                IssueType::Required,
                "AuditEvent.recorded",
                "AuditEvent.recorded is required (1..1)",
            );
        }
        match root.get("source") {
            None => self.push(
                IssueType::Required,
                "AuditEvent.source",
                "AuditEvent.source is required (1..1)",
            ),
            Some(src) if src.get("observer").is_none() => self.push(
                IssueType::Required,
                "AuditEvent.source.observer",
                "AuditEvent.source.observer is required (1..1)",
            ),
            _ => {}
        }

        match root.get("agent").map(|a| &a.value) {
            None => self.push(
                IssueType::Required,
                "AuditEvent.agent",
                "AuditEvent.agent is required (1..*)",
            ),
            Some(Value::Array(agents)) => {
                for (i, agent) in agents.iter().enumerate() {
                    let p = format!("AuditEvent.agent[{i}]");
                    if agent.get("requestor").is_none() {
                        self.push(
                            IssueType::Required,
                            &format!("{p}.requestor"),
                            "agent.requestor is required (1..1)",
                        );
                    }
                    if let Some(net) = agent.get("network") {
                        code_in(
                            self,
                            net.get("type"),
                            &format!("{p}.network.type"),
                            NETWORK_TYPES,
                            "network-type",
                        );
                    }
                }
            }
            Some(_) => {}
        }

        if let Some(entities) = root.get("entity").and_then(Json::as_array) {
            for (i, e) in entities.iter().enumerate() {
                let p = format!("AuditEvent.entity[{i}]");
                // sev-1: Either a name or a query (NOT both).
                if e.get("name").is_some() && e.get("query").is_some() {
                    self.push(
                        IssueType::Invariant,
                        &p,
                        "sev-1: an entity may have a name or a query, not both (name.empty() or query.empty())",
                    );
                }
                for (j, d) in e
                    .get("detail")
                    .and_then(Json::as_array)
                    .unwrap_or(&[])
                    .iter()
                    .enumerate()
                {
                    let dp = format!("{p}.detail[{j}]");
                    if d.get("type").is_none() {
                        self.push(
                            IssueType::Required,
                            &format!("{dp}.type"),
                            "entity.detail.type is required (1..1)",
                        );
                    }
                    let values = members(d)
                        .iter()
                        .filter(|m| m.key.starts_with("value"))
                        .count();
                    if values != 1 {
                        self.push(
                            IssueType::Required,
                            &format!("{dp}.value[x]"),
                            "entity.detail needs exactly one valueString or valueBase64Binary",
                        );
                    }
                }
            }
        }
    }
}

fn regex_like_date_time(s: &str, need_time: bool, need_full_time: bool) -> bool {
    // YYYY(-MM(-DD(Thh:mm:ss(.f+)?(Z|±hh:mm))?)?)? per FHIR's dateTime regex;
    // instants must carry the full time and a zone.
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    let num =
        |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok()).unwrap_or(99);
    if !digits(0..4) {
        return false;
    }
    if b.len() == 4 {
        return !need_time;
    }
    if b.get(4) != Some(&b'-') || !digits(5..7) || !(1..=12).contains(&num(5..7)) {
        return false;
    }
    if b.len() == 7 {
        return !need_time;
    }
    if b.get(7) != Some(&b'-') || !digits(8..10) {
        return false;
    }
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d == 0 || d > days[(m - 1) as usize] {
        return false;
    }
    if b.len() == 10 {
        return !need_time;
    }
    let _ = need_full_time;
    if b.get(10) != Some(&b'T')
        || !digits(11..13)
        || b.get(13) != Some(&b':')
        || !digits(14..16)
        || b.get(16) != Some(&b':')
        || !digits(17..19)
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len()
                && digits(i + 1..i + 3)
                && b[i + 3] == b':'
                && digits(i + 4..i + 6)
                && num(i + 1..i + 3) <= 14
                && num(i + 4..i + 6) <= 59
        }
        _ => false,
    }
}

pub fn is_instant(s: &str) -> bool {
    regex_like_date_time(s, true, true)
}

pub fn is_date_time(s: &str) -> bool {
    regex_like_date_time(s, false, false)
}

pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
}

pub fn is_uri(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

pub fn is_code(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.contains("  ") && !s.contains(['\t', '\n', '\r'])
}

pub fn is_base64(s: &str) -> bool {
    static TABLE: OnceLock<[bool; 256]> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [false; 256];
        for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
            t[*c as usize] = true;
        }
        t
    });
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    pad <= 2 && b[..b.len() - pad].iter().all(|&c| t[c as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use vellum_json::parse;

    fn issues(src: &str) -> Vec<(String, IssueType)> {
        validate_audit_event(&parse(src.as_bytes()).unwrap())
            .into_iter()
            .map(|i| (i.expression.unwrap_or_default(), i.code))
            .collect()
    }

    const OK: &str = r#"{"resourceType":"AuditEvent","type":{"code":"rest"},"action":"C","outcome":"0",
        "recorded":"2026-01-01T00:00:00.123+01:00","agent":[{"requestor":true}],
        "source":{"observer":{"display":"pacs"}},"entity":[{"name":"x","detail":[{"type":"t","valueString":"v"}]}]}"#;

    #[test]
    fn valid_event_has_no_issues() {
        assert_eq!(issues(OK), vec![]);
    }

    #[test]
    fn codes_outside_required_bindings_are_named() {
        let got = issues(
            &OK.replace(r#""action":"C""#, r#""action":"Z""#)
                .replace(r#""outcome":"0""#, r#""outcome":"1""#),
        );
        assert_eq!(
            got,
            vec![
                ("AuditEvent.action".into(), IssueType::CodeInvalid),
                ("AuditEvent.outcome".into(), IssueType::CodeInvalid)
            ]
        );
    }

    #[test]
    fn bad_instant_and_empty_agent_are_named() {
        let got = issues(
            &OK.replace("2026-01-01T00:00:00.123+01:00", "2026-02-30T00:00:00Z")
                .replace(r#"[{"requestor":true}]"#, "[]"),
        );
        assert!(
            got.contains(&("AuditEvent.recorded".into(), IssueType::Value)),
            "{got:?}"
        );
        assert!(
            got.contains(&("AuditEvent.agent".into(), IssueType::Structure)),
            "{got:?}"
        );
    }

    #[test]
    fn sev1_name_and_query_together() {
        let got = issues(&OK.replace(r#""name":"x""#, r#""name":"x","query":"eA==""#));
        assert_eq!(
            got,
            vec![("AuditEvent.entity[0]".into(), IssueType::Invariant)]
        );
    }

    #[test]
    fn primitive_formats() {
        assert!(is_instant("2026-01-01T00:00:00Z"));
        assert!(!is_instant("2026-01-01"));
        assert!(!is_instant("2026-01-01T00:00:00"));
        assert!(is_date_time("2026"));
        assert!(is_date_time("2026-02"));
        assert!(is_date_time("2024-02-29"));
        assert!(!is_date_time("2023-02-29"));
        assert!(!is_date_time("2026-13"));
        assert!(is_base64("eA=="));
        assert!(!is_base64("eA="));
        assert!(!is_base64("e*=="));
        assert!(is_id("a-b.1"));
        assert!(!is_id("a_b"));
    }
}
