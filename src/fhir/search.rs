//! FHIR R4 search on AuditEvent: the supported parameters, and parsing a
//! request's parameters into a backend-neutral [`SearchQuery`].
//!
//! Errors name the parameter in `expression`. Unknown parameters are refused
//! (strict, the default) or ignored and reported (`Prefer: handling=lenient`);
//! an unsupported modifier on a known parameter is always refused, because
//! ignoring it would silently widen the result (R4 §3.1.1.5).

use super::outcome::{Issue, IssueType};
use super::search_index::{date_range, normalize_string, split_reference};
use vellum_ledger::store::search::{
    Condition, Cursor, DatePrefix, RowMatch, SearchQuery, Selectivity, SortKey, SystemMatch,
};

/// Types of search parameters (R4 §3.1.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Token,
    String,
    Reference,
    Date,
    Uri,
}

/// One R4 AuditEvent search parameter vellum supports.
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: ParamType,
    pub selectivity: Selectivity,
    pub description: &'static str,
}

impl ParamDef {
    /// The canonical URL of the parameter's definition.
    pub fn definition(&self) -> String {
        match self.name.strip_prefix('_') {
            // Common parameters of every resource (`_tag`).
            Some(common) => format!("http://hl7.org/fhir/SearchParameter/Resource-{common}"),
            None => format!(
                "http://hl7.org/fhir/SearchParameter/AuditEvent-{}",
                self.name
            ),
        }
    }
}

const fn p(
    name: &'static str,
    kind: ParamType,
    selectivity: Selectivity,
    description: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind,
        selectivity,
        description,
    }
}

use ParamType as T;
use Selectivity as S;

/// Every R4 AuditEvent search parameter.
pub const PARAMS: &[ParamDef] = &[
    p(
        "action",
        T::Token,
        S::Broad,
        "Type of action performed during the event",
    ),
    p(
        "address",
        T::String,
        S::Narrow,
        "Identifier for the network access point of the user device",
    ),
    p("agent", T::Reference, S::Narrow, "Identifier of who"),
    p(
        "agent-name",
        T::String,
        S::Narrow,
        "Human friendly name for the agent",
    ),
    p("agent-role", T::Token, S::Medium, "Agent role in the event"),
    p("altid", T::Token, S::Narrow, "Alternative User identity"),
    p(
        "date",
        T::Date,
        S::Medium,
        "Time when the event was recorded",
    ),
    p(
        "entity",
        T::Reference,
        S::Narrow,
        "Specific instance of resource",
    ),
    p("entity-name", T::String, S::Narrow, "Descriptor for entity"),
    p(
        "entity-role",
        T::Token,
        S::Medium,
        "What role the entity played",
    ),
    p(
        "entity-type",
        T::Token,
        S::Medium,
        "Type of entity involved",
    ),
    p(
        "outcome",
        T::Token,
        S::Broad,
        "Whether the event succeeded or failed",
    ),
    p("patient", T::Reference, S::Narrow, "Identifier of who"),
    p("policy", T::Uri, S::Narrow, "Policy that authorized event"),
    p(
        "site",
        T::Token,
        S::Medium,
        "Logical source location within the enterprise",
    ),
    p(
        "source",
        T::Reference,
        S::Narrow,
        "The identity of source detecting the event",
    ),
    p(
        "subtype",
        T::Token,
        S::Medium,
        "More specific type/id for the event",
    ),
    p("type", T::Token, S::Medium, "Type/identifier of event"),
    p(
        "_tag",
        T::Token,
        S::Narrow,
        "Tags applied to this resource (vellum tags each event with its authenticated sender)",
    ),
];

/// The IHE ITI-81 chained parameters: `<reference param>.identifier`.
pub const IDENTIFIER_CHAINS: &[&str] = &[
    "agent.identifier",
    "patient.identifier",
    "entity.identifier",
    "source.identifier",
];

pub const DEFAULT_COUNT: i64 = 50;
pub const MAX_COUNT: i64 = 1000;

pub fn param_def(name: &str) -> Option<&'static ParamDef> {
    PARAMS.iter().find(|d| d.name == name)
}

/// `_total` as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    /// Not asked: given only when known for free (a single, complete page).
    Default,
    None,
    Accurate,
}

/// A parsed search request.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: SearchQuery,
    /// `_count` as asked (0 = count only).
    pub count: i64,
    pub summary_count: bool,
    pub total: TotalMode,
    /// `_elements`: top-level elements to keep (None = all).
    pub elements: Option<Vec<String>>,
    /// `_head` given by the client (a paging link); else the caller pins it.
    pub head_given: bool,
    /// The parameters as understood, for the `self`/paging links (without
    /// `_cursor` and `_head`, which the links add).
    pub echo: Vec<(String, String)>,
    /// Unknown parameters that were ignored (lenient handling).
    pub ignored: Vec<Issue>,
}

/// Parses `params` (query string and form body pairs, decoded). `now_us` is
/// the current time in µs (for `ap`).
pub use crate::config::SearchLimits;

/// The limit a search breaks, as an issue naming the setting.
fn over_limits(params: &[(String, String)], limits: SearchLimits) -> Option<Issue> {
    if params.len() > limits.max_params {
        return Some(Issue::error(
            IssueType::TooCostly,
            format!(
                "the search has {} parameters; the limit is {} (limits.search_max_params)",
                params.len(),
                limits.max_params
            ),
        ));
    }
    params.iter().find_map(|(name, value)| {
        let n = value.split(',').count();
        (n > limits.max_values).then(|| {
            Issue::error(
                IssueType::TooCostly,
                format!(
                    "{n} values for one parameter; the limit is {} (limits.search_max_values)",
                    limits.max_values
                ),
            )
            .at(name.as_str())
        })
    })
}

/// [`parse_within`] the default [`SearchLimits`].
pub fn parse(
    params: &[(String, String)],
    strict: bool,
    now_us: i64,
) -> Result<SearchRequest, Vec<Issue>> {
    parse_within(params, strict, now_us, SearchLimits::default())
}

/// Parses a search's parameters into a query, refusing one above `limits`.
pub fn parse_within(
    params: &[(String, String)],
    strict: bool,
    now_us: i64,
    limits: SearchLimits,
) -> Result<SearchRequest, Vec<Issue>> {
    if let Some(issue) = over_limits(params, limits) {
        return Err(vec![issue]);
    }
    let mut errors = Vec::new();
    let mut req = SearchRequest {
        query: SearchQuery {
            conditions: Vec::new(),
            sort: SortKey::Seq,
            descending: false,
            head: i64::MAX,
            cursor: None,
            limit: DEFAULT_COUNT + 1,
        },
        count: DEFAULT_COUNT,
        summary_count: false,
        total: TotalMode::Default,
        elements: None,
        head_given: false,
        echo: Vec::new(),
        ignored: Vec::new(),
    };
    for (name, value) in params {
        match parse_one(&mut req, name, value, now_us) {
            Ok(Handled::Echo) => req.echo.push((name.clone(), value.clone())),
            Ok(Handled::Silent) => {}
            Ok(Handled::Unknown(why)) => {
                let issue = Issue {
                    severity: if strict {
                        super::outcome::Severity::Error
                    } else {
                        super::outcome::Severity::Warning
                    },
                    code: IssueType::NotSupported,
                    diagnostics: if strict {
                        format!("{why}; refused (send Prefer: handling=lenient to ignore unknown parameters)")
                    } else {
                        format!("{why}; it was ignored")
                    },
                    expression: Some(name.clone()),
                };
                if strict {
                    errors.push(issue);
                } else {
                    req.ignored.push(issue);
                }
            }
            Err(issue) => errors.push(issue),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    req.query.limit = req.count + 1;
    Ok(req)
}

enum Handled {
    /// Understood; repeated in paging links.
    Echo,
    /// Understood; not repeated (`_format`, paging state…).
    Silent,
    /// Not a parameter vellum knows (the reason).
    Unknown(String),
}

fn bad(name: &str, msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invalid, msg).at(name)
}

fn parse_one(
    req: &mut SearchRequest,
    name: &str,
    value: &str,
    now_us: i64,
) -> Result<Handled, Issue> {
    let (base, modifier) = match name.split_once(':') {
        Some((b, m)) => (b, Some(m)),
        None => (name, None),
    };
    match base {
        "_count" => {
            let n: i64 = value.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                bad(
                    name,
                    format!("_count must be a non-negative integer, not \"{value}\""),
                )
            })?;
            req.count = n.min(MAX_COUNT);
            return Ok(Handled::Echo);
        }
        "_sort" => {
            let (desc, key) = match value.strip_prefix('-') {
                Some(k) => (true, k),
                None => (false, value),
            };
            req.query.sort = match key {
                "date" => SortKey::Recorded,
                "_lastUpdated" => SortKey::Seq,
                _ => {
                    return Err(Issue::error(
                        IssueType::NotSupported,
                        format!("_sort={value} is not supported; use date, -date, _lastUpdated or -_lastUpdated"),
                    )
                    .at(name))
                }
            };
            req.query.descending = desc;
            return Ok(Handled::Echo);
        }
        "_summary" => {
            return match value {
                "count" => {
                    req.summary_count = true;
                    Ok(Handled::Echo)
                }
                "false" => Ok(Handled::Echo),
                _ => Ok(Handled::Unknown(format!(
                    "_summary={value} is not supported (count and false are)"
                ))),
            }
        }
        "_total" => {
            req.total = match value {
                "none" => TotalMode::None,
                "estimate" | "accurate" => TotalMode::Accurate,
                _ => return Err(bad(name, "_total must be none, estimate or accurate")),
            };
            return Ok(Handled::Echo);
        }
        "_elements" => {
            let els: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.strip_prefix("AuditEvent.").unwrap_or(s).to_string())
                .collect();
            req.elements = Some(els);
            return Ok(Handled::Echo);
        }
        "_format" | "_pretty" => return Ok(Handled::Silent),
        "_cursor" => {
            req.query.cursor = Some(parse_cursor(value).ok_or_else(|| {
                bad(
                    name,
                    "_cursor is not a cursor vellum issued (use the Bundle's links)",
                )
            })?);
            return Ok(Handled::Silent);
        }
        "_head" => {
            req.query.head = value
                .parse()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad(name, "_head must be a non-negative integer"))?;
            req.head_given = true;
            return Ok(Handled::Silent);
        }
        "_id" => {
            if modifier.is_some() {
                return Err(unsupported_modifier(name));
            }
            let ids = split_or(value)
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>();
            if ids.is_empty() {
                return Err(bad(name, "_id needs a value"));
            }
            req.query.conditions.push(Condition::Id(ids));
            return Ok(Handled::Echo);
        }
        "_lastUpdated" => {
            if modifier == Some("missing") {
                // Every entry has one.
                req.query
                    .conditions
                    .push(missing(name, "_lastUpdated", value)?);
                return Ok(Handled::Echo);
            }
            if modifier.is_some() {
                return Err(unsupported_modifier(name));
            }
            req.query.conditions.push(date_condition(
                name,
                "_lastUpdated",
                value,
                S::Medium,
                now_us,
            )?);
            return Ok(Handled::Echo);
        }
        _ => {}
    }
    if let Some((target, field)) = base.split_once('.') {
        if field == "identifier" && IDENTIFIER_CHAINS.contains(&base) && modifier.is_none() {
            let cond = token_condition(
                name,
                &format!("{target}:identifier"),
                value,
                false,
                S::Narrow,
            )?;
            req.query.conditions.push(cond);
            return Ok(Handled::Echo);
        }
        return Ok(Handled::Unknown(format!(
            "chained parameter {name} is not supported (the .identifier chains of agent, patient, entity and source are)"
        )));
    }
    if base.starts_with('_') && param_def(base).is_none() {
        return Ok(Handled::Unknown(format!(
            "parameter {name} is not supported"
        )));
    }
    let Some(def) = param_def(base) else {
        return Ok(Handled::Unknown(format!(
            "{base} is not an AuditEvent search parameter"
        )));
    };
    let cond = match (def.kind, modifier) {
        (_, Some("missing")) => missing(name, def.name, value)?,
        (T::Token, None) => token_condition(name, def.name, value, false, def.selectivity)?,
        (T::Token, Some("not")) => token_condition(name, def.name, value, true, def.selectivity)?,
        (T::Uri, None) => Condition::Has {
            param: def.name.to_string(),
            any: non_empty(name, split_or(value))?
                .into_iter()
                .map(|v| RowMatch::Value {
                    val: v,
                    sys: SystemMatch::Any,
                })
                .collect(),
            negate: false,
            selectivity: def.selectivity,
        },
        (T::String, None | Some("exact") | Some("contains")) => Condition::Has {
            param: def.name.to_string(),
            any: non_empty(name, split_or(value))?
                .into_iter()
                .map(|v| match modifier {
                    Some("exact") => RowMatch::Exact(v),
                    Some("contains") => RowMatch::Contains(normalize_string(&v)),
                    _ => RowMatch::Prefix(normalize_string(&v)),
                })
                .collect(),
            negate: false,
            selectivity: def.selectivity,
        },
        (T::Reference, Some("identifier")) => token_condition(
            name,
            &format!("{}:identifier", def.name),
            value,
            false,
            S::Narrow,
        )?,
        (T::Reference, None) => reference_condition(name, def.name, None, value)?,
        (T::Reference, Some(ty)) if is_resource_type(ty) => {
            reference_condition(name, def.name, Some(ty), value)?
        }
        (T::Date, None) => date_condition(name, def.name, value, def.selectivity, now_us)?,
        (_, Some(_)) => return Err(unsupported_modifier(name)),
    };
    req.query.conditions.push(cond);
    Ok(Handled::Echo)
}

fn unsupported_modifier(name: &str) -> Issue {
    Issue::error(
        IssueType::NotSupported,
        format!("the modifier in {name} is not supported for this parameter (see /fhir/metadata)"),
    )
    .at(name)
}

fn non_empty(name: &str, values: Vec<String>) -> Result<Vec<String>, Issue> {
    if values.iter().any(String::is_empty) {
        return Err(bad(name, format!("{name} has an empty value")));
    }
    Ok(values)
}

fn is_resource_type(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn missing(name: &str, param: &str, value: &str) -> Result<Condition, Issue> {
    let missing = match value {
        "true" => true,
        "false" => false,
        _ => return Err(bad(name, format!("{name} must be true or false"))),
    };
    Ok(Condition::Missing {
        param: param.to_string(),
        missing,
    })
}

/// Splits a parameter value on unescaped commas (OR), unescaping `\,` `\|` `\$` `\\`.
pub fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '$' | '|' | '\\')) => {
                    if let Some(last) = out.last_mut() {
                        // Keep `\|` escaped for the token splitter.
                        if n == '|' {
                            last.push('\\');
                        }
                        last.push(n);
                    }
                }
                Some(n) => {
                    if let Some(last) = out.last_mut() {
                        last.push('\\');
                        last.push(n);
                    }
                }
                None => {
                    if let Some(last) = out.last_mut() {
                        last.push('\\');
                    }
                }
            },
            ',' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

/// `system|code`, `|code`, `code`, `system|` → a row match.
fn token_match(name: &str, v: &str) -> Result<RowMatch, Issue> {
    let split = v
        .char_indices()
        .find(|&(i, c)| c == '|' && (i == 0 || v.as_bytes()[i - 1] != b'\\'))
        .map(|(i, _)| i);
    let unescape = |s: &str| s.replace("\\|", "|");
    match split {
        None if v.is_empty() => Err(bad(name, format!("{name} has an empty value"))),
        None => Ok(RowMatch::Value {
            val: unescape(v),
            sys: SystemMatch::Any,
        }),
        Some(i) => {
            let (system, code) = (&v[..i], &v[i + 1..]);
            match (system.is_empty(), code.is_empty()) {
                (true, true) => Err(bad(
                    name,
                    format!("{name}=| names neither a system nor a code"),
                )),
                (true, false) => Ok(RowMatch::Value {
                    val: unescape(code),
                    sys: SystemMatch::Absent,
                }),
                (false, true) => Ok(RowMatch::System(unescape(system))),
                (false, false) => Ok(RowMatch::Value {
                    val: unescape(code),
                    sys: SystemMatch::Is(unescape(system)),
                }),
            }
        }
    }
}

fn token_condition(
    name: &str,
    param: &str,
    value: &str,
    negate: bool,
    selectivity: Selectivity,
) -> Result<Condition, Issue> {
    let any = split_or(value)
        .iter()
        .map(|v| token_match(name, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Condition::Has {
        param: param.to_string(),
        any,
        negate,
        selectivity,
    })
}

/// `Type/id`, `id`, an absolute URL, or (with a type modifier) a bare id.
fn reference_condition(
    name: &str,
    param: &str,
    type_modifier: Option<&str>,
    value: &str,
) -> Result<Condition, Issue> {
    let mut any = Vec::new();
    for v in non_empty(name, split_or(value))? {
        let m = match (split_reference(&v), type_modifier) {
            ((Some(ty), Some(_)), Some(want)) if ty != want => {
                return Err(bad(
                    name,
                    format!("{name}={v}: the reference's type is not {want}"),
                ))
            }
            ((Some(ty), Some(id)), _) => RowMatch::TypedId { ty, id },
            (_, Some(ty)) if !v.contains('/') => RowMatch::TypedId {
                ty: ty.to_string(),
                id: v,
            },
            // A bare id (any type), or a reference that is not Type/id
            // (urn:uuid:…), which is indexed whole.
            _ => RowMatch::Value {
                val: v,
                sys: SystemMatch::Any,
            },
        };
        any.push(m);
    }
    Ok(Condition::Has {
        param: param.to_string(),
        any,
        negate: false,
        selectivity: Selectivity::Narrow,
    })
}

fn date_condition(
    name: &str,
    param: &str,
    value: &str,
    selectivity: Selectivity,
    now_us: i64,
) -> Result<Condition, Issue> {
    let mut any = Vec::new();
    for v in split_or(value) {
        let (prefix, text) = match v.get(..2) {
            Some(p) if p.chars().all(|c| c.is_ascii_lowercase()) => {
                let prefix = match p {
                    "eq" => DatePrefix::Eq,
                    "ne" => DatePrefix::Ne,
                    "gt" => DatePrefix::Gt,
                    "lt" => DatePrefix::Lt,
                    "ge" => DatePrefix::Ge,
                    "le" => DatePrefix::Le,
                    "sa" => DatePrefix::Sa,
                    "eb" => DatePrefix::Eb,
                    "ap" => DatePrefix::Ap,
                    _ => return Err(bad(name, format!("{name}: unknown prefix \"{p}\""))),
                };
                (prefix, &v[2..])
            }
            _ => (DatePrefix::Eq, v.as_str()),
        };
        let (mut low, mut high) = parse_search_date(text).ok_or_else(|| {
            bad(
                name,
                format!("{name}: \"{text}\" is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.f…]][Z|±hh:mm])"),
            )
        })?;
        if prefix == DatePrefix::Ap {
            // "Approximately": within 10 % of the gap between now and the
            // value (R4 leaves the exact width to the server; vellum documents
            // this rule), never narrower than the value's own precision.
            let gap = (now_us - low).abs() / 10;
            low -= gap;
            high += gap;
        }
        any.push(RowMatch::Date { prefix, low, high });
    }
    Ok(Condition::Has {
        param: param.to_string(),
        any,
        negate: false,
        selectivity,
    })
}

/// A search date value: FHIR date/dateTime/instant shapes, validated.
pub fn parse_search_date(text: &str) -> Option<(i64, i64)> {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let shape_ok = match b.len() {
        4 => digits(0..4),
        7 => digits(0..4) && b[4] == b'-' && digits(5..7),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        n if n >= 16 => {
            digits(0..4)
                && b[4] == b'-'
                && digits(5..7)
                && b[7] == b'-'
                && digits(8..10)
                && b[10] == b'T'
                && digits(11..13)
                && b[13] == b':'
                && digits(14..16)
        }
        _ => false,
    };
    if !shape_ok {
        return None;
    }
    date_range(text)
}

/// Cursor text: `f<key>.<seq>` (after) or `b<key>.<seq>` (before).
pub fn format_cursor(c: &Cursor) -> String {
    format!("{}{}.{}", if c.forward { 'f' } else { 'b' }, c.key, c.seq)
}

fn parse_cursor(s: &str) -> Option<Cursor> {
    let forward = match s.get(..1)? {
        "f" => true,
        "b" => false,
        _ => return None,
    };
    let (key, seq) = s[1..].split_once('.')?;
    Some(Cursor {
        key: key.parse().ok()?,
        seq: seq.parse().ok()?,
        forward,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn tokens_follow_the_four_forms() {
        assert_eq!(
            token_match("x", "http://s|c").unwrap(),
            RowMatch::Value {
                val: "c".into(),
                sys: SystemMatch::Is("http://s".into())
            }
        );
        assert_eq!(
            token_match("x", "|c").unwrap(),
            RowMatch::Value {
                val: "c".into(),
                sys: SystemMatch::Absent
            }
        );
        assert_eq!(
            token_match("x", "http://s|").unwrap(),
            RowMatch::System("http://s".into())
        );
        assert_eq!(
            token_match("x", "c").unwrap(),
            RowMatch::Value {
                val: "c".into(),
                sys: SystemMatch::Any
            }
        );
        assert!(token_match("x", "|").is_err());
    }

    #[test]
    fn commas_or_and_escapes() {
        assert_eq!(split_or("a,b\\,c"), vec!["a", "b,c"]);
    }

    #[test]
    fn unknown_parameters_depend_on_handling() {
        let lenient = parse(&pairs(&[("colour", "red"), ("action", "E")]), false, 0).unwrap();
        assert_eq!(lenient.ignored.len(), 1);
        assert_eq!(lenient.query.conditions.len(), 1);
        let strict = parse(&pairs(&[("colour", "red")]), true, 0).unwrap_err();
        assert_eq!(strict[0].expression.as_deref(), Some("colour"));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let e = parse(&pairs(&[("date", "ge2026-13")]), false, 0).unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("date"));
        let e = parse(&pairs(&[("action:text", "E")]), false, 0).unwrap_err();
        assert_eq!(e[0].code, IssueType::NotSupported);
        let e = parse(&pairs(&[("_count", "-1")]), false, 0).unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("_count"));
    }

    #[test]
    fn search_dates_are_validated() {
        assert!(parse_search_date("2026").is_some());
        assert!(parse_search_date("2026-03").is_some());
        assert!(parse_search_date("2026-03-14T10:00").is_some());
        assert!(parse_search_date("2026-03-14T10:00:00+01:00").is_some());
        assert!(parse_search_date("26-03").is_none());
        assert!(parse_search_date("2026-02-30").is_none());
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            key: -5,
            seq: 9,
            forward: false,
        };
        assert_eq!(parse_cursor(&format_cursor(&c)), Some(c));
    }
}
