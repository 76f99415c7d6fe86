//! The FHIR REST surface, end to end over real sockets and real
//! databases: create, read, vread, the 405/404/400/413/415/422 answers (each
//! an OperationOutcome naming the faulty element), the ledger receipt
//! headers, canonical bodies, the hash chain and the CapabilityStatement.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vellum::config::{RawSettings, Settings};
use vellum::ledger::canonical::{self, jcs_key_order};
use vellum::ledger::hash;
use vellum_testkit::*;

const FHIR_JSON: &str = "application/fhir+json";

/// (case name, how to break a valid event, expected `issue[0].expression`).
type MutationCase = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);
/// (method, URL, the method `Allow` must name, optional (Content-Type, body)).
type MethodCase<'a> = (
    reqwest::Method,
    &'a str,
    &'static str,
    Option<(&'static str, String)>,
);

/// What a successful create answered.
#[derive(Debug, Clone)]
struct Created {
    id: String,
    body: String,
    seq: i64,
    chain_hash: String,
    location: String,
    etag: String,
    last_modified: String,
    content_type: String,
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

/// Posts raw bytes with an optional Content-Type.
async fn post_raw(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/fhir/AuditEvent", app.base))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    req.send().await.expect("request sent")
}

/// Checks a 201 and collects what it carries.
async fn expect_created(r: reqwest::Response, ctx: &str) -> Created {
    let status = r.status();
    if status != 201 {
        let text = r.text().await.unwrap_or_default();
        panic!("{ctx}: expected 201, got {status}: {text}");
    }
    let must = |name: &str| header(&r, name).unwrap_or_else(|| panic!("{ctx}: no {name} header"));
    let location = must("location");
    let etag = must("etag");
    let last_modified = must("last-modified");
    let content_type = must("content-type");
    let seq = must("x-vellum-seq")
        .parse::<i64>()
        .unwrap_or_else(|e| panic!("{ctx}: X-Vellum-Seq is not a number: {e}"));
    let chain_hash = must("x-vellum-chain-hash");
    let body = r.text().await.expect("body");
    let v: Value = serde_json::from_str(&body).expect("201 body is JSON");
    let id = v["id"].as_str().expect("id assigned").to_string();
    Created {
        id,
        body,
        seq,
        chain_hash,
        location,
        etag,
        last_modified,
        content_type,
    }
}

async fn create(app: &TestApp, event: &Value) -> Created {
    expect_created(app.post_event(event).await, "create").await
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .expect("request sent")
}

/// Asserts an error answer: the status, a FHIR JSON OperationOutcome with at
/// least one error issue, and (when given) `issue[0].expression[0]`.
async fn expect_outcome(
    r: reqwest::Response,
    status: u16,
    expression: Option<&str>,
    ctx: &str,
) -> Value {
    let got = r.status().as_u16();
    let ct = header(&r, "content-type").unwrap_or_default();
    let text = r.text().await.expect("body");
    assert_eq!(got, status, "{ctx}: status; body: {text}");
    assert!(ct.starts_with(FHIR_JSON), "{ctx}: Content-Type {ct}");
    let oo: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{ctx}: error body is not JSON ({e}): {text}"));
    assert_eq!(oo["resourceType"], "OperationOutcome", "{ctx}: {oo}");
    let issues = oo["issue"].as_array().expect("issue array");
    assert!(!issues.is_empty(), "{ctx}: no issues: {oo}");
    for i in issues {
        assert!(
            matches!(
                i["severity"].as_str(),
                Some("fatal" | "error" | "warning" | "information")
            ),
            "{ctx}: severity: {oo}"
        );
        assert!(i["code"].is_string(), "{ctx}: issue.code: {oo}");
        if let Some(e) = i.get("expression") {
            let e = e.as_array().expect("expression is an array");
            assert!(e.iter().all(Value::is_string), "{ctx}: {oo}");
        }
    }
    assert_eq!(issues[0]["severity"], "error", "{ctx}: {oo}");
    if let Some(expr) = expression {
        assert_eq!(
            issues[0]["expression"][0].as_str(),
            Some(expr),
            "{ctx}: issue[0].expression; outcome: {oo}"
        );
    }
    oo
}

/// Asserts `body` is canonical: no insignificant whitespace, object keys
/// sorted by UTF-16 code units at every level, and re-canonicalising it is
/// the identity.
fn assert_canonical(body: &str, ctx: &str) {
    fn walk(j: &canonical::Json, ctx: &str) {
        match &j.value {
            canonical::Value::Object(ms) => {
                for w in ms.windows(2) {
                    assert_eq!(
                        jcs_key_order(&w[0].key, &w[1].key),
                        std::cmp::Ordering::Less,
                        "{ctx}: keys {:?} and {:?} are out of order",
                        w[0].key,
                        w[1].key
                    );
                }
                for m in ms {
                    walk(&m.value, ctx);
                }
            }
            canonical::Value::Array(items) => items.iter().for_each(|i| walk(i, ctx)),
            _ => {}
        }
    }
    let parsed = canonical::parse(body.as_bytes()).expect("stored body parses");
    walk(&parsed, ctx);
    let again = canonical::canonicalize(body.as_bytes()).expect("canonicalize");
    assert_eq!(
        String::from_utf8(again).unwrap(),
        body,
        "{ctx}: body is not a fixed point of canonicalisation"
    );
}

/// Recomputes the chain over `entries` (sorted by seq, starting at seq 1)
/// from the bodies alone and compares it with the X-Vellum-Chain-Hash headers.
fn assert_chain(entries: &[Created], ctx: &str) {
    let mut prev = hash::GENESIS;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "{ctx}: seqs are gapless from 1");
        let link = hash::chain_hash(&prev, e.seq as u64, &hash::body_sha256(e.body.as_bytes()));
        assert_eq!(
            e.chain_hash,
            hex::encode(link),
            "{ctx}: X-Vellum-Chain-Hash of seq {} is chain_hash(prev, seq, sha256(body))",
            e.seq
        );
        prev = link;
    }
}

fn settings_with(db_url: &str, f: impl FnOnce(&mut RawSettings)) -> Settings {
    let mut raw = vellum_testkit::raw_settings_for(db_url);
    f(&mut raw);
    Settings::validate(raw).expect("valid settings")
}

/// A small, valid AuditEvent as compact JSON text.
fn minimal_event_text() -> String {
    r#"{"resourceType":"AuditEvent","type":{"code":"110100"},"recorded":"2026-03-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"pacs"}}}"#.to_string()
}

// ---------------------------------------------------------------------------
// create

backend_tests! {
    async fn create_answers_201_with_location_etag_last_modified_and_receipt_headers(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let before = SystemTime::now() - Duration::from_secs(2);
        let c = create(&app, &sample_event(1)).await;
        let after = SystemTime::now() + Duration::from_secs(2);

        // id: UUID v4, lowercase.
        let uuid = uuid::Uuid::parse_str(&c.id).expect("id is a UUID");
        assert_eq!(uuid.get_version_num(), 4, "{ctx}: UUID version");
        assert_eq!(c.id, c.id.to_ascii_lowercase(), "{ctx}: lowercase id");
        assert_eq!(
            c.id,
            uuid.hyphenated().to_string(),
            "{ctx}: hyphenated form"
        );

        assert_eq!(
            c.location,
            format!("{}/fhir/AuditEvent/{}/_history/1", app.base, c.id),
            "{ctx}: Location"
        );
        assert_eq!(c.etag, "W/\"1\"", "{ctx}: ETag");
        assert!(
            c.content_type.starts_with(FHIR_JSON),
            "{ctx}: {}",
            c.content_type
        );
        assert_eq!(c.seq, 1, "{ctx}: first entry is seq 1");
        assert_eq!(c.chain_hash.len(), 64, "{ctx}: chain hash is 32 bytes hex");
        assert!(
            c.chain_hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{ctx}: lowercase hex chain hash"
        );

        // meta.versionId "1", meta.lastUpdated = commit time, UTC, microseconds.
        let v: Value = serde_json::from_str(&c.body).unwrap();
        assert_eq!(v["resourceType"], "AuditEvent");
        assert_eq!(v["meta"]["versionId"], "1", "{ctx}");
        let lu = v["meta"]["lastUpdated"].as_str().expect("lastUpdated");
        assert_eq!(lu.len(), 27, "{ctx}: YYYY-MM-DDThh:mm:ss.ffffffZ: {lu}");
        assert!(lu.ends_with('Z'), "{ctx}: UTC: {lu}");
        assert_eq!(&lu[19..20], ".", "{ctx}: microseconds: {lu}");
        let lu_t = vellum::ledger::parse_stamp(lu).expect("lastUpdated is RFC 3339");
        let lu_sys: SystemTime = lu_t.into();
        assert!(
            before <= lu_sys && lu_sys <= after,
            "{ctx}: lastUpdated {lu} is now"
        );

        // Last-Modified is an HTTP date equal to lastUpdated, to the second.
        let lm = httpdate::parse_http_date(&c.last_modified)
            .unwrap_or_else(|e| panic!("{ctx}: Last-Modified {:?}: {e}", c.last_modified));
        let lm_secs = lm.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert_eq!(
            lm_secs,
            lu_t.unix_timestamp(),
            "{ctx}: Last-Modified = lastUpdated"
        );

        // The client's content is kept.
        let sent = sample_event(1);
        assert_eq!(v["agent"], sent["agent"], "{ctx}");
        assert_eq!(v["entity"], sent["entity"], "{ctx}");
        assert_eq!(v["recorded"], sent["recorded"], "{ctx}");
    }
}

backend_tests! {
    async fn server_assigns_id_and_version_over_client_values_and_keeps_client_meta(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let mut ev = sample_event(2);
        ev["id"] = json!("client-chosen-id");
        ev["meta"] = json!({
            "versionId": "7",
            "lastUpdated": "2001-01-01T00:00:00Z",
            // Not a vellum profile: those are validated (tests/fhir/profiles.rs).
            "profile": ["http://example.org/fhir/StructureDefinition/site-audit"],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST"}]
        });
        let c = create(&app, &ev).await;
        let v: Value = serde_json::from_str(&c.body).unwrap();
        assert_ne!(c.id, "client-chosen-id", "{ctx}");
        assert_eq!(v["meta"]["versionId"], "1", "{ctx}");
        assert_ne!(v["meta"]["lastUpdated"], "2001-01-01T00:00:00Z", "{ctx}");
        assert_eq!(v["meta"]["profile"], ev["meta"]["profile"], "{ctx}");
        assert_eq!(v["meta"]["security"], ev["meta"]["security"], "{ctx}");
        // The client id is unknown; the server id reads back.
        let r = get(&app, "/fhir/AuditEvent/client-chosen-id").await;
        expect_outcome(r, 404, None, &ctx).await;
        assert_eq!(
            get(&app, &format!("/fhir/AuditEvent/{}", c.id))
                .await
                .status(),
            200,
            "{ctx}"
        );
    }
}

backend_tests! {
    async fn stored_body_is_canonical_json_with_sorted_keys_and_number_text_preserved(backend) {
        // Keys out of order, insignificant whitespace, escapes that JCS writes
        // differently, and numbers whose text must survive byte for byte.
        let src = r#"{
          "source" : { "observer" : { "display" : "pacs" } },
          "resourceType" : "AuditEvent",
          "type" : { "system" : "http://dicom.nema.org/resources/ontology/DCM", "code" : "110112" },
          "recorded" : "2026-03-14T09:26:53.589+01:00",
          "extension" : [
            { "valueDecimal" : 0.940, "url" : "https://vellum-audit.org/fhir/StructureDefinition/confidence" },
            { "valueDecimal" : -0.0100, "url" : "https://vellum-audit.org/fhir/StructureDefinition/delta" },
            { "valueInteger" : 12, "url" : "http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances" }
          ],
          "agent" : [ { "who" : { "display" : "Dr. \u00c4rztin \"Q\" \/ M\u00fcller\ttab" }, "requestor" : true } ]
        }"#;
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let c = expect_created(
            post_raw(&app, Some(FHIR_JSON), src.as_bytes().to_vec()).await,
            &ctx,
        )
        .await;
        let v: Value = serde_json::from_str(&c.body).unwrap();
        let lu = v["meta"]["lastUpdated"].as_str().unwrap();
        let expected = format!(
            concat!(
                r#"{{"agent":[{{"requestor":true,"who":{{"display":"Dr. Ärztin \"Q\" / Müller\ttab"}}}}],"#,
                r#""extension":[{{"url":"https://vellum-audit.org/fhir/StructureDefinition/confidence","valueDecimal":0.940}},"#,
                r#"{{"url":"https://vellum-audit.org/fhir/StructureDefinition/delta","valueDecimal":-0.0100}},"#,
                r#"{{"url":"http://hl7.org/fhir/StructureDefinition/auditevent-NumberOfInstances","valueInteger":12}}],"#,
                r#""id":"{id}","meta":{{"lastUpdated":"{lu}","#,
                r#""tag":[{{"code":"dev-token","system":"https://vellum-audit.org/fhir/CodeSystem/submitter"}}],"versionId":"1"}},"#,
                r#""recorded":"2026-03-14T09:26:53.589+01:00","resourceType":"AuditEvent","#,
                r#""source":{{"observer":{{"display":"pacs"}}}},"#,
                r#""type":{{"code":"110112","system":"http://dicom.nema.org/resources/ontology/DCM"}}}}"#
            ),
            id = c.id,
            lu = lu
        );
        assert_eq!(c.body, expected, "{ctx}: exact canonical bytes");
        assert_canonical(&c.body, &ctx);
        assert!(
            c.body.contains(r#""valueDecimal":0.940"#),
            "{ctx}: 0.940 kept"
        );
        // And the read returns those very bytes.
        let r = get(&app, &format!("/fhir/AuditEvent/{}", c.id)).await;
        assert_eq!(r.text().await.unwrap(), expected, "{ctx}: read");
    }
}

backend_tests! {
    async fn receipt_chain_hash_links_each_body_to_the_previous_entry(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let mut entries = Vec::new();
        for n in 0..6 {
            let c = create(&app, &sample_event(n)).await;
            assert_canonical(&c.body, &ctx);
            entries.push(c);
        }
        assert_chain(&entries, &ctx);
        let ids: HashSet<_> = entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), entries.len(), "{ctx}: ids are unique");

        // /admin/verify agrees with the receipts.
        let r = get(&app, "/admin/verify").await;
        assert_eq!(r.status(), 200, "{ctx}");
        let verdict: Value = r.json().await.unwrap();
        assert_eq!(verdict["entries"], 6, "{ctx}: {verdict}");
        assert_eq!(
            verdict["head_chain_hash"].as_str(),
            Some(entries[5].chain_hash.as_str()),
            "{ctx}: {verdict}"
        );
        assert!(verdict["problem"].is_null(), "{ctx}: {verdict}");
        let (code, v) = run_verify(&db.url);
        assert_eq!(code, 0, "{ctx}: {v}");
        assert_eq!(v["entries"], 6, "{ctx}: {v}");
    }
}

backend_tests! {
    async fn two_hundred_concurrent_creates_get_unique_ids_and_gapless_seqs_and_verify(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let mut tasks = Vec::new();
        for n in 0..200u64 {
            let client = app.client.clone();
            let url = format!("{}/fhir/AuditEvent", app.base);
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("Content-Type", FHIR_JSON)
                    .body(sample_event(n).to_string())
                    .send()
                    .await
                    .expect("request sent");
                expect_created(r, &format!("concurrent #{n}")).await
            }));
        }
        let mut entries = Vec::new();
        for t in tasks {
            entries.push(t.await.expect("task did not panic"));
        }
        entries.sort_by_key(|e| e.seq);
        let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "{ctx}: seqs 1..=200");
        let ids: HashSet<_> = entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 200, "{ctx}: unique ids");
        assert_chain(&entries, &ctx);

        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{ctx}: {verdict}");
        assert_eq!(verdict["entries"], 200, "{ctx}: {verdict}");
        assert_eq!(
            verdict["head_chain_hash"].as_str(),
            Some(entries[199].chain_hash.as_str()),
            "{ctx}"
        );
        // A read of any of them returns its create body and receipt.
        for e in [&entries[0], &entries[99], &entries[199]] {
            let r = get(&app, &format!("/fhir/AuditEvent/{}", e.id)).await;
            assert_eq!(header(&r, "x-vellum-seq"), Some(e.seq.to_string()), "{ctx}");
            assert_eq!(r.text().await.unwrap(), e.body, "{ctx}");
        }
    }
}

// ---------------------------------------------------------------------------
// read / vread

backend_tests! {
    async fn read_and_vread_return_the_exact_created_bytes_and_the_same_headers(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let first = create(&app, &sample_event(10)).await;
        let c = create(&app, &sample_event(11)).await;
        assert_ne!(first.id, c.id);
        for path in [
            format!("/fhir/AuditEvent/{}", c.id),
            format!("/fhir/AuditEvent/{}/_history/1", c.id),
        ] {
            let r = get(&app, &path).await;
            assert_eq!(r.status(), 200, "{ctx} {path}");
            assert_eq!(
                header(&r, "etag").as_deref(),
                Some("W/\"1\""),
                "{ctx} {path}"
            );
            assert_eq!(header(&r, "x-vellum-seq"), Some("2".into()), "{ctx} {path}");
            assert_eq!(
                header(&r, "x-vellum-chain-hash"),
                Some(c.chain_hash.clone()),
                "{ctx} {path}"
            );
            assert_eq!(
                header(&r, "last-modified"),
                Some(c.last_modified.clone()),
                "{ctx} {path}"
            );
            let ct = header(&r, "content-type").unwrap_or_default();
            assert!(ct.starts_with(FHIR_JSON), "{ctx} {path}: {ct}");
            let bytes = r.bytes().await.unwrap();
            assert_eq!(&bytes[..], c.body.as_bytes(), "{ctx} {path}: exact bytes");
        }
        // The Location header is itself readable.
        let r = app.client.get(&c.location).send().await.unwrap();
        assert_eq!(r.status(), 200, "{ctx}: GET Location");
        assert_eq!(r.text().await.unwrap(), c.body, "{ctx}: GET Location");
    }
}

backend_tests! {
    async fn unknown_ids_versions_and_routes_are_404_operation_outcomes(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let c = create(&app, &sample_event(1)).await;
        let unknown = uuid::Uuid::new_v4();
        for path in [
            format!("/fhir/AuditEvent/{unknown}"),
            format!("/fhir/AuditEvent/{unknown}/_history/1"),
            format!("/fhir/AuditEvent/{}/_history/2", c.id),
            format!("/fhir/AuditEvent/{}", c.id.to_uppercase()),
            "/fhir/AuditEvent/not_a_valid%20id!".to_string(),
            format!("/fhir/AuditEvent/{}", "a".repeat(65)),
            "/fhir/Patient/1".to_string(),
        ] {
            let oo =
                expect_outcome(get(&app, &path).await, 404, None, &format!("{ctx} {path}")).await;
            let code = oo["issue"][0]["code"].as_str().unwrap();
            assert!(
                matches!(code, "not-found" | "not-supported"),
                "{ctx} {path}: {oo}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// insert-only at the REST layer

backend_tests! {
    async fn put_patch_and_delete_are_405_operation_outcomes_with_allow_and_change_nothing(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let c = create(&app, &sample_event(1)).await;
        let mut replacement: Value = serde_json::from_str(&c.body).unwrap();
        replacement["outcome"] = json!("8");
        let instance = format!("{}/fhir/AuditEvent/{}", app.base, c.id);
        let version = format!("{instance}/_history/1");
        let type_url = format!("{}/fhir/AuditEvent", app.base);
        let cases: Vec<MethodCase> = vec![
            (
                reqwest::Method::PUT,
                &instance,
                "GET",
                Some((FHIR_JSON, replacement.to_string())),
            ),
            (
                reqwest::Method::PATCH,
                &instance,
                "GET",
                Some((
                    "application/json-patch+json",
                    r#"[{"op":"replace","path":"/outcome","value":"8"}]"#.into(),
                )),
            ),
            (reqwest::Method::DELETE, &instance, "GET", None),
            (
                reqwest::Method::PUT,
                &version,
                "GET",
                Some((FHIR_JSON, replacement.to_string())),
            ),
            (reqwest::Method::DELETE, &version, "GET", None),
            // Conditional update / delete on the type.
            (
                reqwest::Method::PUT,
                &type_url,
                "POST",
                Some((FHIR_JSON, replacement.to_string())),
            ),
            (reqwest::Method::DELETE, &type_url, "POST", None),
        ];
        for (method, url, allowed, body) in cases {
            let what = format!("{ctx}: {method} {url}");
            let mut req = app.client.request(method.clone(), url);
            if let Some((ct, b)) = body {
                req = req.header("Content-Type", ct).body(b);
            }
            let r = req.send().await.unwrap();
            let allow = header(&r, "allow").unwrap_or_else(|| panic!("{what}: no Allow header"));
            let allow_list: Vec<&str> = allow.split(',').map(str::trim).collect();
            assert!(allow_list.contains(&allowed), "{what}: Allow: {allow}");
            for forbidden in ["PUT", "PATCH", "DELETE"] {
                assert!(!allow_list.contains(&forbidden), "{what}: Allow: {allow}");
            }
            let oo = expect_outcome(r, 405, None, &what).await;
            assert_eq!(oo["issue"][0]["code"], "not-supported", "{what}: {oo}");
        }
        // Nothing changed.
        let r = get(&app, &format!("/fhir/AuditEvent/{}", c.id)).await;
        assert_eq!(r.status(), 200, "{ctx}");
        assert_eq!(r.text().await.unwrap(), c.body, "{ctx}: unchanged");
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{ctx}: {verdict}");
        assert_eq!(verdict["entries"], 1, "{ctx}: nothing appended: {verdict}");
    }
}

// ---------------------------------------------------------------------------
// rejections

backend_tests! {
    async fn unacceptable_json_is_400_operation_outcome_and_nothing_is_stored(backend) {
        let ok = minimal_event_text();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not JSON", b"this is not json".to_vec()),
            ("empty body", Vec::new()),
            ("truncated", ok.as_bytes()[..ok.len() - 5].to_vec()),
            ("trailing garbage", format!("{ok} x").into_bytes()),
            ("two documents", format!("{ok}{ok}").into_bytes()),
            (
                "duplicate key",
                ok.replacen(
                    r#""recorded""#,
                    r#""outcome":"0","outcome":"4","recorded""#,
                    1,
                )
                .into_bytes(),
            ),
            (
                "duplicate resourceType",
                ok.replacen("{", r#"{"resourceType":"AuditEvent","#, 1)
                    .into_bytes(),
            ),
            (
                "lone high surrogate",
                ok.replacen(r#""pacs""#, r#""pa\ud800cs""#, 1).into_bytes(),
            ),
            (
                "lone low surrogate",
                ok.replacen(r#""pacs""#, r#""pa\udc00cs""#, 1).into_bytes(),
            ),
            (
                "NaN",
                ok.replacen(
                    r#""agent""#,
                    r#""extension":[{"url":"http://x/y","valueDecimal":NaN}],"agent""#,
                    1,
                )
                .into_bytes(),
            ),
            (
                "Infinity",
                ok.replacen(
                    r#""agent""#,
                    r#""extension":[{"url":"http://x/y","valueDecimal":-Infinity}],"agent""#,
                    1,
                )
                .into_bytes(),
            ),
            ("invalid UTF-8", {
                let mut b = ok.clone().into_bytes();
                let at = ok.find("pacs").unwrap();
                b[at] = 0xff;
                b
            }),
            (
                "raw control character",
                ok.replacen("pacs", "pa\u{1}cs", 1).into_bytes(),
            ),
            ("array root", format!("[{ok}]").into_bytes()),
            ("string root", br#""AuditEvent""#.to_vec()),
            (
                "missing resourceType",
                ok.replacen(r#""resourceType":"AuditEvent","#, "", 1)
                    .into_bytes(),
            ),
        ];
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        for (name, body) in &cases {
            let ctx = format!("{backend:?}: {name}");
            let r = post_raw(&app, Some(FHIR_JSON), body.clone()).await;
            expect_outcome(r, 400, None, &ctx).await;
        }
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{backend:?}: {verdict}");
        assert_eq!(
            verdict["entries"], 0,
            "{backend:?}: nothing stored: {verdict}"
        );
    }
}

#[tokio::test]
async fn wrong_resource_type_is_400_naming_resource_type() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    for rt in ["Patient", "Provenance", "auditevent"] {
        let mut ev = sample_event(1);
        ev["resourceType"] = json!(rt);
        let oo = expect_outcome(app.post_event(&ev).await, 400, Some("resourceType"), rt).await;
        let diag = oo["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(diag.contains(rt), "{rt}: diagnostics name the type: {oo}");
    }
    let mut ev = sample_event(1);
    ev["resourceType"] = json!(7);
    expect_outcome(app.post_event(&ev).await, 400, None, "numeric resourceType").await;
}

#[tokio::test]
async fn unknown_elements_are_400_with_their_fhirpath() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let cases: Vec<MutationCase> = vec![
        (
            "top level",
            Box::new(|e| e["severity"] = json!("high")),
            "AuditEvent.severity",
        ),
        (
            "in agent[1]",
            Box::new(|e| e["agent"][1]["colour"] = json!("red")),
            "AuditEvent.agent[1].colour",
        ),
        (
            "in agent[0].who",
            Box::new(|e| e["agent"][0]["who"]["nickname"] = json!("rad")),
            "AuditEvent.agent[0].who.nickname",
        ),
        (
            "in entity[0].detail[0]",
            Box::new(|e| e["entity"][0]["detail"][0]["valueDecimal"] = json!(1)),
            "AuditEvent.entity[0].detail[0].valueDecimal",
        ),
        (
            "in source",
            Box::new(|e| e["source"]["observerName"] = json!("x")),
            "AuditEvent.source.observerName",
        ),
    ];
    for (name, mutate, expr) in cases {
        let mut ev = sample_event(3);
        mutate(&mut ev);
        let oo = expect_outcome(app.post_event(&ev).await, 400, Some(expr), name).await;
        let leaf = expr.rsplit('.').next().unwrap();
        assert!(
            oo["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or_default()
                .contains(leaf),
            "{name}: diagnostics name {leaf}: {oo}"
        );
    }
}

#[tokio::test]
async fn wrong_json_types_are_400_with_their_fhirpath() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let cases: Vec<MutationCase> = vec![
        (
            "boolean as string",
            Box::new(|e| e["agent"][0]["requestor"] = json!("yes")),
            "AuditEvent.agent[0].requestor",
        ),
        (
            "instant as number",
            Box::new(|e| e["recorded"] = json!(20260314)),
            "AuditEvent.recorded",
        ),
        (
            "code as number",
            Box::new(|e| e["outcome"] = json!(0)),
            "AuditEvent.outcome",
        ),
        (
            "reference as number",
            Box::new(|e| e["entity"][1]["what"]["reference"] = json!(42)),
            "AuditEvent.entity[1].what.reference",
        ),
        (
            "Coding as string",
            Box::new(|e| e["type"] = json!("rest")),
            "AuditEvent.type",
        ),
    ];
    for (name, mutate, expr) in cases {
        let mut ev = sample_event(5);
        mutate(&mut ev);
        expect_outcome(app.post_event(&ev).await, 400, Some(expr), name).await;
    }
}

backend_tests! {
    async fn rule_violations_are_422_with_the_fhirpath_of_the_element(backend) {
        let cases: Vec<MutationCase> = vec![
            (
                "action outside audit-event-action",
                Box::new(|e| e["action"] = json!("X")),
                "AuditEvent.action",
            ),
            (
                "outcome outside audit-event-outcome",
                Box::new(|e| e["outcome"] = json!("1")),
                "AuditEvent.outcome",
            ),
            (
                "recorded without time",
                Box::new(|e| e["recorded"] = json!("2026-03-14")),
                "AuditEvent.recorded",
            ),
            (
                "recorded without zone",
                Box::new(|e| e["recorded"] = json!("2026-03-14T09:26:53")),
                "AuditEvent.recorded",
            ),
            (
                "recorded on an impossible day",
                Box::new(|e| e["recorded"] = json!("2026-02-29T09:26:53Z")),
                "AuditEvent.recorded",
            ),
            (
                "agent empty",
                Box::new(|e| e["agent"] = json!([])),
                "AuditEvent.agent",
            ),
            (
                "network type outside network-type",
                Box::new(|e| e["agent"][1]["network"]["type"] = json!("6")),
                "AuditEvent.agent[1].network.type",
            ),
            (
                "sev-1: entity with name and query",
                Box::new(|e| {
                    e["entity"][1]["name"] = json!("chart");
                    e["entity"][1]["query"] = json!("eA==");
                }),
                "AuditEvent.entity[1]",
            ),
            (
                "query not base64",
                Box::new(|e| e["entity"][0]["query"] = json!("not base64!")),
                "AuditEvent.entity[0].query",
            ),
            (
                "agent.requestor missing",
                Box::new(|e| {
                    e["agent"][1].as_object_mut().unwrap().remove("requestor");
                }),
                "AuditEvent.agent[1].requestor",
            ),
            (
                "recorded missing",
                Box::new(|e| {
                    e.as_object_mut().unwrap().remove("recorded");
                }),
                "AuditEvent.recorded",
            ),
            (
                "source.observer missing",
                Box::new(|e| {
                    e["source"].as_object_mut().unwrap().remove("observer");
                }),
                "AuditEvent.source.observer",
            ),
            (
                "extension.url missing",
                Box::new(|e| e["entity"][1]["extension"] = json!([{"valueString": "x"}])),
                "AuditEvent.entity[1].extension[0].url",
            ),
            (
                "entity.detail.type missing",
                Box::new(|e| e["entity"][0]["detail"] = json!([{"valueString": "x"}])),
                "AuditEvent.entity[0].detail[0].type",
            ),
            (
                "period.start not a dateTime",
                Box::new(|e| e["period"] = json!({"start": "14/03/2026"})),
                "AuditEvent.period.start",
            ),
        ];
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        for (name, mutate, expr) in &cases {
            let mut ev = sample_event(4);
            mutate(&mut ev);
            let ctx = format!("{backend:?}: {name}");
            expect_outcome(app.post_event(&ev).await, 422, Some(expr), &ctx).await;
        }
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{backend:?}: {verdict}");
        assert_eq!(
            verdict["entries"], 0,
            "{backend:?}: nothing stored: {verdict}"
        );
    }
}

#[tokio::test]
async fn body_over_the_default_one_mebibyte_limit_is_413_and_a_body_at_the_limit_is_accepted() {
    const LIMIT: usize = 1024 * 1024;
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let ok = minimal_event_text();
    // Valid JSON padded with insignificant whitespace to exact sizes.
    let padded = |size: usize| {
        let mut s = ok.clone().into_bytes();
        s.resize(size, b' ');
        s
    };
    let r = post_raw(&app, Some(FHIR_JSON), padded(LIMIT + 1)).await;
    let oo = expect_outcome(r, 413, None, "limit + 1").await;
    assert_eq!(oo["issue"][0]["code"], "too-long", "{oo}");
    let r = post_raw(&app, Some(FHIR_JSON), padded(4 * LIMIT)).await;
    expect_outcome(r, 413, None, "4 × limit").await;
    let c = expect_created(
        post_raw(&app, Some(FHIR_JSON), padded(LIMIT)).await,
        "exactly the limit",
    )
    .await;
    assert!(c.body.len() < 1024, "whitespace is not stored");
    assert_eq!(c.seq, 1);
}

/// Sends a chunked POST (no Content-Length) over a raw socket; returns the
/// status code and the response text.
async fn post_chunked(base: &str, body: &[u8], chunk: usize) -> (u16, String) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = vellum_testkit::dev_auth();
    let mut req = format!(
        "POST /fhir/AuditEvent HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: {FHIR_JSON}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in body.chunks(chunk) {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer (and close) before reading everything.
    let _ = s.write_all(&req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

#[tokio::test]
async fn configured_max_body_bytes_also_limits_chunked_bodies() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app_with(settings_with(&db.url, |r| r.max_body_bytes = 4096)).await;
    let ok = minimal_event_text();
    let mut big = ok.clone().into_bytes();
    big.resize(8192, b' ');
    let (status, text) = post_chunked(&app.base, &big, 1000).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("OperationOutcome"), "{text}");
    // Content-Length path with the configured limit.
    let r = post_raw(&app, Some(FHIR_JSON), big.clone()).await;
    expect_outcome(r, 413, None, "content-length over configured limit").await;
    // Under the limit, chunked, is fine.
    let (status, text) = post_chunked(&app.base, ok.as_bytes(), 50).await;
    assert_eq!(status, 201, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-vellum-seq: 1"),
        "{text}"
    );
}

#[tokio::test]
async fn unsupported_content_type_is_415_and_json_media_types_are_accepted() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let ok = minimal_event_text().into_bytes();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
    ] {
        let r = post_raw(&app, Some(ct), ok.clone()).await;
        let oo = expect_outcome(r, 415, None, ct).await;
        assert_eq!(oo["issue"][0]["code"], "not-supported", "{ct}: {oo}");
    }
    let mut seq = 0;
    for ct in [
        "application/fhir+json",
        "application/fhir+json; charset=utf-8",
        "application/json",
        "Application/FHIR+JSON;fhirVersion=4.0",
    ] {
        let c = expect_created(post_raw(&app, Some(ct), ok.clone()).await, ct).await;
        seq += 1;
        assert_eq!(c.seq, seq, "{ct}");
    }
}

// ---------------------------------------------------------------------------
// metadata and admin

#[tokio::test]
async fn metadata_returns_a_capability_statement_for_audit_event() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db.url).await;
    let r = get(&app, "/fhir/metadata").await;
    assert_eq!(r.status(), 200);
    let ct = header(&r, "content-type").unwrap_or_default();
    assert!(ct.starts_with(FHIR_JSON), "{ct}");
    let cs: Value = r.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement", "{cs}");
    assert_eq!(cs["fhirVersion"], "4.0.1", "{cs}");
    assert_eq!(cs["kind"], "instance", "{cs}");
    assert!(cs["status"].is_string(), "{cs}");
    assert!(
        vellum::fhir::validate::is_date_time(cs["date"].as_str().unwrap_or_default()),
        "date is a FHIR dateTime: {cs}"
    );
    let formats: Vec<&str> = cs["format"]
        .as_array()
        .expect("format")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        formats.contains(&"application/fhir+json") || formats.contains(&"json"),
        "{cs}"
    );
    let rest = &cs["rest"][0];
    assert_eq!(rest["mode"], "server", "{cs}");
    let ae = rest["resource"]
        .as_array()
        .expect("rest.resource")
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .expect("AuditEvent in rest.resource");
    let interactions: Vec<&str> = ae["interaction"]
        .as_array()
        .expect("interaction")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    for needed in ["create", "read", "vread"] {
        assert!(interactions.contains(&needed), "{needed}: {cs}");
    }
    for refused in ["update", "patch", "delete"] {
        assert!(!interactions.contains(&refused), "{refused}: {cs}");
    }
}

backend_tests! {
    async fn admin_verify_returns_a_json_verdict(backend) {
        let ctx = format!("{backend:?}");
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let r = get(&app, "/admin/verify").await;
        assert_eq!(r.status(), 200, "{ctx}");
        let ct = header(&r, "content-type").unwrap_or_default();
        assert!(ct.starts_with("application/json"), "{ctx}: {ct}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["entries"], 0, "{ctx}: {v}");
        assert_eq!(v["head_chain_hash"], "0".repeat(64), "{ctx}: {v}");
        assert!(v["problem"].is_null(), "{ctx}: {v}");

        let mut last = None;
        for n in 0..3 {
            last = Some(create(&app, &sample_event(n)).await);
        }
        let v: Value = get(&app, "/admin/verify").await.json().await.unwrap();
        assert_eq!(v["entries"], 3, "{ctx}: {v}");
        assert_eq!(
            v["head_chain_hash"].as_str(),
            last.as_ref().map(|c| c.chain_hash.as_str()),
            "{ctx}: {v}"
        );
        assert!(v["problem"].is_null(), "{ctx}: {v}");
    }
}

// ---------------------------------------------------------------------------
// fixtures

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/auditevents")
}

/// Expected answer per fixture: status and `issue[0].expression[0]`.
fn expected_fixture_outcomes() -> BTreeMap<&'static str, (u16, Option<&'static str>)> {
    BTreeMap::from([
        ("valid-balp-read.json", (201, None)),
        ("valid-minimal.json", (201, None)),
        ("valid-query-with-base64.json", (201, None)),
        ("valid-radiology-ai-inference.json", (201, None)),
        ("valid-radiology-ai-inference-profiled.json", (201, None)),
        ("valid-radiology-ai-override.json", (201, None)),
        ("valid-radiology-ai-rendering.json", (201, None)),
        ("valid-ai-model-deployment.json", (201, None)),
        ("valid-pixel-digest.json", (201, None)),
        ("valid-security-alert.json", (201, None)),
        (
            "invalid-security-alert-no-rule.json",
            (422, Some("AuditEvent.entity")),
        ),
        (
            "invalid-pixel-digest-no-digest.json",
            (422, Some("AuditEvent.entity[1]")),
        ),
        (
            "invalid-radiology-ai-inference-no-model-agent.json",
            (422, Some("AuditEvent.agent")),
        ),
        (
            "invalid-ai-model-deployment-version-mismatch.json",
            (422, Some("AuditEvent.entity[0]")),
        ),
        (
            "invalid-radiology-ai-inference-no-aiast.json",
            (422, Some("AuditEvent.meta.security")),
        ),
        (
            "invalid-radiology-ai-override-no-inference.json",
            (422, Some("AuditEvent.entity")),
        ),
        (
            "invalid-radiology-ai-inference-digest-type.json",
            (422, Some("AuditEvent.entity[0].detail[0].value")),
        ),
        (
            "invalid-radiology-ai-rendering-viewed.json",
            (422, Some("AuditEvent.entity[0].detail")),
        ),
        (
            "invalid-ai-model-deployment-no-training-date.json",
            (422, Some("AuditEvent.entity[0].detail")),
        ),
        (
            "invalid-unknown-vellum-profile.json",
            (422, Some("AuditEvent.meta.profile[0]")),
        ),
        (
            "invalid-radiology-ai-rendering-no-destination.json",
            (422, Some("AuditEvent.agent")),
        ),
        (
            "invalid-radiology-ai-override-action-fixed.json",
            (422, Some("AuditEvent.action")),
        ),
        (
            "invalid-radiology-ai-override-action-code.json",
            (422, Some("AuditEvent.subtype[1]")),
        ),
        (
            "invalid-radiology-ai-inference-confidence.json",
            (422, Some("AuditEvent.entity[0].detail[3].value")),
        ),
        (
            "invalid-radiology-ai-inference-study-identifier.json",
            (422, Some("AuditEvent.entity[0].what.identifier.type")),
        ),
        ("invalid-action-code.json", (422, Some("AuditEvent.action"))),
        (
            "invalid-action-wrong-json-type.json",
            (400, Some("AuditEvent.action")),
        ),
        ("invalid-agent-empty.json", (422, Some("AuditEvent.agent"))),
        (
            "invalid-agent-missing.json",
            (422, Some("AuditEvent.agent")),
        ),
        (
            "invalid-agent-requestor-missing.json",
            (422, Some("AuditEvent.agent[0].requestor")),
        ),
        (
            "invalid-detail-value-missing.json",
            (422, Some("AuditEvent.entity[0].detail[0].value[x]")),
        ),
        ("invalid-duplicate-key.json", (400, None)),
        (
            "invalid-empty-string.json",
            (422, Some("AuditEvent.source.site")),
        ),
        (
            "invalid-extension-url-missing.json",
            (422, Some("AuditEvent.entity[0].extension[1].url")),
        ),
        (
            "invalid-agent-extension-url-missing.json",
            (422, Some("AuditEvent.agent[0].extension[0].url")),
        ),
        (
            "invalid-source-observer-missing.json",
            (422, Some("AuditEvent.source.observer")),
        ),
        ("invalid-type-missing.json", (422, Some("AuditEvent.type"))),
        (
            "invalid-entity-name-and-query.json",
            (422, Some("AuditEvent.entity[0]")),
        ),
        ("invalid-lone-surrogate.json", (400, None)),
        (
            "invalid-network-type.json",
            (422, Some("AuditEvent.agent[1].network.type")),
        ),
        (
            "invalid-outcome-code.json",
            (422, Some("AuditEvent.outcome")),
        ),
        (
            "invalid-query-not-base64.json",
            (422, Some("AuditEvent.entity[0].query")),
        ),
        (
            "invalid-recorded-impossible-date.json",
            (422, Some("AuditEvent.recorded")),
        ),
        (
            "invalid-recorded-not-an-instant.json",
            (422, Some("AuditEvent.recorded")),
        ),
        ("invalid-resource-type.json", (400, Some("resourceType"))),
        (
            "invalid-source-missing.json",
            (422, Some("AuditEvent.source")),
        ),
        (
            "invalid-unknown-element.json",
            (400, Some("AuditEvent.agent[0].colour")),
        ),
        (
            "invalid-unknown-top-level-element.json",
            (400, Some("AuditEvent.severity")),
        ),
    ])
}

/// The stored resource minus what the server assigned.
fn without_server_fields(mut v: Value) -> Value {
    let obj = v.as_object_mut().unwrap();
    obj.remove("id");
    if let Some(meta) = obj.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        // The authenticated sender's tag (the test token's subject).
        if let Some(tags) = meta.get_mut("tag").and_then(Value::as_array_mut) {
            tags.retain(|t| t["system"] != "https://vellum-audit.org/fhir/CodeSystem/submitter");
            if tags.is_empty() {
                meta.remove("tag");
            }
        }
        if meta.is_empty() {
            obj.remove("meta");
        }
    }
    v
}

backend_tests! {
    async fn every_fixture_gets_its_expected_status_and_expression(backend) {
        let expected = expected_fixture_outcomes();
        let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
            .expect("fixtures/auditevents")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| (n.starts_with("valid-") || n.starts_with("invalid-")) && n.ends_with(".json"))
            .collect();
        files.sort();
        let listed: Vec<String> = expected.keys().map(|k| k.to_string()).collect();
        assert_eq!(
            files, listed,
            "every fixture has an expectation and vice versa"
        );
        assert!(files.iter().filter(|f| f.starts_with("valid-")).count() >= 3);
        assert!(files.iter().filter(|f| f.starts_with("invalid-")).count() >= 6);

        let db = TestDb::new(backend).await;
        let app = spawn_app(&db.url).await;
        let mut stored = Vec::new();
        for (name, (status, expr)) in &expected {
            let ctx = format!("{backend:?}: {name}");
            let bytes = std::fs::read(fixtures_dir().join(name)).unwrap();
            let r = post_raw(&app, Some(FHIR_JSON), bytes.clone()).await;
            if *status == 201 {
                let c = expect_created(r, &ctx).await;
                assert_canonical(&c.body, &ctx);
                let sent: Value = serde_json::from_slice(&bytes).unwrap();
                let got: Value = serde_json::from_str(&c.body).unwrap();
                assert_eq!(without_server_fields(got), sent, "{ctx}: content kept");
                let r = get(&app, &format!("/fhir/AuditEvent/{}", c.id)).await;
                assert_eq!(r.text().await.unwrap(), c.body, "{ctx}: read back");
                stored.push(c);
            } else {
                expect_outcome(r, *status, *expr, &ctx).await;
            }
        }
        assert_chain(&stored, &format!("{backend:?}"));
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{backend:?}: {verdict}");
        assert_eq!(verdict["entries"], stored.len(), "{backend:?}: {verdict}");
    }
}
