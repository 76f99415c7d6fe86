//! `GET /reports/quality`: how each model version ran, per period — from
//! the fields every stored inference records (`latency-ms`, `cpu-fallback`,
//! each finding's confidence, the study digest check).

use std::collections::BTreeMap;

use serde::Serialize;

use super::events::Dataset;
use super::overrides::{iso_week, month, ParamError, Query};
use super::stats::percentile;

/// The confidence bins: [0, 0.1), [0.1, 0.2), …, [0.9, 1.0].
pub const BINS: usize = 10;

/// One finding's confidences.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Confidence {
    pub count: u64,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub max: Option<f64>,
    /// Counts per bin of width 0.1 (the last bin includes 1.0).
    pub bins: [u64; BINS],
    #[serde(skip)]
    values: Vec<(f64, usize)>,
}

/// One model version in one period.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub model: String,
    pub version: String,
    /// `all`, an ISO week (`2026-W09`) or a month (`2026-03`).
    pub period: String,
    /// Inferences recorded.
    pub requests: u64,
    /// Inferences with a `latency-ms`.
    pub latency_count: u64,
    pub latency_mean_ms: Option<f64>,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub latency_p99_ms: Option<i64>,
    /// Inferences recording `cpu-fallback`, and those with `true`.
    pub cpu_fallback_known: u64,
    pub cpu_fallbacks: u64,
    pub cpu_fallback_rate: Option<f64>,
    /// Inferences whose `digest-check` is `mismatch`.
    pub digest_mismatches: u64,
    /// Every `digest-check` value and its count.
    pub digest_checks: BTreeMap<String, u64>,
    /// Per finding code.
    pub confidence: BTreeMap<String, Confidence>,
    #[serde(skip)]
    latencies: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    pub period: &'static str,
    pub rows: Vec<Row>,
}

/// The period of a quality query: `group_by` may be empty (`all`), `week`
/// or `month`; every other group key is refused.
pub fn period_of(q: &Query) -> Result<&'static str, ParamError> {
    // Quality is a property of the model's runs, not of who read them.
    if q.filters.radiologist.is_some() {
        return Err(ParamError::Unknown("radiologist".into()));
    }
    match q.group_by.as_slice() {
        [] => Ok("all"),
        ["week"] => Ok("week"),
        ["month"] => Ok("month"),
        other => Err(ParamError::GroupBy(other.join(","))),
    }
}

/// Computes the report (filters: model, model_version, site, from, to).
pub fn compute(data: &Dataset, q: &Query, period: &'static str) -> QualityReport {
    let mut rows: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    for inf in &data.inferences {
        if !q.filters.inference_passes(inf) {
            continue;
        }
        let wanted = q.filters.finding.as_deref();
        if wanted.is_some_and(|f| !inf.findings.iter().any(|x| x == f)) {
            continue;
        }
        let p = match period {
            "week" => iso_week(inf.recorded),
            "month" => month(inf.recorded),
            _ => "all".to_string(),
        };
        let row = rows
            .entry((inf.model.clone(), inf.version.clone(), p.clone()))
            .or_insert_with(|| Row {
                model: inf.model.clone(),
                version: inf.version.clone(),
                period: p,
                requests: 0,
                latency_count: 0,
                latency_mean_ms: None,
                latency_p50_ms: None,
                latency_p95_ms: None,
                latency_p99_ms: None,
                cpu_fallback_known: 0,
                cpu_fallbacks: 0,
                cpu_fallback_rate: None,
                digest_mismatches: 0,
                digest_checks: BTreeMap::new(),
                confidence: BTreeMap::new(),
                latencies: Vec::new(),
            });
        row.requests += 1;
        if let Some(ms) = inf.latency_ms.and_then(|v| i64::try_from(v).ok()) {
            row.latencies.push(ms);
        }
        if let Some(c) = inf.cpu_fallback {
            row.cpu_fallback_known += 1;
            row.cpu_fallbacks += u64::from(c);
        }
        if let Some(d) = &inf.digest_check {
            *row.digest_checks.entry(d.clone()).or_default() += 1;
            if d == "mismatch" {
                row.digest_mismatches += 1;
            }
        }
        for (code, text) in &inf.confidences {
            if wanted.is_some_and(|f| f != code) {
                continue;
            }
            if let Some(v) = confidence(text) {
                row.confidence
                    .entry(code.clone())
                    .or_default()
                    .values
                    .push(v);
            }
        }
    }
    let rows = rows
        .into_values()
        .map(|mut r| {
            r.latencies.sort_unstable();
            r.latency_count = r.latencies.len() as u64;
            if !r.latencies.is_empty() {
                let sum: f64 = r.latencies.iter().map(|&v| v as f64).sum();
                r.latency_mean_ms = Some(sum / r.latencies.len() as f64);
            }
            r.latency_p50_ms = percentile(&r.latencies, 0.5);
            r.latency_p95_ms = percentile(&r.latencies, 0.95);
            r.latency_p99_ms = percentile(&r.latencies, 0.99);
            r.cpu_fallback_rate = (r.cpu_fallback_known > 0)
                .then(|| r.cpu_fallbacks as f64 / r.cpu_fallback_known as f64);
            for c in r.confidence.values_mut() {
                finish(c);
            }
            r
        })
        .collect();
    QualityReport { period, rows }
}

/// The bin of a confidence's exact decimal text (see [`confidence`]).
pub fn confidence_bin(text: &str) -> Option<usize> {
    confidence(text).map(|(_, bin)| bin)
}

/// A confidence's value and bin, from its exact decimal text: the bin is
/// the first decimal digit (so `0.300` is in [0.3, 0.4) whatever binary
/// rounding does), 1 is in the last bin; outside [0, 1] it is left out.
fn confidence(text: &str) -> Option<(f64, usize)> {
    let v = text.parse::<f64>().ok()?;
    if !(0.0..=1.0).contains(&v) {
        return None;
    }
    let bin = match text.strip_prefix("0.").and_then(|d| d.bytes().next()) {
        Some(d) if d.is_ascii_digit() => usize::from(d - b'0'),
        _ if v >= 1.0 => BINS - 1,
        _ => 0,
    };
    Some((v, bin))
}

fn finish(c: &mut Confidence) {
    c.values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = c.values.len();
    c.count = n as u64;
    if n == 0 {
        return;
    }
    c.mean = Some(c.values.iter().map(|v| v.0).sum::<f64>() / n as f64);
    c.min = c.values.first().map(|v| v.0);
    c.max = c.values.last().map(|v| v.0);
    // Nearest rank, as for times.
    let rank = ((0.5 * n as f64).ceil() as usize).clamp(1, n);
    c.median = c.values.get(rank - 1).map(|v| v.0);
    for (_, bin) in &c.values {
        if let Some(b) = c.bins.get_mut(*bin) {
            *b += 1;
        }
    }
}

/// The CSV columns, in order: one line per version, period and finding
/// (`finding` empty on the version's own line, whose confidence cells are
/// empty). Stable: new columns are only ever appended.
pub const CSV_COLUMNS: [&str; 27] = [
    "model",
    "version",
    "period",
    "finding",
    "requests",
    "latency_count",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "cpu_fallback_known",
    "cpu_fallbacks",
    "cpu_fallback_rate",
    "digest_mismatches",
    "confidence_count",
    "confidence_mean",
    "confidence_median",
    "bin_0_0.1",
    "bin_0.1_0.2",
    "bin_0.2_0.3",
    "bin_0.3_0.4",
    "bin_0.4_0.5",
    "bin_0.5_0.6",
    "bin_0.6_0.7",
    "bin_0.7_0.8",
    "bin_0.8_0.9",
    "bin_0.9_1",
];

pub fn to_csv(r: &QualityReport) -> String {
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let i = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut out = String::new();
    super::csv::line(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    for row in &r.rows {
        let head = |finding: &str| {
            vec![
                row.model.clone(),
                row.version.clone(),
                row.period.clone(),
                finding.to_string(),
                row.requests.to_string(),
                row.latency_count.to_string(),
                f(row.latency_mean_ms),
                i(row.latency_p50_ms),
                i(row.latency_p95_ms),
                i(row.latency_p99_ms),
                row.cpu_fallback_known.to_string(),
                row.cpu_fallbacks.to_string(),
                f(row.cpu_fallback_rate),
                row.digest_mismatches.to_string(),
            ]
        };
        let mut cells = head("");
        cells.extend(std::iter::repeat_n(String::new(), 3 + BINS));
        super::csv::line(&mut out, cells);
        for (code, c) in &row.confidence {
            let mut cells = head(code);
            cells.push(c.count.to_string());
            cells.push(f(c.mean));
            cells.push(f(c.median));
            cells.extend(c.bins.iter().map(u64::to_string));
            super::csv::line(&mut out, cells);
        }
    }
    out
}
