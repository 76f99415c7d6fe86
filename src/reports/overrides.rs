//! `GET /reports/overrides`: per group, what radiologists did with the AI's
//! inferences. The unit is one inference (one inference-finding pair when
//! grouped or filtered by finding); its action is its first override.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use super::events::{Dataset, Inference};
use super::stats::{percentile, wilson};

/// The override actions, in column order.
pub const ACTIONS: [&str; 5] = ["accept", "accept_with_edit", "reject", "escalate", "ignore"];

/// What a report may be grouped by, in column order.
pub const GROUP_KEYS: [&str; 6] = [
    "model_version",
    "finding",
    "radiologist",
    "site",
    "week",
    "month",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error(
        "unknown group_by key `{0}` (use model_version, finding, radiologist, site, week, month)"
    )]
    GroupBy(String),
    #[error("`{0}` is not a date (YYYY-MM-DD) or an RFC 3339 instant")]
    Date(String),
    #[error("unknown parameter `{0}`")]
    Unknown(String),
    #[error("`format` must be json, csv or html")]
    Format,
    #[error("unknown action `{0}` (use accept, accept_with_edit, reject, escalate, ignore, override or none)")]
    Action(String),
    #[error("`{0}` is required")]
    Required(&'static str),
}

/// The filters of every report (all optional, AND-ed).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub model: Option<String>,
    /// A version, or `name|version`.
    pub model_version: Option<String>,
    pub finding: Option<String>,
    pub radiologist: Option<String>,
    pub site: Option<String>,
    /// Inferences recorded at or after.
    pub from: Option<OffsetDateTime>,
    /// Inferences recorded before.
    pub to: Option<OffsetDateTime>,
}

/// A query of `/reports/overrides`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filters: Filters,
    pub group_by: Vec<&'static str>,
    pub format: Option<String>,
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 instant.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, ParamError> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt)
        .map(|d| PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc())
        .map_err(|_| ParamError::Date(s.to_string()))
}

impl Query {
    /// From the URL's query pairs; unknown parameters are refused.
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self, ParamError> {
        let mut q = Query::default();
        for (k, v) in pairs {
            let v = v.trim();
            let f = &mut q.filters;
            let set = |slot: &mut Option<String>| {
                if !v.is_empty() {
                    *slot = Some(v.to_string());
                }
            };
            match k {
                "model" => set(&mut f.model),
                "model_version" => set(&mut f.model_version),
                "finding" => set(&mut f.finding),
                "radiologist" => set(&mut f.radiologist),
                "site" => set(&mut f.site),
                "from" if !v.is_empty() => f.from = Some(parse_time(v)?),
                "to" if !v.is_empty() => f.to = Some(parse_time(v)?),
                "from" | "to" => {}
                "group_by" => {
                    for key in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let known = GROUP_KEYS
                            .iter()
                            .find(|g| **g == key)
                            .ok_or_else(|| ParamError::GroupBy(key.to_string()))?;
                        if !q.group_by.contains(known) {
                            q.group_by.push(known);
                        }
                    }
                }
                "format" => match v {
                    "json" | "csv" | "html" => q.format = Some(v.to_string()),
                    "" => {}
                    _ => return Err(ParamError::Format),
                },
                other => return Err(ParamError::Unknown(other.to_string())),
            }
        }
        Ok(q)
    }
}

impl Filters {
    /// Whether an inference's model, version, site and time pass.
    pub fn inference_passes(&self, i: &Inference) -> bool {
        if self.model.as_ref().is_some_and(|m| *m != i.model) {
            return false;
        }
        if let Some(mv) = &self.model_version {
            let ok = match mv.split_once('|') {
                Some((n, v)) => n == i.model && v == i.version,
                None => *mv == i.version,
            };
            if !ok {
                return false;
            }
        }
        if self.site.as_ref().is_some_and(|s| *s != i.site) {
            return false;
        }
        if self.from.is_some_and(|f| i.recorded < f) || self.to.is_some_and(|t| i.recorded >= t) {
            return false;
        }
        true
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The group's key values, by group key name.
    pub group: BTreeMap<String, String>,
    pub inferences: u64,
    pub acted_on: u64,
    pub accept: u64,
    pub accept_with_edit: u64,
    pub reject: u64,
    pub escalate: u64,
    pub ignore: u64,
    /// accept_with_edit + reject.
    pub overrides: u64,
    /// overrides / acted_on.
    pub override_rate: Option<f64>,
    pub override_rate_low: Option<f64>,
    pub override_rate_high: Option<f64>,
    pub median_time_to_action_ms: Option<i64>,
    pub p90_time_to_action_ms: Option<i64>,
    pub fast_accepts: u64,
    pub never_rendered: u64,
    pub never_acted_on: u64,
    /// Every time to action of the group (for the histogram; not in CSV/JSON).
    #[serde(skip)]
    pub times: Vec<i64>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub group_by: Vec<&'static str>,
    pub fast_accept_ms: u64,
    pub rows: Vec<Row>,
}

/// ISO week `2026-W09` of an instant (UTC).
pub fn iso_week(t: OffsetDateTime) -> String {
    let (y, w, _) = t.to_iso_week_date();
    week_label(y, w)
}

/// `2026-03` of an instant (UTC).
pub fn month(t: OffsetDateTime) -> String {
    month_label(t.year(), u8::from(t.month()))
}

fn week_label(year: i32, week: u8) -> String {
    format!("{year}-W{week:02}")
}

fn month_label(year: i32, month: u8) -> String {
    format!("{year}-{month:02}")
}

/// One group key value, borrowed from the dataset where it can be, so that
/// counting allocates nothing per inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyPart<'a> {
    Unused,
    Text(&'a str),
    ModelVersion(&'a str, &'a str),
    Week(i32, u8),
    Month(i32, u8),
}

impl KeyPart<'_> {
    fn text(self) -> String {
        match self {
            KeyPart::Unused => String::new(),
            KeyPart::Text(s) => s.to_string(),
            KeyPart::ModelVersion(m, v) => format!("{m}|{v}"),
            KeyPart::Week(y, w) => week_label(y, w),
            KeyPart::Month(y, m) => month_label(y, m),
        }
    }
}

/// Computes the report over `data`.
pub fn compute(data: &Dataset, q: &Query, fast_accept_ms: u64) -> Report {
    let mut groups: HashMap<[KeyPart<'_>; GROUP_KEYS.len()], Row> = HashMap::new();
    let by_finding = q.group_by.contains(&"finding") || q.filters.finding.is_some();
    let mut findings: Vec<&str> = Vec::new();
    for inf in &data.inferences {
        if !q.filters.inference_passes(inf) {
            continue;
        }
        let first = inf.first_action();
        let radiologist = first.map(|o| o.radiologist.as_str()).unwrap_or("");
        if q.filters
            .radiologist
            .as_ref()
            .is_some_and(|r| r != radiologist)
        {
            continue;
        }
        findings.clear();
        if by_finding {
            findings.extend(
                inf.findings
                    .iter()
                    .map(String::as_str)
                    .filter(|f| q.filters.finding.as_ref().is_none_or(|want| want == f)),
            );
        } else {
            findings.push("");
        }
        let rendered = inf.rendered;
        for finding in &findings {
            let mut key = [KeyPart::Unused; GROUP_KEYS.len()];
            for (slot, g) in key.iter_mut().zip(&q.group_by) {
                *slot = match *g {
                    "model_version" => KeyPart::ModelVersion(&inf.model, &inf.version),
                    "finding" => KeyPart::Text(finding),
                    "radiologist" => KeyPart::Text(radiologist),
                    "site" => KeyPart::Text(&inf.site),
                    "week" => {
                        let (y, w, _) = inf.recorded.to_iso_week_date();
                        KeyPart::Week(y, w)
                    }
                    _ => KeyPart::Month(inf.recorded.year(), u8::from(inf.recorded.month())),
                };
            }
            let row = groups.entry(key).or_insert_with(empty_row);
            row.inferences += 1;
            if !rendered {
                row.never_rendered += 1;
            }
            match first {
                None => row.never_acted_on += 1,
                Some(o) => {
                    row.acted_on += 1;
                    match o.action.as_str() {
                        "accept" => row.accept += 1,
                        "accept_with_edit" => row.accept_with_edit += 1,
                        "reject" => row.reject += 1,
                        "escalate" => row.escalate += 1,
                        _ => row.ignore += 1,
                    }
                    if let Some(ms) = o.time_to_action_ms {
                        row.times.push(ms);
                        if o.action == "accept" && (ms as u64) < fast_accept_ms {
                            row.fast_accepts += 1;
                        }
                    }
                }
            }
        }
    }
    // Rows in the order of their key texts (as they are shown).
    let mut keyed: Vec<(Vec<String>, Row)> = groups
        .into_iter()
        .map(|(key, row)| {
            let texts = key[..q.group_by.len()].iter().map(|k| k.text()).collect();
            (texts, row)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let rows = keyed
        .into_iter()
        .map(|(texts, mut r)| {
            r.group = q
                .group_by
                .iter()
                .zip(texts)
                .map(|(g, v)| (g.to_string(), v))
                .collect();
            r.overrides = r.accept_with_edit + r.reject;
            r.override_rate = (r.acted_on > 0).then(|| r.overrides as f64 / r.acted_on as f64);
            if let Some((lo, hi)) = wilson(r.overrides, r.acted_on) {
                r.override_rate_low = Some(lo);
                r.override_rate_high = Some(hi);
            }
            r.times.sort_unstable();
            r.median_time_to_action_ms = percentile(&r.times, 0.5);
            r.p90_time_to_action_ms = percentile(&r.times, 0.9);
            r
        })
        .collect();
    Report {
        group_by: q.group_by.clone(),
        fast_accept_ms,
        rows,
    }
}

fn empty_row() -> Row {
    Row {
        group: BTreeMap::new(),
        inferences: 0,
        acted_on: 0,
        accept: 0,
        accept_with_edit: 0,
        reject: 0,
        escalate: 0,
        ignore: 0,
        overrides: 0,
        override_rate: None,
        override_rate_low: None,
        override_rate_high: None,
        median_time_to_action_ms: None,
        p90_time_to_action_ms: None,
        fast_accepts: 0,
        never_rendered: 0,
        never_acted_on: 0,
        times: Vec::new(),
    }
}

/// The CSV header: the six group columns (empty unless grouped by), then
/// the counts and statistics. Stable: new columns are only ever appended.
pub const CSV_COLUMNS: [&str; 23] = [
    "model_version",
    "finding",
    "radiologist",
    "site",
    "week",
    "month",
    "inferences",
    "acted_on",
    "accept",
    "accept_with_edit",
    "reject",
    "escalate",
    "ignore",
    "overrides",
    "override_rate",
    "override_rate_low",
    "override_rate_high",
    "median_time_to_action_ms",
    "p90_time_to_action_ms",
    "fast_accepts",
    "never_rendered",
    "never_acted_on",
    "fast_accept_ms",
];

/// The report as CSV (RFC 4180, CRLF line ends).
pub fn to_csv(r: &Report) -> String {
    let mut out = String::new();
    super::csv::line(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    let opt_f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let opt_i = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    for row in &r.rows {
        let mut cells: Vec<String> = GROUP_KEYS
            .iter()
            .map(|g| row.group.get(*g).cloned().unwrap_or_default())
            .collect();
        cells.extend(
            [
                row.inferences,
                row.acted_on,
                row.accept,
                row.accept_with_edit,
                row.reject,
                row.escalate,
                row.ignore,
                row.overrides,
            ]
            .iter()
            .map(u64::to_string),
        );
        cells.push(opt_f(row.override_rate));
        cells.push(opt_f(row.override_rate_low));
        cells.push(opt_f(row.override_rate_high));
        cells.push(opt_i(row.median_time_to_action_ms));
        cells.push(opt_i(row.p90_time_to_action_ms));
        cells.push(row.fast_accepts.to_string());
        cells.push(row.never_rendered.to_string());
        cells.push(row.never_acted_on.to_string());
        cells.push(r.fast_accept_ms.to_string());
        super::csv::line(&mut out, cells);
    }
    out
}
