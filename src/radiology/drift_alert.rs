//! `radiology-ai-drift-alert`: a model version's override rate at a site
//! departed from its baseline in one window (docs/reports.md, "Drift").

use vellum_json::write::object;

use super::build::model_agent;
use super::*;
use crate::vocabulary::DRIFT_ALERT_PROFILE;

/// What one alert records.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftAlert<'a> {
    pub model: &'a str,
    pub version: &'a str,
    /// A `source.site`, or `*` for all sites.
    pub site: &'a str,
    pub window_start: &'a str,
    pub window_end: &'a str,
    pub baseline_cases: u64,
    pub baseline_overrides: u64,
    pub window_cases: u64,
    pub window_overrides: u64,
    pub z: f64,
    pub z_threshold: f64,
    pub test: &'a str,
    /// When the check ran.
    pub recorded: &'a str,
}

/// The alert as a profiled AuditEvent (outcome 4: the model's behaviour
/// departed from its baseline).
pub fn drift_alert(a: &DriftAlert<'_>) -> String {
    let mut out = String::with_capacity(2048);
    object(&mut out, |o| {
        o.str("resourceType", "AuditEvent");
        o.obj("meta", |m| {
            m.arr("profile", |p| {
                p.str(DRIFT_ALERT_PROFILE);
            });
        });
        o.coding("type", DCM, "110100", "Application Activity")
            .arr("subtype", |s| {
                s.coding(AI_EVENT_SYSTEM, "drift-alert", "AI drift alert");
            })
            .str("action", "E")
            .str("recorded", a.recorded)
            .str("outcome", "4")
            .str(
                "outcomeDesc",
                "the model version's override rate departed from its baseline",
            );
        o.arr("agent", |ag| {
            ag.obj(|x| {
                x.concept("type", DCM, "110150", "Application")
                    .obj("who", |w| {
                        w.str("display", "vellum drift check");
                    })
                    .bool("requestor", true);
            });
            ag.obj(|m| model_agent(m, a.model, a.version));
        });
        o.obj("source", |s| {
            if a.site != "*" {
                s.str("site", a.site);
            }
            s.obj("observer", |ob| {
                ob.str("display", "vellum");
            })
            .arr("type", |t| {
                t.coding(SOURCE_TYPE_SYSTEM, "4", "Application Server");
            });
        });
        o.arr("entity", |en| {
            en.obj(|e| {
                e.obj("what", |w| {
                    w.obj("identifier", |i| {
                        i.str("system", MODEL_VERSION_SYSTEM)
                            .str("value", &format!("{}|{}", a.model, a.version));
                    })
                    .str("display", &format!("{} {}", a.model, a.version));
                })
                .coding("type", ENTITY_TYPE, "2", "System Object")
                .coding("role", OBJECT_ROLE, "4", "Domain Resource")
                .arr("detail", |d| {
                    let mut put = |k: &str, v: &str| {
                        d.obj(|x| {
                            x.str("type", k).str("valueString", v);
                        });
                    };
                    put("site", a.site);
                    put("window-start", a.window_start);
                    put("window-end", a.window_end);
                    put("baseline-cases", &a.baseline_cases.to_string());
                    put("baseline-overrides", &a.baseline_overrides.to_string());
                    put("window-cases", &a.window_cases.to_string());
                    put("window-overrides", &a.window_overrides.to_string());
                    put("z", &format!("{:.6}", a.z));
                    put("z-threshold", &a.z_threshold.to_string());
                    put("test", a.test);
                });
            });
        });
    });
    out
}
