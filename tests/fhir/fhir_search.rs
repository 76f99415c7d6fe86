//! FHIR search, paging, Bundles, formats and conditional create over real
//! HTTP on both backends.

use serde_json::{json, Value};
use vellum_testkit::*;

/// A small, varied set of events; returns their ids in creation order.
async fn seed(app: &TestApp) -> Vec<String> {
    let events = vec![
        // 0: patient p1, March, outcome 0, agent name with accents
        json!({"resourceType":"AuditEvent",
            "type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110112"},
            "subtype":[{"system":"https://vellum-audit.org/fhir/CodeSystem/ai-event","code":"inference"}],
            "action":"E","recorded":"2026-03-14T09:26:53+01:00","outcome":"0",
            "agent":[{"who":{"reference":"Practitioner/dr1","identifier":{"system":"urn:oid:1.2","value":"rad-7"}},
                      "name":"Dr. Zoë Müller","altId":"zm","requestor":true,
                      "role":[{"coding":[{"system":"urn:r","code":"RAD"}]}],"policy":["urn:policy:1"],
                      "network":{"address":"10.0.0.5","type":"2"}},
                     {"who":{"reference":"Device/model-x","identifier":{"system":"urn:model","value":"chest-ai|2.4.1"}},"requestor":false}],
            "source":{"site":"Radiology","observer":{"identifier":{"system":"urn:src","value":"pacs-01"}}},
            "entity":[{"what":{"reference":"Patient/p1","identifier":{"system":"urn:mrn","value":"MRN-1"}},
                       "type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1"},
                       "role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1"},"name":"Chest CT"},
                      {"what":{"identifier":{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}},
                       "type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2"}}]}),
        // 1: patient p1, April, failed
        json!({"resourceType":"AuditEvent",
            "type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110110"},
            "action":"R","recorded":"2026-04-02T12:00:00Z","outcome":"8",
            "agent":[{"who":{"reference":"Practitioner/dr2"},"name":"Dr. Smith","requestor":true}],
            "source":{"observer":{"display":"ris"}},
            "entity":[{"what":{"reference":"Patient/p1"}}]}),
        // 2: patient p2, March, no entity name
        json!({"resourceType":"AuditEvent",
            "type":{"code":"110112"},
            "action":"E","recorded":"2026-03-20T00:00:00Z","outcome":"0",
            "agent":[{"who":{"reference":"Practitioner/dr1"},"requestor":true}],
            "source":{"site":"ED","observer":{"display":"pacs-02"}},
            "entity":[{"what":{"reference":"Patient/p2"}}]}),
    ];
    let mut ids = Vec::new();
    for e in events {
        let r = app.post_event(&e).await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn search(app: &TestApp, q: &str) -> Value {
    let r = app
        .client
        .get(format!("{}/fhir/AuditEvent?{q}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{q}: {}", r.text().await.unwrap());
    r.json().await.unwrap()
}

/// Ids of the matches, in order.
fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn expect(app: &TestApp, all: &[String], q: &str, want: &[usize]) {
    let b = search(app, q).await;
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "searchset");
    let mut got = ids(&b);
    got.sort();
    let mut exp: Vec<String> = want.iter().map(|i| all[*i].clone()).collect();
    exp.sort();
    assert_eq!(got, exp, "query {q}");
}

async fn every_parameter(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db.url).await;
    let all = seed(&app).await;
    let cases: &[(&str, &[usize])] = &[
        ("action=E", &[0, 2]),
        ("action=E,R", &[0, 1, 2]),
        ("action:not=E", &[1]),
        ("outcome=8", &[1]),
        (
            "type=http://dicom.nema.org/resources/ontology/DCM|110112",
            &[0],
        ),
        ("type=|110112", &[2]),
        ("type=110112", &[0, 2]),
        (
            "type=http://dicom.nema.org/resources/ontology/DCM|",
            &[0, 1],
        ),
        ("subtype=inference", &[0]),
        ("subtype:missing=true", &[1, 2]),
        ("subtype:missing=false", &[0]),
        ("address=10.0", &[0]),
        ("agent=Practitioner/dr1", &[0, 2]),
        ("agent=dr2", &[1]),
        ("agent:Practitioner=dr2", &[1]),
        ("agent:identifier=urn:oid:1.2|rad-7", &[0]),
        ("agent.identifier=urn:model|chest-ai\\|2.4.1", &[0]),
        ("agent-name=dr.%20zoe", &[0]),
        ("agent-name=DR.", &[0, 1]),
        ("agent-name:exact=Dr. Smith", &[1]),
        ("agent-name:exact=dr. smith", &[]),
        ("agent-name:contains=mull", &[0]),
        ("agent-role=urn:r|RAD", &[0]),
        ("altid=zm", &[0]),
        ("date=2026-03", &[0, 2]),
        ("date=2026-03-14", &[0]),
        ("date=2026-03-14T08:26:53Z", &[0]),
        ("date=ge2026-03-20", &[1, 2]),
        ("date=gt2026-03-20", &[1]),
        ("date=lt2026-03-20", &[0]),
        ("date=le2026-03-20", &[0, 2]),
        ("date=sa2026-03", &[1]),
        ("date=eb2026-04", &[0, 2]),
        ("date=ne2026-03", &[1]),
        ("date=ge2026-03-01&date=lt2026-04-01", &[0, 2]),
        ("date=2026-03-14T09:26:53%2B01:00", &[0]),
        ("date=ap2026-04-02T12:00:00Z&outcome=8", &[1]),
        ("entity=Patient/p1", &[0, 1]),
        ("entity:identifier=urn:dicom:uid|urn:oid:1.2.3", &[0]),
        ("entity.identifier=urn:mrn|MRN-1", &[0]),
        ("entity-name=chest", &[0]),
        ("entity-name:missing=true", &[1, 2]),
        ("entity-role=1", &[0]),
        (
            "entity-type=http://terminology.hl7.org/CodeSystem/audit-entity-type|2",
            &[0],
        ),
        ("patient=Patient/p1", &[0, 1]),
        ("patient=p2", &[2]),
        ("patient.identifier=urn:mrn|MRN-1", &[0]),
        ("patient=Patient/p1&date=2026-03", &[0]),
        ("policy=urn:policy:1", &[0]),
        ("site=Radiology,ED", &[0, 2]),
        ("source:identifier=urn:src|pacs-01", &[0]),
        ("source.identifier=pacs-01", &[0]),
        ("_lastUpdated=gt2020-01-01", &[0, 1, 2]),
        ("_lastUpdated=lt2020-01-01", &[]),
    ];
    for (q, want) in cases {
        expect(&app, &all, q, want).await;
    }
    let id_query = format!("_id={},{}", all[0], all[2]);
    expect(&app, &all, &id_query, &[0, 2]).await;

    // Sorting by recorded date, both ways.
    assert_eq!(
        ids(&search(&app, "_sort=date").await),
        vec![all[0].clone(), all[2].clone(), all[1].clone()]
    );
    assert_eq!(
        ids(&search(&app, "_sort=-date").await),
        vec![all[1].clone(), all[2].clone(), all[0].clone()]
    );
    assert_eq!(
        ids(&search(&app, "_sort=-_lastUpdated").await),
        vec![all[2].clone(), all[1].clone(), all[0].clone()]
    );

    // _summary=count and _total.
    let c = search(&app, "action=E&_summary=count").await;
    assert_eq!(c["total"], 2);
    assert!(c.get("entry").is_none());
    let t = search(&app, "_count=1&_total=accurate").await;
    assert_eq!(t["total"], 3);
    let n = search(&app, "_count=1&_total=none").await;
    assert!(n.get("total").is_none());

    // _elements subsets and tags.
    let e = search(&app, &format!("_id={}&_elements=action", all[0])).await;
    let r = &e["entry"][0]["resource"];
    assert_eq!(r["action"], "E");
    assert!(r.get("agent").is_none());
    let tags: Vec<&str> = r["meta"]["tag"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["code"].as_str())
        .collect();
    assert!(tags.contains(&"SUBSETTED"), "{tags:?}");

    // POST _search (form body) equals GET.
    let p: Value = app
        .client
        .post(format!("{}/fhir/AuditEvent/_search", app.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("patient=Patient%2Fp1&action=R")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![all[1].clone()]);
}

#[tokio::test]
async fn every_parameter_sqlite() {
    every_parameter(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_parameter_postgres() {
    every_parameter(Backend::Postgres).await;
}

async fn paging_is_stable(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db.url).await;
    let mut created = Vec::new();
    for n in 0..7 {
        let v: Value = app.post_event(&sample_event(n)).await.json().await.unwrap();
        created.push(v["id"].as_str().unwrap().to_string());
    }
    let first = search(&app, "_count=3").await;
    let link = |b: &Value, rel: &str| {
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == rel)
            .map(|l| l["url"].as_str().unwrap().to_string())
    };
    assert!(link(&first, "previous").is_none());
    let next = link(&first, "next").expect("next link");
    // New events arrive between pages: the pages do not move.
    for n in 100..103 {
        app.post_event(&sample_event(n)).await;
    }
    let second: Value = app
        .client
        .get(&next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let third: Value = app
        .client
        .get(link(&second, "next").expect("next of page 2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        link(&third, "next").is_none(),
        "the pinned search ends at 7"
    );
    let mut walked = ids(&first);
    walked.extend(ids(&second));
    walked.extend(ids(&third));
    assert_eq!(walked, created);
    // previous from page 2 gives page 1 again.
    let back: Value = app
        .client
        .get(link(&second, "previous").expect("previous"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&back), ids(&first));
    // The same self link answers the same page.
    let again: Value = app
        .client
        .get(link(&second, "self").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&again), ids(&second));
}

#[tokio::test]
async fn paging_is_stable_sqlite() {
    paging_is_stable(Backend::Sqlite).await;
}

#[tokio::test]
async fn paging_is_stable_postgres() {
    paging_is_stable(Backend::Postgres).await;
}

#[tokio::test]
async fn parameter_errors_are_precise() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    app.post_event(&sample_event(1)).await;
    // Unknown parameter, by default: 400 (an audit search must never
    // silently widen to every event).
    let r = app
        .client
        .get(format!("{}/fhir/AuditEvent?colour=red", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["issue"][0]["expression"][0], "colour");
    // Lenient on request: ignored and reported.
    let r = app
        .client
        .get(format!("{}/fhir/AuditEvent?colour=red", app.base))
        .header("Prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let oo = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("outcome entry");
    assert_eq!(oo["resource"]["issue"][0]["expression"][0], "colour");
    assert_eq!(ids(&b).len(), 1);
    for (q, param) in [
        ("date=2026-02-30", "date"),
        ("date=xx2026", "date"),
        ("action:text=E", "action:text"),
        ("_count=abc", "_count"),
        ("_sort=agent", "_sort"),
        ("subtype:missing=maybe", "subtype:missing"),
        ("_cursor=zzz", "_cursor"),
    ] {
        let r = app
            .client
            .get(format!("{}/fhir/AuditEvent?{q}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["expression"][0], param, "{q}");
    }
}

async fn bundles(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db.url).await;
    let post = |b: Value| {
        let client = app.client.clone();
        let url = format!("{}/fhir", app.base);
        async move {
            client
                .post(url)
                .header("Content-Type", "application/fhir+json")
                .body(b.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let entry =
        |e: Value| json!({"resource": e, "request": {"method": "POST", "url": "AuditEvent"}});
    // Transaction: all stored.
    let r = post(json!({"resourceType":"Bundle","type":"transaction",
        "entry":[entry(sample_event(1)), entry(sample_event(2))]}))
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "transaction-response");
    assert_eq!(v["entry"][0]["response"]["status"], "201 Created");
    assert!(v["entry"][1]["response"]["location"]
        .as_str()
        .unwrap()
        .starts_with("AuditEvent/"));
    assert_eq!(search(&app, "_summary=count").await["total"], 2);

    // Transaction with one bad entry: nothing stored, the error names it.
    let mut bad = sample_event(3);
    bad["action"] = json!("Z");
    let r = post(json!({"resourceType":"Bundle","type":"transaction",
        "entry":[entry(sample_event(4)), entry(bad.clone())]}))
    .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["issue"][0]["expression"][0],
        "Bundle.entry[1].resource.action"
    );
    assert_eq!(search(&app, "_summary=count").await["total"], 2);

    // Batch: per-entry outcomes; the good ones are stored.
    let r = post(json!({"resourceType":"Bundle","type":"batch",
        "entry":[entry(sample_event(5)), entry(bad),
                 {"request":{"method":"DELETE","url":"AuditEvent/x"}}]}))
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "batch-response");
    assert_eq!(v["entry"][0]["response"]["status"], "201 Created");
    assert!(v["entry"][1]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("422"));
    assert_eq!(
        v["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0],
        "Bundle.entry[1].resource.action"
    );
    assert!(v["entry"][2]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("405"));
    assert_eq!(search(&app, "_summary=count").await["total"], 3);

    // Other Bundle types are refused.
    let r = post(json!({"resourceType":"Bundle","type":"collection"})).await;
    assert_eq!(r.status(), 400);
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{verdict}");
}

#[tokio::test]
async fn bundles_sqlite() {
    bundles(Backend::Sqlite).await;
}

#[tokio::test]
async fn bundles_postgres() {
    bundles(Backend::Postgres).await;
}

#[tokio::test]
async fn conditional_create_returns_the_existing_entry() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let event = sample_event(42);
    let cond = "entity.identifier=urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.8.498.42";
    let send = || {
        app.client
            .post(format!("{}/fhir/AuditEvent", app.base))
            .header("Content-Type", "application/fhir+json")
            .header("If-None-Exist", cond)
            .body(event.to_string())
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // Concurrent retries: still one entry.
    let (a, b) = tokio::join!(send(), send());
    for r in [a.unwrap(), b.unwrap()] {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], first["id"]);
    }
    assert_eq!(search(&app, "_summary=count").await["total"], 1);
    // Unknown criteria are refused, not ignored.
    let r = app
        .client
        .post(format!("{}/fhir/AuditEvent", app.base))
        .header("If-None-Exist", "colour=red")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn xml_in_and_out() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let created: Value = app.post_event(&sample_event(7)).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let r = app
        .client
        .get(format!("{}/fhir/AuditEvent/{id}", app.base))
        .header("Accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+xml"));
    assert!(r.headers().contains_key("x-vellum-chain-hash"));
    let xml = r.text().await.unwrap();
    assert!(xml.contains(&format!("<id value=\"{id}\"/>")), "{xml}");
    // XML in: the same event posted as XML is stored as canonical JSON.
    let xml_event = xml.replace(&format!("<id value=\"{id}\"/>"), "");
    let r = app
        .client
        .post(format!("{}/fhir/AuditEvent?_format=json", app.base))
        .header("Content-Type", "application/fhir+xml")
        .body(xml_event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["entity"][0]["detail"][0]["valueString"], "0.940");
    // Search and metadata in XML; unsupported formats.
    let r = app
        .client
        .get(format!("{}/fhir/AuditEvent?_format=xml", app.base))
        .send()
        .await
        .unwrap();
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Bundle xmlns=\"http://hl7.org/fhir\">"));
    let r = app
        .client
        .get(format!(
            "{}/fhir/metadata?_format=application/fhir%2Bxml",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("<CapabilityStatement"));
    let r = app
        .client
        .get(format!("{}/fhir/metadata", app.base))
        .header("Accept", "application/pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = app
        .client
        .post(format!("{}/fhir/AuditEvent", app.base))
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = app
        .client
        .get(format!("{}/fhir/metadata?mode=terminology", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
