//! The forensic lists — case lists, one study's history, the patient access
//! report — over real HTTP with an auditor's and a QA user's token, checked
//! against [`super::recount`] over the raw entries. QA sees patient
//! identifiers only as HMAC-SHA-256 pseudonyms (recomputed here with
//! openssl) or not at all, and may not ask for the patient access report.

use base64::Engine;
use serde_json::Value;
use vellum::auth::{token, Grant, Role, RoleSet};
use vellum::config::Settings;
use vellum_testkit::*;

use super::recount::{self, Raw};

const KEY: &str = "forensic-pseudonym-key-0123456789";
const PSEUDONYM_SYSTEM: &str = "https://vellum-audit.org/fhir/pseudonym";

struct Callers {
    auditor: String,
    qa: String,
}

/// A server over `db` with an auditor and a QA token, reads recorded, and
/// (`key`) a pseudonym key configured.
async fn app(db: &TestDb, key: bool) -> (TestApp, Callers) {
    let auditor = token::generate().unwrap();
    let qa = token::generate().unwrap();
    let mut raw = raw_settings_for(&db.url);
    raw.auth.tokens.0 = vec![
        Grant::line_for(&auditor, "auditor-user", RoleSet::of(&[Role::Auditor])),
        Grant::line_for(&qa, "qa-user", RoleSet::of(&[Role::Qa])),
    ];
    raw.auth.record_reads = true;
    if key {
        raw.privacy.pseudonymise_patients = true;
        raw.privacy.pseudonym_key = Some(KEY.into());
    }
    let app = spawn_app_with(Settings::validate(raw).unwrap()).await;
    (app, Callers { auditor, qa })
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn json(app: &TestApp, token: &str, path: &str) -> Value {
    let (s, body) = get(app, token, path).await;
    assert_eq!(s, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// HMAC-SHA-256(KEY, `system|value`) in hex, with openssl.
fn hmac_pseudonym(system_value: &str) -> String {
    let key = openssl::pkey::PKey::hmac(KEY.as_bytes()).unwrap();
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    s.update(system_value.as_bytes()).unwrap();
    hex::encode(s.sign_to_vec().unwrap())
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["inference_id"]
                .as_str()
                .or(c["id"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The inference ids of `raw` passing `keep`, in ledger order.
fn expected(raw: &Raw, keep: impl Fn(&recount::Inf, Option<&recount::Act>) -> bool) -> Vec<String> {
    raw.inferences
        .iter()
        .filter(|i| keep(i, raw.first_action.get(&i.id)))
        .map(|i| i.id.clone())
        .collect()
}

/// Whether an entity of `v` is the patient `system|value`.
fn names_patient(v: &Value, patient: &str) -> bool {
    v["entity"].as_array().into_iter().flatten().any(|e| {
        let id = &e["what"]["identifier"];
        e["type"]["code"] == "1"
            && e["role"]["code"] == "1"
            && format!(
                "{}|{}",
                id["system"].as_str().unwrap_or(""),
                id["value"].as_str().unwrap_or("")
            ) == patient
    })
}

backend_tests! {
    async fn case_lists_agree_with_a_brute_force_recount(backend) {
        let db = TestDb::new(backend).await;
        // Stored with identifiers in clear; the key is configured later.
        vellum::demo::run_configured(&settings_for(&db.url), 600, 7).await.unwrap();
        let (app, who) = app(&db, true).await;
        let raw = recount::load(&db.url).await;

        // (a) a model version, a week, a radiologist: taken from the first
        // acted-on case of the drifting version.
        let seed = raw
            .inferences
            .iter()
            .find(|i| i.model_version == "chest-xr-triage|2.1" && raw.first_action.contains_key(&i.id))
            .unwrap();
        let rad = raw.first_action[&seed.id].radiologist.clone();
        let day = &seed.recorded[..10];
        let from = time::Date::parse(day, time::macros::format_description!("[year]-[month]-[day]")).unwrap();
        let to = (from + time::Duration::days(7)).to_string();
        let path = format!(
            "/reports/cases?model_version=chest-xr-triage|2.1&radiologist={rad}&from={day}&to={to}"
        );
        let list = json(&app, &who.auditor, &path).await;
        let want = expected(&raw, |i, a| {
            i.model_version == "chest-xr-triage|2.1"
                && i.recorded.as_str() >= day
                && i.recorded.as_str() < to.as_str()
                && a.map_or(i.requester.as_str(), |a| a.radiologist.as_str()) == rad
        });
        assert!(!want.is_empty());
        assert_eq!(ids(&list, "cases"), want, "{backend:?} (a)");
        assert_eq!(list["count"], want.len());
        assert_eq!(list["patient_identifiers"], "as-stored");
        let by_id: std::collections::HashMap<&str, &recount::Inf> =
            raw.inferences.iter().map(|i| (i.id.as_str(), i)).collect();
        for c in list["cases"].as_array().unwrap() {
            let id = c["inference_id"].as_str().unwrap();
            let inf = by_id[id];
            assert_eq!(c["patient"], inf.patient.as_str());
            assert!(inf.patient.starts_with("urn:oid:1.2.3.4.5|P"));
            assert_eq!(c["study_uid"], inf.study_uid.as_str());
            assert_eq!(c["link"], format!("/fhir/AuditEvent/{id}"));
            let acts = raw.actions.get(id).cloned().unwrap_or_default();
            let all: Vec<&str> = acts.iter().map(|a| a.action.as_str()).collect();
            assert_eq!(c["all_actions"], serde_json::json!(all));
            let ids: Vec<&str> = acts.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(c["override_ids"], serde_json::json!(ids));
            assert_eq!(c["action"], acts.first().map_or("none", |a| a.action.as_str()));
            assert_eq!(c["time_to_action_ms"].as_i64(), acts.first().map(|a| a.tta));
            assert_eq!(c["rendered"], raw.rendered.contains(id));
        }

        // (b) finding A rejected or edited: the same cases as the override
        // report's `overrides` column for that finding.
        let list = json(&app, &who.auditor, "/reports/cases?finding=RID5352&action=override").await;
        let want = expected(&raw, |i, a| {
            i.findings.iter().any(|f| f == "RID5352")
                && a.is_some_and(|a| a.action == "reject" || a.action == "accept_with_edit")
        });
        assert!(want.len() > 3);
        assert_eq!(ids(&list, "cases"), want, "{backend:?} (b)");
        let report = json(&app, &who.auditor, "/reports/overrides?finding=RID5352").await;
        assert_eq!(report["rows"][0]["overrides"], want.len());
        let (s, _) = get(&app, &who.auditor, "/reports/cases?action=maybe").await;
        assert_eq!(s, 400);

        // QA: the same list, every patient a keyed pseudonym, none in clear.
        let (s, body) = get(&app, &who.qa, "/reports/cases?finding=RID5352&action=override").await;
        assert_eq!(s, 200);
        assert!(!body.contains("urn:oid:1.2.3.4.5|"), "{backend:?}: an identifier in clear");
        let qa: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(qa["patient_identifiers"], "pseudonymised");
        assert_eq!(ids(&qa, "cases"), want);
        for c in qa["cases"].as_array().unwrap() {
            let inf = by_id[c["inference_id"].as_str().unwrap()];
            assert_eq!(c["patient"], format!("{PSEUDONYM_SYSTEM}|{}", hmac_pseudonym(&inf.patient)));
        }
        // And as CSV, with the documented columns.
        let (s, csv) = get(&app, &who.qa, "/reports/cases?finding=RID5352&action=override&format=csv").await;
        assert_eq!(s, 200);
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines[0],
            "inference_seq,inference_id,recorded,model,version,site,study_uid,patient,requested_by,\
             radiologist,findings,action,time_to_action_ms,all_actions,override_ids,rendered,\
             pixel_sha256,digest_check,link,patient_identifiers"
        );
        assert_eq!(lines.len() - 1, want.len());
        for (line, c) in lines[1..].iter().zip(qa["cases"].as_array().unwrap()) {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), 20, "{line}");
            assert_eq!(cells[1], c["inference_id"].as_str().unwrap());
            assert_eq!(cells[7], c["patient"].as_str().unwrap());
            assert_eq!(cells[11], c["action"].as_str().unwrap());
        }
        // The QA user's access is recorded naming each patient shown (in
        // clear, in the log): the patient access report finds it.
        let first = by_id[want[0].as_str()];
        let pa = json(&app, &who.auditor, &format!("/reports/patient-access?patient={}", first.patient)).await;
        let qa_reads: Vec<&Value> = pa["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["user"] == "qa-user")
            .collect();
        assert_eq!(qa_reads.len(), 2, "{backend:?}: JSON and CSV list: {pa}");
        assert!(qa_reads.iter().all(|r| r["operation"] == "report" && r["category"] == "access"));
    }

    async fn study_history_and_patient_access_agree_with_a_recount(backend) {
        let db = TestDb::new(backend).await;
        // Seed 1: the demo's study UIDs start with the one used below.
        vellum::demo::run_configured(&settings_for(&db.url), 200, 1).await.unwrap();
        let (app, who) = app(&db, false).await;
        let (_, inference_id) = app.ai_inference_chain("forensic").await;
        let (s, _, _) = app.ai_post("renderings", &ai::rendering_of("ren-forensic", &inference_id)).await;
        assert_eq!(s, 201);
        let (s, _, _) = app.ai_post("overrides", &ai::override_of("ovr-forensic", &inference_id)).await;
        assert_eq!(s, 201);
        let study = "1.2.826.0.1.3680043.8.498.1";
        let patient = "urn:oid:1.2.3.4.5|8675309";

        // (c) the study's history, recounted: events naming the study, and
        // events referring to those.
        let h = json(&app, &who.auditor, &format!("/reports/study-history?study={study}")).await;
        let raw = recount::load(&db.url).await;
        let mut members: Vec<String> = Vec::new();
        let mut want: Vec<i64> = Vec::new();
        for (seq, v) in &raw.entries {
            if v["meta"]["profile"][0].as_str().unwrap_or("").ends_with("/audit-log-access") {
                continue;
            }
            let names = v["entity"].as_array().into_iter().flatten().any(|e| {
                e["what"]["identifier"]["value"] == format!("urn:oid:{study}")
            });
            let refers = v["entity"].as_array().into_iter().flatten().any(|e| {
                e["what"]["reference"].as_str().is_some_and(|r| {
                    members.iter().any(|m| r == format!("AuditEvent/{m}"))
                })
            });
            if names || refers {
                members.push(v["id"].as_str().unwrap().to_string());
                want.push(*seq);
            }
        }
        let got: Vec<i64> = h["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(got, want, "{backend:?}");
        let kinds: Vec<&str> = h["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["radiology-ai-inference", "radiology-ai-rendering", "radiology-ai-override"]);
        let inf = &h["events"][0];
        let digest = hex::decode("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08").unwrap();
        assert_eq!(inf["pixel_sha256"], base64::engine::general_purpose::STANDARD.encode(digest));
        assert_eq!(inf["digest_check"], "unverified");
        assert_eq!(inf["patient"], patient);
        assert_eq!(h["events"][2]["action"], "accept_with_edit");
        assert_eq!(h["events"][2]["refers_to"], inference_id.as_str());
        // Every link opens the raw event.
        for e in h["events"].as_array().unwrap() {
            let raw_event = json(&app, &who.auditor, e["link"].as_str().unwrap()).await;
            assert_eq!(raw_event["id"], e["id"]);
        }
        let (s, csv) = get(&app, &who.auditor, &format!("/reports/study-history?study=urn:oid:{study}&format=csv")).await;
        assert_eq!(s, 200);
        assert!(csv.starts_with("study_uid,seq,id,recorded,kind,actor,model,refers_to,findings,action,\
            time_to_action_ms,destination,format,viewed,pixel_sha256,digest_check,patient,link,patient_identifiers\r\n"));
        // The reads of the links above are accesses, not study history.
        assert_eq!(csv.split("\r\n").filter(|l| !l.is_empty()).count(), 4);

        // QA without a pseudonym key: the identifiers are left out.
        let (s, body) = get(&app, &who.qa, &format!("/reports/study-history?study={study}")).await;
        assert_eq!(s, 200);
        assert!(!body.contains("8675309"), "{backend:?}: {body}");
        assert!(body.contains("\"patient_identifiers\":\"removed\""));
        let (s, body) = get(&app, &who.qa, "/reports/cases").await;
        assert_eq!(s, 200);
        assert!(!body.contains("urn:oid:1.2.3.4.5|"), "{backend:?}");
        // ... and may not ask who accessed a patient.
        let (s, _) = get(&app, &who.qa, &format!("/reports/patient-access?patient={patient}")).await;
        assert_eq!(s, 403);

        // (d) the patient access report: a read of the inference, then
        // every event naming the patient, recounted.
        let (s, _) = get(&app, &who.auditor, &format!("/fhir/AuditEvent/{inference_id}")).await;
        assert_eq!(s, 200);
        let raw = recount::load(&db.url).await;
        let pa = json(&app, &who.auditor, &format!("/reports/patient-access?patient={patient}")).await;
        let want: Vec<(i64, bool)> = raw
            .entries
            .iter()
            .filter(|(_, v)| names_patient(v, patient))
            .map(|(seq, v)| (*seq, v["meta"]["profile"][0].as_str().unwrap_or("").ends_with("/audit-log-access")))
            .collect();
        let got: Vec<(i64, bool)> = pa["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["seq"].as_i64().unwrap(), r["category"] == "access"))
            .collect();
        assert_eq!(got, want, "{backend:?}");
        let accesses = want.iter().filter(|w| w.1).count();
        // The auditor's two study histories and three reads of its links,
        // QA's study history and case list, and the last read.
        assert_eq!(accesses, 8, "{backend:?}: {pa}");
        assert_eq!(pa["accesses"], accesses);
        assert_eq!(pa["events"], 3);
        let read = pa["rows"].as_array().unwrap().last().unwrap();
        assert_eq!(read["operation"], "read");
        assert_eq!(read["user"], "auditor-user");
        assert_eq!(read["roles"], serde_json::json!(["auditor"]));
        assert_eq!(read["client"], "127.0.0.1");
        assert_eq!(read["events_read"], serde_json::json!([format!("AuditEvent/{inference_id}")]));
        assert_eq!(read["request"], "", "a read names the event, not a query");
        let report = pa["rows"].as_array().unwrap().iter().find(|r| r["operation"] == "report").unwrap();
        assert_eq!(report["request"], format!("GET /reports/study-history?study={study}"));
        // A period: the demo's 2026 clinical events are before it, the
        // accesses (recorded now) inside it.
        let pa = json(&app, &who.auditor, &format!("/reports/patient-access?patient={patient}&from=2026-06-01")).await;
        assert_eq!((pa["events"].as_u64(), pa["accesses"].as_u64()), (Some(0), Some(accesses as u64 + 1)));
        let (s, csv) = get(&app, &who.auditor, &format!("/reports/patient-access?patient={patient}&format=csv")).await;
        assert_eq!(s, 200);
        assert!(csv.starts_with("patient,seq,id,recorded,category,kind,operation,user,roles,client,outcome,request,link,events_read\r\n"));
        let (s, _) = get(&app, &who.auditor, "/reports/patient-access").await;
        assert_eq!(s, 400, "patient is required");
    }
}
