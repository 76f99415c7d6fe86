//! Who may call what, over real HTTP on both backends: every role against
//! every endpoint and method (the expected table is written out here, not
//! derived from the server's policy), 401/403 answers, the recording of
//! reads as `audit-log-access` events (IHE BALP) and of refusals as security
//! alerts, and clinicians limited to their own events inside the query.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use vellum::auth::{token, Grant, Role, RoleSet};
use vellum_testkit::validator::validate_independently;
use vellum_testkit::{
    backend_tests, raw_settings_for, sample_event, spawn_app_with, tool_available, TestApp, TestDb,
};

/// One token per role, plus a clinician known as `rad-3`.
struct Tokens {
    by_role: Vec<(Role, String)>,
    clinician_rad3: String,
}

fn tokens() -> (Tokens, Vec<String>) {
    let mut lines = Vec::new();
    let mut by_role = Vec::new();
    for role in Role::ALL {
        let t = token::generate().unwrap();
        lines.push(Grant::line_for(
            &t,
            &format!("{role}-user"),
            RoleSet::of(&[role]),
        ));
        by_role.push((role, t));
    }
    let rad3 = token::generate().unwrap();
    lines.push(Grant::line_for(
        &rad3,
        "rad-3",
        RoleSet::of(&[Role::Clinician]),
    ));
    (
        Tokens {
            by_role,
            clinician_rad3: rad3,
        },
        lines,
    )
}

async fn app(db: &TestDb, lines: Vec<String>) -> TestApp {
    let mut raw = raw_settings_for(&db.url);
    raw.auth.tokens.0 = lines;
    raw.auth.record_reads = true;
    let app = spawn_app_with(vellum::config::Settings::validate(raw).unwrap()).await;
    // /readyz answers 200 once the start-up verification of the ledger held.
    for _ in 0..600 {
        let r = reqwest::get(format!("{}/readyz", app.base)).await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app
}

async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut rb = client.request(method.clone(), format!("{}{path}", app.base));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/fhir+json")
            .body(b.to_string());
    }
    rb.send().await.expect("answer")
}

use Role::{Admin as AD, Auditor as AU, Clinician as CL, Qa as QA, Source as SO};

/// (method, path, roles allowed). `None` in the roles = public.
fn matrix(id: &str) -> Vec<(Method, String, Option<Vec<Role>>)> {
    let all = vec![SO, AU, QA, CL, AD];
    let m =
        |method: Method, path: &str, roles: Option<Vec<Role>>| (method, path.to_string(), roles);
    vec![
        m(Method::GET, "/healthz", None),
        m(Method::GET, "/readyz", None),
        m(Method::GET, "/metrics", Some(vec![AD])),
        m(Method::GET, "/fhir/metadata", Some(all.clone())),
        m(Method::POST, "/fhir/AuditEvent", Some(vec![SO])),
        m(Method::GET, "/fhir/AuditEvent?action=E", Some(vec![AU, CL])),
        m(Method::POST, "/fhir/AuditEvent/_search", Some(vec![AU, CL])),
        m(
            Method::GET,
            &format!("/fhir/AuditEvent/{id}"),
            Some(vec![AU, CL]),
        ),
        m(
            Method::GET,
            &format!("/fhir/AuditEvent/{id}/_history/1"),
            Some(vec![AU, CL]),
        ),
        m(
            Method::PUT,
            &format!("/fhir/AuditEvent/{id}"),
            Some(all.clone()),
        ),
        m(
            Method::DELETE,
            &format!("/fhir/AuditEvent/{id}"),
            Some(all.clone()),
        ),
        m(
            Method::PATCH,
            &format!("/fhir/AuditEvent/{id}"),
            Some(all.clone()),
        ),
        m(Method::POST, "/fhir", Some(vec![SO, AU])),
        m(Method::GET, "/fhir/$export", Some(vec![AU])),
        m(Method::GET, "/fhir/AuditEvent/$export", Some(vec![AU])),
        m(Method::GET, "/fhir/$export-status/x", Some(vec![AU])),
        m(Method::DELETE, "/fhir/$export-status/x", Some(vec![AU])),
        m(
            Method::GET,
            "/fhir/$export-file/x/AuditEvent.ndjson",
            Some(vec![AU]),
        ),
        m(Method::GET, "/ai/v1/openapi.json", Some(all.clone())),
        m(Method::GET, "/ai/v1/models", Some(vec![SO, AU, QA])),
        m(
            Method::GET,
            "/ai/v1/models/x/versions",
            Some(vec![SO, AU, QA]),
        ),
        m(Method::POST, "/ai/v1/models", Some(vec![SO])),
        m(Method::POST, "/ai/v1/inferences", Some(vec![SO])),
        m(Method::POST, "/ai/v1/overrides", Some(vec![SO])),
        m(Method::POST, "/ai/v1/renderings", Some(vec![SO])),
        m(Method::POST, "/ai/v1/guard-events", Some(vec![SO])),
        m(Method::POST, "/dicom/digest", Some(vec![SO])),
        m(Method::GET, "/reports/overrides", Some(vec![AU, QA])),
        m(Method::GET, "/reports/model-versions", Some(vec![AU, QA])),
        m(Method::GET, "/reports/cases", Some(vec![AU, QA])),
        m(Method::GET, "/reports/quality", Some(vec![AU, QA])),
        m(Method::GET, "/reports/drift", Some(vec![AU, QA])),
        m(Method::GET, "/reports/detections", Some(vec![AU, AD])),
        m(
            Method::GET,
            "/reports/study-history?study=1.2.3",
            Some(vec![AU, QA]),
        ),
        m(
            Method::GET,
            "/reports/patient-access?patient=Patient/p1",
            Some(vec![AU]),
        ),
        m(Method::GET, "/ui/", Some(vec![AU, QA])),
        m(Method::GET, &format!("/atna/messages/{id}"), Some(vec![AU])),
        m(Method::GET, "/admin/verify", Some(vec![AU, AD])),
        m(Method::POST, "/admin/checkpoints", Some(vec![AD])),
        m(Method::GET, "/admin/checkpoints/latest", Some(vec![AU, AD])),
        m(
            Method::GET,
            "/admin/checkpoints/1/timestamps",
            Some(vec![AU, AD]),
        ),
        m(
            Method::GET,
            "/admin/proof/inclusion?seq=1&size=1",
            Some(vec![AU]),
        ),
        m(
            Method::GET,
            "/admin/proof/consistency?from=1&to=1",
            Some(vec![AU]),
        ),
        m(Method::POST, "/witness/add-checkpoint", Some(vec![SO])),
        m(Method::GET, "/no/such/path", Some(all)),
    ]
}

async fn assert_refusal(r: reqwest::Response, status: StatusCode, code: &str, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    if status == StatusCode::UNAUTHORIZED {
        let challenge = r
            .headers()
            .get("WWW-Authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            challenge.starts_with("Bearer realm=\"vellum\""),
            "{what}: {challenge}"
        );
    }
    let oo: Value = r.json().await.expect("OperationOutcome");
    assert_eq!(oo["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(oo["issue"][0]["code"], code, "{what}: {oo}");
}

backend_tests! {
    async fn every_role_against_every_endpoint(backend) {
        let db = TestDb::new(backend).await;
        let (tokens, lines) = tokens();
        let app = app(&db, lines).await;
        let source = &tokens.by_role[0].1;
        let created = call(&app, Some(source), &Method::POST, "/fhir/AuditEvent", Some(&sample_event(1))).await;
        assert_eq!(created.status(), 201);
        let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        for (method, path, allowed) in matrix(&id) {
            let body = (method == Method::POST || method == Method::PUT || method == Method::PATCH)
                .then(|| sample_event(2));
            let anonymous = call(&app, None, &method, &path, body.as_ref()).await;
            match &allowed {
                None => {
                    assert!(anonymous.status().is_success(), "{backend:?} anonymous {method} {path}: {}", anonymous.status());
                    continue;
                }
                Some(_) => {
                    assert_refusal(anonymous, StatusCode::UNAUTHORIZED, "login", &format!("{backend:?} anonymous {method} {path}")).await;
                }
            }
            let wrong = call(&app, Some("vellum_not-a-token"), &method, &path, body.as_ref()).await;
            assert_eq!(wrong.status(), 401, "{backend:?} unknown token {method} {path}");
            let allowed = allowed.unwrap_or_default();
            for (role, t) in &tokens.by_role {
                let r = call(&app, Some(t), &method, &path, body.as_ref()).await;
                let what = format!("{backend:?} {role} {method} {path}");
                if allowed.contains(role) {
                    assert!(
                        r.status() != 401 && r.status() != 403,
                        "{what}: expected access, got {}", r.status()
                    );
                } else {
                    assert_refusal(r, StatusCode::FORBIDDEN, "forbidden", &what).await;
                }
            }
        }
    }

    async fn reads_are_recorded_as_balp_access_events(backend) {
        let db = TestDb::new(backend).await;
        let (tokens, lines) = tokens();
        let app = app(&db, lines).await;
        let source = &tokens.by_role[0].1;
        let auditor = &tokens.by_role[1].1;
        let mut ids = Vec::new();
        for n in [1, 2] {
            let r = call(&app, Some(source), &Method::POST, "/fhir/AuditEvent", Some(&sample_event(n))).await;
            ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        }
        // A read of an event with a patient: one PatientRead.
        let r = call(&app, Some(auditor), &Method::GET, &format!("/fhir/AuditEvent/{}", ids[0]), None).await;
        assert_eq!(r.status(), 200);
        // A search finding two events of two patients: two PatientQuery events.
        let r = call(&app, Some(auditor), &Method::GET, "/fhir/AuditEvent?type=110112", None).await;
        assert_eq!(r.json::<Value>().await.unwrap()["total"], 2);
        // A search finding nothing: one Query event, with the request.
        let r = call(&app, Some(auditor), &Method::GET, "/fhir/AuditEvent?patient=Patient/none", None).await;
        assert_eq!(r.status(), 200);
        // A report: one Query event.
        let r = call(&app, Some(auditor), &Method::GET, "/reports/overrides", None).await;
        assert_eq!(r.status(), 200);

        let found = call(&app, Some(auditor), &Method::GET,
            "/fhir/AuditEvent?type=rest&_count=100&_sort=_lastUpdated", None).await;
        let bundle: Value = found.json().await.unwrap();
        let events: Vec<Value> = bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).collect();
        let profile = |e: &Value, i: usize| e["meta"]["profile"][i].as_str().unwrap_or("").to_string();
        let balp: Vec<String> = events.iter().map(|e| profile(e, 1).rsplit('.').next().unwrap().to_string()).collect();
        assert_eq!(balp, ["PatientRead", "PatientQuery", "PatientQuery", "Query", "Query"], "{backend:?}");
        for e in &events {
            assert_eq!(profile(e, 0), "https://vellum-audit.org/fhir/StructureDefinition/audit-log-access");
            let user = e["agent"].as_array().unwrap().iter().find(|a| a["requestor"] == true).unwrap();
            assert_eq!(user["who"]["identifier"]["value"], "auditor-user");
            assert_eq!(user["role"][0]["coding"][0]["code"], "auditor");
            let client = &e["agent"][0];
            assert_eq!(client["network"]["address"], "127.0.0.1");
        }
        assert_eq!(events[0]["entity"][0]["what"]["reference"], format!("AuditEvent/{}", ids[0]));
        assert_eq!(events[0]["entity"][1]["what"]["reference"], "Patient/p1");
        let patients: Vec<&Value> = events[1..3].iter().map(|e| &e["entity"][1]["what"]["reference"]).collect();
        assert!(patients.contains(&&json!("Patient/p1")) && patients.contains(&&json!("Patient/p2")));
        let query = base64::engine::general_purpose::STANDARD
            .decode(events[3]["entity"][0]["query"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(query).unwrap(), "GET /fhir/AuditEvent?patient=Patient/none");

        // Independent check: base R4 and the audit-log-access profile.
        if tool_available("node + npm (independent validator)", vellum_testkit::on_path("node")) {
            let (ok, report) = validate_independently(&events);
            assert!(ok, "{backend:?}: {report}");
        }
    }

    async fn refusals_are_recorded_as_security_alerts(backend) {
        let db = TestDb::new(backend).await;
        let (tokens, lines) = tokens();
        let app = app(&db, lines).await;
        let qa = &tokens.by_role[2].1;
        let auditor = &tokens.by_role[1].1;
        assert_eq!(call(&app, None, &Method::GET, "/fhir/AuditEvent", None).await.status(), 401);
        assert_eq!(call(&app, Some(qa), &Method::GET, "/fhir/AuditEvent", None).await.status(), 403);
        // The alerts are appended without holding up the refusal: wait.
        let mut codes = Vec::new();
        for _ in 0..100 {
            let r = call(&app, Some(auditor), &Method::GET, "/fhir/AuditEvent?outcome=4", None).await;
            let b: Value = r.json().await.unwrap();
            codes = b["entry"].as_array().map(|es| es.iter()
                .map(|e| e["resource"]["type"]["code"].as_str().unwrap().to_string()).collect()).unwrap_or_default();
            if codes.len() == 2 { break; }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        codes.sort();
        assert_eq!(codes, ["110113", "110114"], "{backend:?}");
    }

    async fn a_clinician_reads_only_events_naming_them(backend) {
        let db = TestDb::new(backend).await;
        let (tokens, lines) = tokens();
        let app = app(&db, lines).await;
        let source = &tokens.by_role[0].1;
        let mut ids = Vec::new();
        // sample_event(n) names agent rad-(n % 17): 3 and 20 are rad-3.
        for n in [3, 4, 20] {
            let r = call(&app, Some(source), &Method::POST, "/fhir/AuditEvent", Some(&sample_event(n))).await;
            ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        }
        let rad3 = &tokens.clinician_rad3;
        let r = call(&app, Some(rad3), &Method::GET, "/fhir/AuditEvent?_summary=count", None).await;
        assert_eq!(r.json::<Value>().await.unwrap()["total"], 2, "{backend:?}: counts see only own events");
        let r = call(&app, Some(rad3), &Method::GET, "/fhir/AuditEvent?type=110112", None).await;
        let b: Value = r.json().await.unwrap();
        let mut seen: Vec<String> = b["entry"].as_array().unwrap().iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string()).collect();
        seen.sort();
        let mut own = vec![ids[0].clone(), ids[2].clone()];
        own.sort();
        assert_eq!(seen, own, "{backend:?}");
        assert_eq!(call(&app, Some(rad3), &Method::GET, &format!("/fhir/AuditEvent/{}", ids[0]), None).await.status(), 200);
        assert_eq!(call(&app, Some(rad3), &Method::GET, &format!("/fhir/AuditEvent/{}", ids[1]), None).await.status(), 404,
            "{backend:?}: another clinician's event is not revealed");
    }
}

/// With no credential configured, the first start makes an admin token,
/// keeps only its hash beside the database and prints the token once.
#[tokio::test]
async fn the_first_start_prints_an_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("first.db");
    let url = format!("sqlite://{}", db.display());
    let port = vellum_testkit::free_port();
    let spawn = || {
        std::process::Command::new(vellum_testkit::vellum_bin())
            .arg("serve")
            .env("VELLUM_DATABASE_URL", &url)
            .env("VELLUM_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("VELLUM_MLLP_ADDR", "")
            .env("VELLUM_LOG", "warn")
            .env_remove("VELLUM_DEV_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let wait_ready = || async {
        for _ in 0..300 {
            if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("not ready");
    };
    let mut first = spawn();
    wait_ready().await;
    let _ = first.kill();
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let token = stderr
        .split_whitespace()
        .find(|w| w.starts_with(token::TOKEN_PREFIX))
        .expect("the token is printed")
        .to_string();
    let file = std::fs::read_to_string(format!("{}.tokens", db.display())).unwrap();
    assert!(!file.contains(&token), "only the hash is kept");

    let mut second = spawn();
    wait_ready().await;
    let r = reqwest::Client::new()
        .get(format!("{base}/admin/verify"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the printed token works after a restart");
    let _ = second.kill();
    let out = second.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(token::TOKEN_PREFIX),
        "printed only once"
    );
}

/// `vellum token create` prints a working token and its grant line.
#[test]
fn token_create_prints_a_token_and_its_grant() {
    let out = std::process::Command::new(vellum_testkit::vellum_bin())
        .args([
            "token",
            "create",
            "--subject",
            "pacs-01",
            "--roles",
            "source",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let token = lines.next().unwrap();
    let grant = Grant::parse(lines.next().unwrap()).unwrap();
    assert_eq!(grant.subject, "pacs-01");
    assert_eq!(grant.hash, vellum::auth::TokenHash::of(token));
    let bad = std::process::Command::new(vellum_testkit::vellum_bin())
        .args(["token", "create", "--subject", "x", "--roles", "root"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

backend_tests! {
    async fn keys_and_conditions_are_scoped_to_the_sender(backend) {
        let db = TestDb::new(backend).await;
        let (a, b) = (token::generate().unwrap(), token::generate().unwrap());
        let lines = vec![
            Grant::line_for(&a, "pacs-a", RoleSet::of(&[Role::Source])),
            Grant::line_for(&b, "pacs-b", RoleSet::of(&[Role::Source])),
        ];
        let app = app(&db, lines).await;
        let post = |t: String, path: &'static str, body: Value, cond: Option<&'static str>| {
            let app_base = app.base.clone();
            async move {
                let mut rb = reqwest::Client::new()
                    .post(format!("{app_base}{path}"))
                    .bearer_auth(t)
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
                if let Some(c) = cond {
                    rb = rb.header("If-None-Exist", c);
                }
                let r = rb.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        // The same model version registered by two senders: two receipts,
        // neither answers with the other's.
        let model = vellum_testkit::ai::model("chest-xray-ai", "2.4.1", "2026-03-01T00:00:00Z");
        let (sa, ra) = post(a.clone(), "/ai/v1/models", model.clone(), None).await;
        let (sb, rb) = post(b.clone(), "/ai/v1/models", model.clone(), None).await;
        assert_eq!((sa, sb), (201, 201), "{backend:?}: {ra} {rb}");
        assert_ne!(ra["id"], rb["id"]);
        let (s, again) = post(a.clone(), "/ai/v1/models", model.clone(), None).await;
        assert_eq!((s, &again["id"]), (200, &ra["id"]), "{backend:?}: a retry");
        // The same AI event id from both: each gets its own event.
        let inference = vellum_testkit::ai::inference("inf-1", "2.4.1");
        let (sa, ia) = post(a.clone(), "/ai/v1/inferences", inference.clone(), None).await;
        let (sb, ib) = post(b.clone(), "/ai/v1/inferences", inference.clone(), None).await;
        assert_eq!((sa, sb), (201, 201), "{backend:?}: {ia} {ib}");
        assert_ne!(ia["id"], ib["id"]);
        // If-None-Exist matches only the sender's own events.
        let cond = Some("entity.identifier=urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.8.498.77");
        let (sa, ea) = post(a.clone(), "/fhir/AuditEvent", sample_event(77), cond).await;
        let (sb, eb) = post(b.clone(), "/fhir/AuditEvent", sample_event(77), cond).await;
        assert_eq!((sa, sb), (201, 201), "{backend:?}: pacs-b is not answered with pacs-a's event");
        assert_ne!(ea["id"], eb["id"]);
        let (s, ea2) = post(a.clone(), "/fhir/AuditEvent", sample_event(77), cond).await;
        assert_eq!((s, &ea2["id"]), (200, &ea["id"]));
        // Each stored event names its authenticated sender.
        let tag = |e: &Value| e["meta"]["tag"][0]["code"].clone();
        assert_eq!((tag(&ea), tag(&eb)), (json!("pacs-a"), json!("pacs-b")));
        // A forged sender tag is replaced.
        let mut forged = sample_event(78);
        forged["meta"] = json!({"tag": [{"system": "https://vellum-audit.org/fhir/CodeSystem/submitter", "code": "pacs-a"}]});
        let (s, f) = post(b.clone(), "/fhir/AuditEvent", forged, None).await;
        assert_eq!((s, tag(&f)), (201, json!("pacs-b")));
    }
}
