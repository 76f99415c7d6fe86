//! The `/ai/v1` API over real HTTP on both backends: every endpoint, events
//! read back through `/fhir`, refusals store nothing, data minimisation.

use serde_json::{json, Value};
use vellum_testkit::ai::*;
use vellum_testkit::*;

const INFERENCE: &str = "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-inference";

fn detail<'a>(entity: &'a Value, kind: &str) -> Option<&'a Value> {
    entity["detail"]
        .as_array()?
        .iter()
        .find(|d| d["type"] == kind)
}

fn entity_with_system<'a>(e: &'a Value, system: &str) -> &'a Value {
    e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["what"]["identifier"]["system"] == system)
        .unwrap_or_else(|| panic!("no entity with {system}: {e}"))
}

backend_tests! {
    async fn models_inferences_overrides_and_renderings_are_chained_and_read_back(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;

        // Register two versions; a repeat is idempotent (200, same event).
        let (s, v1, h) = app
            .ai_post(
                "models",
                &model("chest-xray-ai", "2.4.1", "2026-01-10T08:00:00Z"),
            )
            .await;
        assert_eq!(s, 201, "{ctx}: {v1}");
        let id1 = v1["id"].as_str().unwrap();
        assert_eq!(h["location"], format!("/fhir/AuditEvent/{id1}").as_str());
        assert_eq!(h["x-vellum-seq"], "1");
        assert_eq!(v1["chain_hash"].as_str().unwrap().len(), 64);
        let (s, again, _) = app
            .ai_post(
                "models",
                &model("chest-xray-ai", "2.4.1", "2026-01-10T08:00:00Z"),
            )
            .await;
        assert_eq!((s, &again["id"]), (200, &v1["id"]), "{ctx}");
        let (s, v2, _) = app
            .ai_post(
                "models",
                &model("chest-xray-ai", "2.5.0", "2026-03-01T07:30:00.123456Z"),
            )
            .await;
        assert_eq!(s, 201, "{ctx}: {v2}");
        let (s, other, _) = app
            .ai_post(
                "models",
                &model("fracture-ai", "1.0", "2026-02-01T00:00:00Z"),
            )
            .await;
        assert_eq!(s, 201, "{ctx}: {other}");

        // Lineage: versions with deployment times, from the ledger.
        let (s, lineage) = app.get_json("/ai/v1/models/chest-xray-ai/versions").await;
        assert_eq!(s, 200, "{ctx}: {lineage}");
        let versions = lineage["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2, "{ctx}: {lineage}");
        assert_eq!(versions[0]["version"], "2.4.1");
        assert_eq!(versions[0]["deployed_at"], "2026-01-10T08:00:00.000000Z");
        assert_eq!(versions[1]["version"], "2.5.0");
        assert_eq!(versions[1]["deployed_at"], "2026-03-01T07:30:00.123456Z");
        assert_eq!(versions[1]["event_id"], v2["id"]);
        let (s, models) = app.get_json("/ai/v1/models").await;
        assert_eq!(s, 200);
        let names: Vec<&str> = models["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["chest-xray-ai", "fracture-ai"], "{ctx}");
        assert_eq!(models["models"][0]["current_version"], "2.5.0");
        let (s, _) = app.get_json("/ai/v1/models/unknown-ai/versions").await;
        assert_eq!(s, 404);

        // The deployment event as stored.
        let (s, dep) = app.get_json(&format!("/fhir/AuditEvent/{id1}")).await;
        assert_eq!(s, 200);
        assert_eq!(
            dep["meta"]["profile"][0],
            "https://vellum-audit.org/fhir/StructureDefinition/ai-model-deployment"
        );
        assert_eq!(dep["recorded"], "2026-01-10T08:00:00.000000Z");
        let m = entity_with_system(&dep, "https://vellum-audit.org/fhir/ai-model-version");
        assert_eq!(m["what"]["identifier"]["value"], "chest-xray-ai|2.4.1");
        assert_eq!(
            detail(m, "training-date").unwrap()["valueString"],
            "2025-11-30"
        );
        assert_eq!(
            detail(m, "provider").unwrap()["valueString"],
            "Example AI Ltd"
        );
        let results: Vec<&Value> = dep["entity"][1]["detail"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["type"] == "validation-result")
            .collect();
        assert_eq!(results.len(), 2);
        assert!(results[0]["valueString"]
            .as_str()
            .unwrap()
            .contains(r#""value":"0.953""#));

        // Inference.
        // A JSON number keeps its exact text: 0.940, not 0.94.
        let text = inference("inf-1", "2.4.1")
            .to_string()
            .replace(r#""confidence":0.94}"#, r#""confidence":0.940}"#);
        assert!(text.contains("0.940"));
        let (s, inf, h) = app.ai_post_raw("inferences", text.clone()).await;
        assert_eq!(s, 201, "{ctx}: {inf}");
        let inf_id = inf["id"].as_str().unwrap().to_string();
        assert_eq!(h["location"], format!("/fhir/AuditEvent/{inf_id}").as_str());
        let (_, e) = app.get_json(&format!("/fhir/AuditEvent/{inf_id}")).await;
        assert_eq!(e["meta"]["profile"][0], INFERENCE);
        assert_eq!(e["meta"]["security"][0]["code"], "AIAST");
        assert_eq!(e["recorded"], "2026-03-14T08:26:53.412000Z", "µs UTC");
        assert_eq!(e["period"]["start"], "2026-03-14T08:26:52.101000Z");
        let model_agent = &e["agent"][1];
        assert_eq!(model_agent["type"]["coding"][0]["code"], "110150");
        assert_eq!(model_agent["who"]["display"], "chest-xray-ai 2.4.1");
        assert_eq!(e["agent"][0]["role"][0]["coding"][0]["code"], "66862007");
        assert_eq!(e["agent"][0]["network"]["address"], "10.0.0.5");
        assert_eq!(
            e["agent"][0]["policy"][0],
            "https://hospital.example/policy/ai-use-v3"
        );
        let study = entity_with_system(&e, "urn:dicom:uid");
        assert_eq!(
            study["what"]["identifier"]["value"],
            "urn:oid:1.2.826.0.1.3680043.8.498.1"
        );
        assert_eq!(
            study["what"]["identifier"]["type"]["coding"][0]["code"],
            "110180"
        );
        assert_eq!(
            (&study["type"]["code"], &study["role"]["code"]),
            (&json!("2"), &json!("3"))
        );
        assert_eq!(
            detail(study, "pixel-sha256").unwrap()["valueBase64Binary"],
            "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
        );
        assert_eq!(
            detail(study, "digest-check").unwrap()["valueString"],
            "unverified"
        );
        assert_eq!(study["extension"][1]["valueInteger"], 12);
        let findings: Vec<Value> = study["detail"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["type"] == "finding")
            .map(|d| serde_json::from_str(d["valueString"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(
            findings[0]["confidence"], "0.940",
            "{ctx}: exact decimal text"
        );
        assert_eq!(findings[1]["confidence"], "0.120");
        let model_entity = entity_with_system(&e, "https://vellum-audit.org/fhir/ai-model-version");
        assert_eq!(
            model_entity["what"]["identifier"]["value"],
            "chest-xray-ai|2.4.1"
        );
        assert_eq!(
            detail(model_entity, "deployment-event").unwrap()["valueString"],
            format!("AuditEvent/{id1}")
        );
        let run = entity_with_system(&e, "https://vellum-audit.org/fhir/ai-event-id");
        assert_eq!(run["what"]["identifier"]["value"], "inf-1");
        assert_eq!(detail(run, "latency-ms").unwrap()["valueString"], "1311");
        assert!(detail(run, "prompt-sha256").is_some());
        assert!(detail(run, "prompt").is_none(), "content is off by default");
        assert!(
            !e.to_string().contains("Right apical"),
            "{ctx}: no output body"
        );

        // Override and rendering link the inference.
        let (s, ovr, _) = app
            .ai_post("overrides", &override_of("ovr-1", &inf_id))
            .await;
        assert_eq!(s, 201, "{ctx}: {ovr}");
        let (_, o) = app
            .get_json(&format!("/fhir/AuditEvent/{}", ovr["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            o["entity"][0]["what"]["reference"],
            format!("AuditEvent/{inf_id}")
        );
        assert_eq!(o["subtype"][1]["code"], "accept_with_edit");
        assert_eq!(
            detail(&o["entity"][0], "reason-code").unwrap()["valueString"],
            "wrong-measurement"
        );
        // 08:31:12Z − 08:26:53.412Z
        assert_eq!(
            detail(&o["entity"][0], "time-to-action-ms").unwrap()["valueString"],
            "258588"
        );
        assert!(detail(&o["entity"][0], "reason-text").is_none());
        assert!(detail(&o["entity"][0], "edit-diff-sha256").is_some());
        assert_eq!(o["agent"][1]["who"]["display"], "chest-xray-ai 2.4.1");
        assert_eq!(o["agent"][0]["network"]["address"], "ws-rad-12");
        let (s, rnd, _) = app
            .ai_post("renderings", &rendering_of("rnd-1", &inf_id))
            .await;
        assert_eq!(s, 201, "{ctx}: {rnd}");
        let (_, r) = app
            .get_json(&format!("/fhir/AuditEvent/{}", rnd["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            r["entity"][0]["what"]["reference"],
            format!("AuditEvent/{inf_id}")
        );
        assert_eq!(
            detail(&r["entity"][0], "viewed").unwrap()["valueString"],
            "true"
        );
        assert_eq!(
            detail(&r["entity"][0], "format").unwrap()["valueString"],
            "GSPS"
        );

        // A repeated request answers with the first receipt (whitespace
        // and key order aside); the same event id for a different request
        // is a conflict naming the stored event, and stores nothing.
        let spaced = format!("\n  {}\n", text.replacen('{', "{ ", 1));
        let (s, same, _) = app.ai_post_raw("inferences", spaced).await;
        assert_eq!((s, &same["id"]), (200, &inf["id"]), "{ctx}");
        let (s, conflict, _) = app
            .ai_post("inferences", &inference("inf-1", "2.4.1"))
            .await;
        assert_eq!(s, 409, "{ctx}: {conflict}");
        assert!(conflict.to_string().contains(inf["id"].as_str().unwrap()), "{ctx}: {conflict}");
        assert_eq!(app.entries().await, 6, "{ctx}");
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{ctx}: {verdict}");
    }
}

backend_tests! {
    async fn references_to_unknown_models_or_inferences_are_refused_and_nothing_is_stored(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let (dep_id, inf_id) = app.ai_inference_chain("a").await;
        let before = app.entries().await;

        let (s, v, _) = app
            .ai_post("inferences", &inference("inf-x", "9.9.9"))
            .await;
        assert_eq!(s, 422, "{ctx}: {v}");
        assert_eq!(v["error"], "unregistered-model");
        assert_eq!(v["pointer"], "/model/version");

        let unknown = "00000000-0000-4000-8000-000000000000";
        for (path, body) in [
            ("overrides", override_of("o-x", unknown)),
            ("renderings", rendering_of("r-x", unknown)),
            // A stored event that is not an inference.
            ("overrides", override_of("o-y", &dep_id)),
            ("renderings", rendering_of("r-y", &dep_id)),
        ] {
            let (s, v, _) = app.ai_post(path, &body).await;
            assert_eq!(s, 422, "{ctx}: {path}: {v}");
            assert_eq!(v["error"], "unknown-inference");
            assert_eq!(v["field"], "inference_id");
        }
        assert_eq!(app.entries().await, before, "{ctx}: nothing stored");
        // The valid reference still works.
        let (s, _, _) = app
            .ai_post("overrides", &override_of("o-ok", &inf_id))
            .await;
        assert_eq!(s, 201);
    }
}

#[tokio::test]
async fn invalid_input_is_a_400_naming_the_field() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    app.ai_inference_chain("a").await;
    let before = app.entries().await;
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut x = inference("i", "2.4.1");
    x["findings"][1]["confidence"] = json!("1.5");
    cases.push((x, "/findings/1/confidence"));
    let mut x = inference("i", "2.4.1");
    x["study"]["uid"] = json!("1.2.03");
    cases.push((x, "/study/uid"));
    let mut x = inference("i", "2.4.1");
    x["study"]["priors"] = json!(["1.2", "not-a-uid"]);
    cases.push((x, "/study/priors/1"));
    let mut x = inference("i", "2.4.1");
    x["user"]["colour"] = json!("red");
    cases.push((x, "/user/colour"));
    let mut x = inference("i", "2.4.1");
    x.as_object_mut().unwrap().remove("study");
    cases.push((x, "/study"));
    let mut x = inference("i", "2.4.1");
    x["time"] = json!("2026-03-14 09:26");
    cases.push((x, "/time"));
    let mut x = inference("i", "2.4.1");
    x["source"]["ip"] = json!("10.0.0.300");
    cases.push((x, "/source/ip"));
    for (body, pointer) in cases {
        let (s, v, _) = app.ai_post("inferences", &body).await;
        assert_eq!(s, 400, "{pointer}: {v}");
        assert_eq!(v["pointer"], pointer, "{v}");
    }
    let mut o = override_of("o", "x");
    o["action"] = json!("shrug");
    let (s, v, _) = app.ai_post("overrides", &o).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("action")), "{v}");
    let mut m = model("chest-xray-ai", "2.4|1", "2026-01-01T00:00:00Z");
    let (s, v, _) = app.ai_post("models", &m).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("version")), "{v}");
    m["version"] = json!("3.0");
    m["training_date"] = json!("2025-02-30");
    let (s, v, _) = app.ai_post("models", &m).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (400, Some("training_date")),
        "{v}"
    );
    let r = app
        .client
        .post(format!("{}/ai/v1/inferences", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.entries().await, before, "nothing stored");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let (s, doc) = app.get_json("/ai/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let src = std::fs::read_to_string("src/http/ai_routes.rs").unwrap();
    let mut routes = 0;
    for line in src.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(".route(\"") else {
            continue;
        };
        let path = format!("/ai/v1{}", rest.split('"').next().unwrap());
        let method = if line.contains("web::post()") {
            "post"
        } else {
            "get"
        };
        assert!(
            doc["paths"][&path][method].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
        routes += 1;
    }
    assert_eq!(routes, 8);
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            assert!(op["responses"].is_object());
        }
    }
}

async fn app_with_privacy(db: &TestDb, store_content: bool, key: Option<&str>) -> TestApp {
    let mut raw = vellum_testkit::raw_settings_for(&db.url);
    raw.privacy.store_content = store_content;
    raw.privacy.pseudonymise_patients = key.is_some();
    raw.privacy.pseudonym_key = key.map(Into::into);
    spawn_app_with(vellum::config::Settings::validate(raw).unwrap()).await
}

#[tokio::test]
async fn content_and_patient_identifiers_follow_the_privacy_settings() {
    let key = "0123456789abcdef";
    // Off: hashes only, patient in clear.
    let db = TestDb::new(Backend::Sqlite).await;
    let app = app_with_privacy(&db, false, None).await;
    let (_, inf_id) = app.ai_inference_chain("off").await;
    let (_, e) = app.get_json(&format!("/fhir/AuditEvent/{inf_id}")).await;
    let text = e.to_string();
    assert!(!text.contains("Findings for chest PA"), "prompt not stored");
    assert!(text.contains("8675309"), "patient in clear");
    let (_, o) = app
        .ai_post("overrides", &override_of("o", &inf_id))
        .await
        .1
        .pipe(|v| (0, v));
    let (_, o) = app
        .get_json(&format!("/fhir/AuditEvent/{}", o["id"].as_str().unwrap()))
        .await;
    assert!(
        !o.to_string().contains("3 cm, not 2 cm"),
        "reason text not stored"
    );

    // On: content kept, patient pseudonymised (and the override copies the
    // inference's pseudonymised patient).
    let db = TestDb::new(Backend::Postgres).await;
    let app = app_with_privacy(&db, true, Some(key)).await;
    let (_, inf_id) = app.ai_inference_chain("on").await;
    let (_, e) = app.get_json(&format!("/fhir/AuditEvent/{inf_id}")).await;
    let run = entity_with_system(&e, "https://vellum-audit.org/fhir/ai-event-id");
    assert_eq!(
        detail(run, "prompt").unwrap()["valueString"],
        "Findings for chest PA of patient 8675309?"
    );
    let patient = entity_with_system(&e, "https://vellum-audit.org/fhir/pseudonym");
    // printf 'urn:oid:1.2.3.4.5|8675309' | openssl dgst -sha256 -hmac 0123456789abcdef
    let expected = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s' 'urn:oid:1.2.3.4.5|8675309' | openssl dgst -sha256 -hmac {key} | awk '{{print $2}}'"
        ))
        .output()
        .unwrap();
    let expected = String::from_utf8(expected.stdout).unwrap();
    assert_eq!(patient["what"]["identifier"]["value"], expected.trim());
    let (_, ovr, _) = app.ai_post("overrides", &override_of("o", &inf_id)).await;
    let (_, o) = app
        .get_json(&format!("/fhir/AuditEvent/{}", ovr["id"].as_str().unwrap()))
        .await;
    assert!(
        o.to_string().contains("3 cm, not 2 cm"),
        "reason text stored"
    );
    assert_eq!(
        entity_with_system(&o, "https://vellum-audit.org/fhir/pseudonym")["what"]["identifier"]
            ["value"],
        expected.trim()
    );
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}
