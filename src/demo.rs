//! `vellum demo --events N`: fills the configured store with realistic,
//! reproducible radiology AI traffic through the normal intake (the same
//! builders and validation as `/ai/v1`). The same seed and N give the same
//! events; a second run with them stores nothing new (every event carries
//! an idempotency key derived from the seed).
//!
//! Traffic: two models, five versions; `chest-xr-triage 2.1` drifts (its
//! override rate climbs week by week); four sites, eight radiologists (two
//! of them accept fast), five findings; most inferences are rendered, some
//! never acted on.

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::config::PrivacySettings;
use crate::intake::{Intake, IntakeError, Stored, Submission};
use crate::radiology::build::{self, Registration};
use crate::radiology::input;
use crate::radiology::lookup;
use crate::radiology::types::Instant;
use crate::radiology::{event_key, model_key};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("a demo input did not parse: {0}")]
    Input(#[from] serde_json::Error),
    #[error("storing a demo event failed: {0}")]
    Intake(#[from] IntakeError),
    #[error("a stored demo event could not be read back")]
    ReadBack,
}

/// What a run stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub created: u64,
    pub inferences: u64,
}

/// splitmix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// (model, version, deployed on day, base override rate, drift per week).
const VERSIONS: [(&str, &str, i64, f64, f64); 5] = [
    ("chest-xr-triage", "2.0", 0, 0.12, 0.0),
    ("chest-xr-triage", "2.1", 28, 0.10, 0.025),
    ("chest-xr-triage", "2.2", 70, 0.08, 0.0),
    ("neuro-ct-bleed", "1.4", 0, 0.18, 0.0),
    ("neuro-ct-bleed", "1.5", 42, 0.14, 0.0),
];
const SITES: [&str; 4] = [
    "north-campus",
    "south-campus",
    "city-clinic",
    "teleradiology",
];
/// (id, fast accepter).
const RADIOLOGISTS: [(&str, bool); 8] = [
    ("rad-ada", false),
    ("rad-ben", true),
    ("rad-cho", false),
    ("rad-dev", false),
    ("rad-eli", true),
    ("rad-fay", false),
    ("rad-gus", false),
    ("rad-hal", false),
];
const CHEST_FINDINGS: [(&str, &str); 3] = [
    ("RID5352", "pneumothorax"),
    ("RID34539", "pleural effusion"),
    ("RID3875", "pulmonary nodule"),
];
const NEURO_FINDINGS: [(&str, &str); 2] = [
    ("RID4700", "intracranial hemorrhage"),
    ("RID4716", "ischemic stroke"),
];
const REASONS: [&str; 4] = [
    "false-positive",
    "wrong-location",
    "wrong-measurement",
    "clinical-context",
];
/// The first demo day (a Monday); cases spread over 16 weeks from it.
const START: OffsetDateTime = time::macros::datetime!(2026-01-05 07:00 UTC);
const DAYS: i64 = 112;

fn stamp(t: OffsetDateTime) -> String {
    vellum_ledger::stamp(t)
}

/// Stores at least `events` events (whole cases: inference, then perhaps a
/// rendering and an override), `concurrency` cases at a time.
pub async fn run(
    intake: &Intake,
    privacy: &PrivacySettings,
    events: u64,
    seed: u64,
    concurrency: usize,
) -> Result<Summary, DemoError> {
    let start = START;
    let mut summary = Summary::default();
    let mut regs: Vec<Registration> = Vec::new();
    for (name, version, day, _, _) in VERSIONS {
        let x: input::Model = serde_json::from_value(json!({
            "name": name, "version": version, "provider": "Demo AI GmbH",
            "training_date": "2025-10-01",
            "validation": {"reference": format!("https://ai.example/validation/{name}/{version}"),
                           "results": [{"metric": "AUC", "value": "0.940"}]},
            "deployed_at": stamp(start + Duration::days(day) - Duration::hours(2)),
            "user": {"id": "ai-admin", "role": "ai-admin"},
            "source": {"system": "ai-orchestrator"}
        }))?;
        let (body, created) = submit(
            intake,
            build::deployment(&x, Instant::now()),
            model_key(name, version),
        )
        .await?;
        summary.events += 1;
        summary.created += u64::from(created);
        let reg = lookup::registration_of(&id_of(&body)?, &body).ok_or(DemoError::ReadBack)?;
        regs.push(reg);
    }
    let mut rng = Rng(seed);
    let mut case = 0u64;
    while summary.events < events {
        let mut batch = Vec::new();
        while batch.len() < concurrency.max(1) && summary.events + (batch.len() as u64) * 2 < events
        {
            batch.push(plan(&mut rng, seed, case, start, &regs));
            case += 1;
        }
        if batch.is_empty() {
            batch.push(plan(&mut rng, seed, case, start, &regs));
            case += 1;
        }
        let results = futures_util::future::join_all(
            batch.into_iter().map(|c| store_case(intake, privacy, c)),
        )
        .await;
        for r in results {
            let (n, created) = r?;
            summary.events += n;
            summary.created += created;
            summary.inferences += 1;
        }
    }
    Ok(summary)
}

fn id_of(body: &str) -> Result<String, DemoError> {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .ok_or(DemoError::ReadBack)
}

/// Submits one built event under `key`; the stored body and whether it is new.
async fn submit(intake: &Intake, event: String, key: String) -> Result<(String, bool), DemoError> {
    let s = Submission::fhir(event).with_key(key).without_enrichment();
    match intake.submit(s).await? {
        Stored::Committed(c) => Ok((c.body, c.created)),
        Stored::Existing(e) => Ok((e.body, false)),
    }
}

/// One case, decided before anything is stored.
struct Case {
    inference: Value,
    registration: Registration,
    rendering: Option<Value>,
    action: Option<Value>,
    tag: String,
}

fn plan(rng: &mut Rng, seed: u64, n: u64, start: OffsetDateTime, regs: &[Registration]) -> Case {
    let day = rng.below(DAYS as usize) as i64;
    let t = start + Duration::days(day) + Duration::seconds(rng.below(11 * 3600) as i64);
    // The newest version of a model deployed by then.
    let neuro = rng.chance(0.35);
    let model = if neuro {
        "neuro-ct-bleed"
    } else {
        "chest-xr-triage"
    };
    let (vi, (_, version, deployed, base, drift)) = VERSIONS
        .iter()
        .enumerate()
        .rev()
        .find(|(_, v)| v.0 == model && v.2 <= day)
        .map(|(i, v)| (i, *v))
        .unwrap_or((0, VERSIONS[0]));
    let weeks = (day - deployed) as f64 / 7.0;
    let p_override = (base + drift * weeks).min(0.6);
    let site = SITES[rng.below(SITES.len())];
    let (rad, fast) = RADIOLOGISTS[rng.below(RADIOLOGISTS.len())];
    let pool: &[(&str, &str)] = if neuro {
        &NEURO_FINDINGS
    } else {
        &CHEST_FINDINGS
    };
    let mut findings = Vec::new();
    let first = rng.below(pool.len());
    for (i, (code, display)) in pool.iter().enumerate() {
        if i == first || rng.chance(0.2) {
            let conf = 0.5 + rng.unit() * 0.49;
            findings.push(
                json!({"code": code, "system": "http://radlex.org", "display": display,
                                 "confidence": format!("{conf:.3}")}),
            );
        }
    }
    let tag = format!("demo-{seed}-{n}");
    let latency = 300 + rng.below(2500) as u64;
    let inference = json!({
        "event_id": format!("{tag}-inf"),
        "time": stamp(t),
        "started": stamp(t - Duration::milliseconds(latency as i64)),
        "user": {"id": rad, "role": "radiologist"},
        "source": {"system": "ai-orchestrator", "site": site},
        "patient": {"id": format!("P{:06}", rng.below(40_000)), "system": "urn:oid:1.2.3.4.5"},
        "model": {"name": model, "version": version},
        "study": {"uid": format!("1.2.826.0.1.3680043.8.498.{seed}.{n}"), "instances": 1 + rng.below(300)},
        "findings": findings,
        "latency_ms": latency,
        "cpu_fallback": rng.chance(0.03)
    });
    let rendered = rng.chance(0.93);
    let rendering = rendered.then(|| {
        json!({
            "event_id": format!("{tag}-ren"),
            "time": stamp(t + Duration::seconds(5 + rng.below(600) as i64)),
            "user": {"id": rad, "role": "radiologist"},
            "source": {"system": "pacs-viewer", "site": site},
            "destination": "pacs-viewer", "format": "GSPS", "viewed": rng.chance(0.95)
        })
    });
    let acted = rng.chance(if rendered { 0.9 } else { 0.3 });
    let action = acted.then(|| {
        let r = rng.unit();
        let kind = if r < p_override * 0.55 {
            "reject"
        } else if r < p_override {
            "accept_with_edit"
        } else if r < p_override + 0.04 {
            "escalate"
        } else if r < p_override + 0.07 {
            "ignore"
        } else {
            "accept"
        };
        // Fast accepters take 1–4 s; others 20 s to 20 min.
        let ms = if kind == "accept" && fast {
            1_000 + rng.below(3_000) as i64
        } else {
            20_000 + rng.below(1_200_000) as i64
        };
        let mut o = json!({
            "event_id": format!("{tag}-ovr"),
            "time": stamp(t + Duration::milliseconds(ms)),
            "user": {"id": rad, "role": "radiologist"},
            "source": {"system": "pacs-viewer", "site": site},
            "action": kind,
            "time_to_action_ms": ms
        });
        if kind == "reject" || kind == "accept_with_edit" {
            o["reason_code"] = json!(REASONS[rng.below(REASONS.len())]);
        }
        o
    });
    Case {
        inference,
        registration: regs.get(vi).cloned().unwrap_or_default(),
        rendering,
        action,
        tag,
    }
}

/// Stores one case; (events, newly created).
async fn store_case(
    intake: &Intake,
    privacy: &PrivacySettings,
    c: Case,
) -> Result<(u64, u64), DemoError> {
    let x: input::Inference = serde_json::from_value(c.inference)?;
    let event = build::inference(&x, &c.registration, None, privacy, Instant::now());
    let (body, created) = submit(
        intake,
        event,
        event_key("inference", &format!("{}-inf", c.tag)),
    )
    .await?;
    let info = lookup::inference_of(&body).ok_or(DemoError::ReadBack)?;
    let (mut n, mut new) = (1, u64::from(created));
    if let Some(mut r) = c.rendering {
        r["inference_id"] = json!(info.id);
        let x: input::Rendering = serde_json::from_value(r)?;
        let event = build::rendering(&x, &info, Instant::now());
        let (_, created) = submit(
            intake,
            event,
            event_key("rendering", &format!("{}-ren", c.tag)),
        )
        .await?;
        n += 1;
        new += u64::from(created);
    }
    if let Some(mut o) = c.action {
        o["inference_id"] = json!(info.id);
        let x: input::Override = serde_json::from_value(o)?;
        let event = build::override_event(&x, &info, privacy, Instant::now());
        let (_, created) = submit(
            intake,
            event,
            event_key("override", &format!("{}-ovr", c.tag)),
        )
        .await?;
        n += 1;
        new += u64::from(created);
    }
    Ok((n, new))
}

/// Why `vellum demo` could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoRunError {
    #[error("cannot open the store: {0}")]
    Store(#[from] vellum_ledger::store::StoreError),
    #[error(transparent)]
    Demo(#[from] DemoError),
}

/// `vellum demo`: opens (and migrates) the configured store, then [`run`].
pub async fn run_configured(
    settings: &crate::config::Settings,
    events: u64,
    seed: u64,
) -> Result<Summary, DemoRunError> {
    use vellum_ledger::store::{AnyStore, Store};
    let store = AnyStore::connect(&settings.database_url, settings.database_role.as_deref())
        .await?
        .with_indexer(crate::fhir::search_index::derive_rows)
        .with_summarizer(crate::radiology::summary::of_tape);
    store.migrate().await?;
    store
        .grant_writer_role(&settings.database_writer_role)
        .await?;
    let ledger = vellum_ledger::Ledger::start(store, settings.writer);
    let intake = Intake::new(ledger, None, settings.limits.json);
    // Enough cases in flight to fill the writer's group commits.
    Ok(run(&intake, &settings.privacy, events, seed, 64).await?)
}
