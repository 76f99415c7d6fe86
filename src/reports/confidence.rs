//! Confidence against override, for the `/ui/` chart: per confidence bin
//! (width 0.1, as in the quality report), how often the radiologist did
//! not simply accept. The unit is one finding confidence of an acted-on
//! inference that passes the page's filters; its action is the
//! inference's first action, and every action but `accept` counts
//! (accept_with_edit, reject, escalate, ignore).

use serde::Serialize;

use super::events::Dataset;
use super::overrides::Query;
use super::quality::{confidence_bin, BINS};

/// One confidence bin.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Bin {
    /// Lower bound of the bin (the last bin includes 1.0).
    pub low: f64,
    /// Acted-on finding confidences in the bin.
    pub acted_on: u64,
    /// Those whose first action was not `accept`.
    pub not_accepted: u64,
    /// not_accepted / acted_on.
    pub rate: Option<f64>,
}

/// The ten bins, lowest first.
pub fn compute(data: &Dataset, q: &Query) -> [Bin; BINS] {
    let mut bins = [Bin::default(); BINS];
    for (i, b) in bins.iter_mut().enumerate() {
        b.low = i as f64 / BINS as f64;
    }
    let f = &q.filters;
    for inf in &data.inferences {
        if !f.inference_passes(inf) {
            continue;
        }
        let Some(first) = inf.first_action() else {
            continue;
        };
        if f.radiologist
            .as_ref()
            .is_some_and(|r| *r != first.radiologist)
        {
            continue;
        }
        let not_accepted = first.action != "accept";
        for (code, text) in &inf.confidences {
            if f.finding.as_ref().is_some_and(|want| want != code) {
                continue;
            }
            let Some(b) = confidence_bin(text).and_then(|i| bins.get_mut(i)) else {
                continue;
            };
            b.acted_on += 1;
            b.not_accepted += u64::from(not_accepted);
        }
    }
    for b in &mut bins {
        b.rate = (b.acted_on > 0).then(|| b.not_accepted as f64 / b.acted_on as f64);
    }
    bins
}
