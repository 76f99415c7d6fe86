//! `GET /reports/model-versions?model=…`: each version of one model, in
//! deployment order, with its override and reject rates (overall and per
//! finding) and the change against the previous version, tested with a
//! pooled two-proportion z-test (two-sided, α = 0.05).

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::events::Dataset;
use super::overrides::Filters;
use super::stats::{two_proportion_z, wilson};

/// Counts of one version (or one finding of it).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Rates {
    pub cases: u64,
    pub acted_on: u64,
    pub overrides: u64,
    pub rejects: u64,
    pub override_rate: Option<f64>,
    pub override_rate_low: Option<f64>,
    pub override_rate_high: Option<f64>,
    pub reject_rate: Option<f64>,
    /// Against the previous version (absent for the first).
    pub change: Option<Change>,
}

/// A version's override rate against its predecessor's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub previous_version: String,
    /// This version's rate minus the previous one's.
    pub override_rate_delta: f64,
    pub z: f64,
    pub p_value: f64,
    /// p < 0.05.
    pub significant: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Version {
    pub version: String,
    /// The deployment event's `recorded`, when the version was registered.
    pub deployed_at: Option<String>,
    #[serde(flatten)]
    pub overall: Rates,
    pub findings: BTreeMap<String, Rates>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub model: String,
    pub test: &'static str,
    pub versions: Vec<Version>,
}

impl Rates {
    fn count(&mut self, action: Option<&str>) {
        self.cases += 1;
        if let Some(a) = action {
            self.acted_on += 1;
            if a == "accept_with_edit" || a == "reject" {
                self.overrides += 1;
            }
            if a == "reject" {
                self.rejects += 1;
            }
        }
    }

    fn finish(&mut self) {
        if self.acted_on > 0 {
            let n = self.acted_on as f64;
            self.override_rate = Some(self.overrides as f64 / n);
            self.reject_rate = Some(self.rejects as f64 / n);
            if let Some((lo, hi)) = wilson(self.overrides, self.acted_on) {
                self.override_rate_low = Some(lo);
                self.override_rate_high = Some(hi);
            }
        }
    }

    fn compare(&mut self, prev_version: &str, prev: &Rates) {
        if let (Some(now), Some(before)) = (self.override_rate, prev.override_rate) {
            if let Some((z, p)) =
                two_proportion_z(prev.overrides, prev.acted_on, self.overrides, self.acted_on)
            {
                self.change = Some(Change {
                    previous_version: prev_version.to_string(),
                    override_rate_delta: now - before,
                    z,
                    p_value: p,
                    significant: p < 0.05,
                });
            }
        }
    }
}

/// Compares the versions of `model` (other filters narrow the cases).
pub fn compute(data: &Dataset, model: &str, filters: &Filters) -> Comparison {
    let mut versions: BTreeMap<String, (Option<OffsetDateTime>, OffsetDateTime, Version)> =
        BTreeMap::new();
    for d in data.deployments.iter().filter(|d| d.model == model) {
        versions.entry(d.version.clone()).or_insert_with(|| {
            (
                Some(d.deployed_at),
                d.deployed_at,
                new_version(&d.version, Some(d.deployed_at)),
            )
        });
    }
    for inf in &data.inferences {
        if inf.model != model || !filters.inference_passes(inf) {
            continue;
        }
        let first = inf.first_action();
        if let Some(r) = &filters.radiologist {
            if first.map(|o| &o.radiologist) != Some(r) {
                continue;
            }
        }
        let action = first.map(|o| o.action.as_str());
        let entry = versions
            .entry(inf.version.clone())
            .or_insert_with(|| (None, inf.recorded, new_version(&inf.version, None)));
        if entry.0.is_none() && inf.recorded < entry.1 {
            entry.1 = inf.recorded;
        }
        let v = &mut entry.2;
        if filters.finding.is_none() {
            v.overall.count(action);
        }
        for f in &inf.findings {
            if filters.finding.as_ref().is_some_and(|want| want != f) {
                continue;
            }
            if filters.finding.is_some() {
                v.overall.count(action);
            }
            v.findings.entry(f.clone()).or_default().count(action);
        }
    }
    // Deployment order; versions never deployed by their first case.
    let mut ordered: Vec<(OffsetDateTime, Version)> =
        versions.into_values().map(|(_, t, v)| (t, v)).collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.version.cmp(&b.1.version)));
    let mut out: Vec<Version> = Vec::with_capacity(ordered.len());
    for (_, mut v) in ordered {
        v.overall.finish();
        for r in v.findings.values_mut() {
            r.finish();
        }
        if let Some(prev) = out.last() {
            v.overall.compare(&prev.version, &prev.overall);
            for (code, r) in v.findings.iter_mut() {
                if let Some(p) = prev.findings.get(code) {
                    r.compare(&prev.version, p);
                }
            }
        }
        out.push(v);
    }
    Comparison {
        model: model.to_string(),
        test: "two-proportion z-test (pooled), two-sided, significant when p < 0.05",
        versions: out,
    }
}

fn new_version(version: &str, deployed: Option<OffsetDateTime>) -> Version {
    Version {
        version: version.to_string(),
        deployed_at: deployed.and_then(|t| t.format(&Rfc3339).ok()),
        overall: Rates::default(),
        findings: BTreeMap::new(),
    }
}

/// The CSV columns of the comparison: one row per version (finding empty)
/// and one per version and finding.
pub const CSV_COLUMNS: [&str; 16] = [
    "model",
    "version",
    "deployed_at",
    "finding",
    "cases",
    "acted_on",
    "overrides",
    "rejects",
    "override_rate",
    "override_rate_low",
    "override_rate_high",
    "reject_rate",
    "previous_version",
    "override_rate_delta",
    "z",
    "p_value",
];

pub fn to_csv(c: &Comparison) -> String {
    let mut out = String::new();
    super::csv::line(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    for v in &c.versions {
        let rows = std::iter::once(("", &v.overall))
            .chain(v.findings.iter().map(|(k, r)| (k.as_str(), r)));
        for (finding, r) in rows {
            let ch = r.change.as_ref();
            super::csv::line(
                &mut out,
                [
                    c.model.clone(),
                    v.version.clone(),
                    v.deployed_at.clone().unwrap_or_default(),
                    finding.to_string(),
                    r.cases.to_string(),
                    r.acted_on.to_string(),
                    r.overrides.to_string(),
                    r.rejects.to_string(),
                    f(r.override_rate),
                    f(r.override_rate_low),
                    f(r.override_rate_high),
                    f(r.reject_rate),
                    ch.map(|c| c.previous_version.clone()).unwrap_or_default(),
                    f(ch.map(|c| c.override_rate_delta)),
                    f(ch.map(|c| c.z)),
                    f(ch.map(|c| c.p_value)),
                ],
            );
        }
    }
    out
}
