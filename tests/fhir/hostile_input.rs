//! Hostile request bodies and parameters against the real `vellum serve`
//! binary over a real socket: each is refused with a status and an
//! OperationOutcome naming the limit, the process stays up (`/readyz`), and
//! nothing is ever answered by a dropped connection.

use serde_json::Value;
use vellum_testkit::{sample_event, spawn_server_process, Backend, ServerProcess, TestDb};

const FHIR_XML: &str = "application/fhir+xml";

async fn server(db: &TestDb, env: &[(&str, &str)]) -> ServerProcess {
    let mut s = spawn_server_process(&db.url, env);
    s.wait_ready().await;
    s
}

/// The server still serves: the process is alive and `/readyz` is 200.
async fn assert_alive(s: &mut ServerProcess) {
    assert!(
        s.child.try_wait().expect("child status").is_none(),
        "vellum exited"
    );
    let r = vellum_testkit::authed_client()
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .expect("readyz answers");
    assert_eq!(r.status(), 200);
}

/// The status and OperationOutcome diagnostics of a refusal.
async fn refusal(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("an OperationOutcome");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let diagnostics = body["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .filter_map(|i| i["diagnostics"].as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    (status, diagnostics)
}

/// As [`refusal`], but a created event is fine too.
async fn refusal_or_created(r: reqwest::Response) -> (u16, String) {
    if r.status() == 201 {
        return (201, String::new());
    }
    refusal(r).await
}

async fn post(s: &ServerProcess, path: &str, ct: &str, body: Vec<u8>) -> reqwest::Response {
    vellum_testkit::authed_client()
        .post(format!("{}{path}", s.base))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .expect("an answer, not a dropped connection")
}

/// A valid AuditEvent in XML whose first agent carries `levels` nested
/// extensions; the document's depth is `levels + 3`.
fn nested_xml_event(levels: usize) -> String {
    let open = r#"<extension url="http://example.org/fhir/StructureDefinition/nest">"#;
    format!(
        r#"<AuditEvent xmlns="http://hl7.org/fhir"><type><system value="http://dicom.nema.org/resources/ontology/DCM"/><code value="110112"/></type><action value="E"/><recorded value="2026-03-14T09:26:53.589+01:00"/><outcome value="0"/><agent>{}{}<requestor value="true"/></agent><source><observer><display value="pacs-01"/></observer></source></AuditEvent>"#,
        open.repeat(levels),
        "</extension>".repeat(levels)
    )
}

/// The same as a batch Bundle entry; depth `levels + 6`.
fn nested_xml_bundle(levels: usize) -> String {
    format!(
        r#"<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource>{}</resource><request><method value="POST"/><url value="AuditEvent"/></request></entry></Bundle>"#,
        nested_xml_event(levels).replace(
            r#"<AuditEvent xmlns="http://hl7.org/fhir">"#,
            "<AuditEvent>"
        )
    )
}

#[tokio::test]
async fn deeply_nested_xml_is_refused_and_the_server_stays_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    // 800 levels (≈ 55 KB): what overflowed the converter's stack.
    let event = nested_xml_event(800);
    let (status, diag) =
        refusal(post(&s, "/fhir/AuditEvent", FHIR_XML, event.into_bytes()).await).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("xml_max_depth"), "{diag}");
    assert_alive(&mut s).await;

    let bundle = nested_xml_bundle(800);
    let (status, diag) = refusal(post(&s, "/fhir", FHIR_XML, bundle.into_bytes()).await).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("xml_max_depth"), "{diag}");
    assert_alive(&mut s).await;

    // 40,000 levels (≈ 3 MB, under the Bundle body and XML size limits): the
    // pre-scan itself has no recursion.
    let huge = nested_xml_bundle(40_000);
    assert!(huge.len() < 4 * 1024 * 1024);
    let (status, diag) = refusal(post(&s, "/fhir", FHIR_XML, huge.into_bytes()).await).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("xml_max_depth"), "{diag}");
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn xml_within_the_limits_is_still_converted() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    let r = post(
        &s,
        "/fhir/AuditEvent",
        FHIR_XML,
        nested_xml_event(5).into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    // Right at the XML limit (depth 50) the converter runs (the event may
    // still break FHIR's rules); one level more is refused unread.
    let r = post(
        &s,
        "/fhir/AuditEvent",
        FHIR_XML,
        nested_xml_event(48).into_bytes(),
    )
    .await;
    let (status, diag) = refusal_or_created(r).await;
    assert!(status == 201 || status == 422, "{status}: {diag}");
    let r = post(
        &s,
        "/fhir/AuditEvent",
        FHIR_XML,
        nested_xml_event(49).into_bytes(),
    )
    .await;
    let (status, diag) = refusal(r).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("deeper than 50 levels"), "{diag}");
    let r = post(&s, "/fhir", FHIR_XML, nested_xml_bundle(5).into_bytes()).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("batch-response");
    assert_eq!(
        body["entry"][0]["response"]["status"], "201 Created",
        "{body}"
    );
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn xml_size_limit_is_a_setting_answered_with_413() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[("VELLUM_LIMITS_XML_MAX_BYTES", "20000")]).await;
    // ≈ 31 KB: under max_body_bytes, over xml_max_bytes.
    let event = nested_xml_event(450);
    assert!(event.len() > 20_000);
    let (status, diag) =
        refusal(post(&s, "/fhir/AuditEvent", FHIR_XML, event.into_bytes()).await).await;
    assert_eq!(status, 413, "{diag}");
    assert!(diag.contains("xml_max_bytes"), "{diag}");
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn xml_that_is_not_utf8_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    let valid = nested_xml_event(1);
    // A default namespace that is not UTF-8.
    let bad_ns = valid
        .replacen("http://hl7.org/fhir", "http://hl7.org/fhir\u{1}", 1)
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect::<Vec<u8>>();
    // A prefix that is not UTF-8.
    let bad_prefix = b"<f\xfe:AuditEvent xmlns:f\xfe=\"http://hl7.org/fhir\"><f\xfe:action value=\"E\"/></f\xfe:AuditEvent>".to_vec();
    for (path, body) in [
        ("/fhir/AuditEvent", bad_ns.clone()),
        ("/fhir/AuditEvent", bad_prefix.clone()),
        ("/fhir", bad_ns),
    ] {
        let (status, diag) = refusal(post(&s, path, FHIR_XML, body).await).await;
        assert_eq!(status, 400, "{diag}");
        assert!(diag.contains("UTF-8"), "{diag}");
        assert_alive(&mut s).await;
    }
}

/// A JSON AuditEvent whose `source` object has `n` distinct extra keys (and
/// optionally one repeated).
fn event_with_keys(n: usize, duplicate: bool) -> Vec<u8> {
    let mut source = String::from(r#"{"observer":{"display":"pacs-01"}"#);
    for i in 0..n {
        source.push_str(&format!(r#","k{i:06}":1"#));
    }
    if duplicate {
        source.push_str(r#","k000000":2"#);
    }
    source.push('}');
    let mut event = sample_event(1);
    event["source"] = Value::Null;
    event
        .to_string()
        .replace(r#""source":null"#, &format!(r#""source":{source}"#))
        .into_bytes()
}

#[tokio::test]
async fn objects_with_too_many_keys_are_refused_while_healthz_answers() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    // 87,000 keys in one object (≈ 1 MiB): the body that took the old
    // duplicate check 26 s. Four at once, with /healthz asked meanwhile.
    let body = event_with_keys(87_000, false);
    assert!(body.len() < 1024 * 1024);
    let client = vellum_testkit::authed_client();
    let sends = (0..4).map(|_| {
        client
            .post(format!("{}/fhir/AuditEvent", s.base))
            .header("Content-Type", "application/fhir+json")
            .body(body.clone())
            .send()
    });
    let health = async {
        let r = client
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .expect("healthz answers");
        r.status()
    };
    let (answers, health) = tokio::join!(futures_util::future::join_all(sends), health);
    assert_eq!(health, 200);
    for r in answers {
        let (status, diag) = refusal(r.expect("an answer")).await;
        assert_eq!(status, 400, "{diag}");
        assert!(diag.contains("json_max_keys_per_object"), "{diag}");
        assert!(diag.contains("1000"), "{diag}");
    }
    // The same inside a Bundle.
    let bundle = format!(
        r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"resource":{},"request":{{"method":"POST","url":"AuditEvent"}}}}]}}"#,
        String::from_utf8(body).expect("utf-8")
    );
    let (status, diag) =
        refusal(post(&s, "/fhir", "application/fhir+json", bundle.into_bytes()).await).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("json_max_keys_per_object"), "{diag}");
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn the_key_cap_is_a_setting_and_duplicates_are_found_past_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[("VELLUM_LIMITS_JSON_MAX_KEYS_PER_OBJECT", "100000")]).await;
    // Under the raised cap the 87,000 keys are parsed (and checked for
    // duplicates in O(n log n)); the keys are then unknown R4 elements.
    let (status, diag) = refusal(
        post(
            &s,
            "/fhir/AuditEvent",
            "application/fhir+json",
            event_with_keys(87_000, false),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{diag}");
    assert!(!diag.contains("json_max_keys_per_object"), "{diag}");
    assert!(diag.contains("k000000"), "{diag}");
    // A duplicate at the very end of 87,000 keys is found.
    let (status, diag) = refusal(
        post(
            &s,
            "/fhir/AuditEvent",
            "application/fhir+json",
            event_with_keys(87_000, true),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("duplicate key \"k000000\""), "{diag}");
    // Exactly at a small cap: accepted by the parser; one more is refused.
    drop(s);
    let db = TestDb::new(Backend::Sqlite).await;
    s = server(&db, &[("VELLUM_LIMITS_JSON_MAX_KEYS_PER_OBJECT", "12")]).await;
    let ok = sample_event(2);
    let members = ok.as_object().expect("object").len();
    assert!(members <= 12);
    let r = post(
        &s,
        "/fhir/AuditEvent",
        "application/fhir+json",
        ok.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let (status, diag) = refusal(
        post(
            &s,
            "/fhir/AuditEvent",
            "application/fhir+json",
            event_with_keys(12, false),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("more than 12 members"), "{diag}");
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn a_date_with_a_multibyte_fraction_is_a_400_not_a_dropped_connection() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    let client = vellum_testkit::authed_client();
    // `date=2026-03-14T09:26:00.12345é` (é is two bytes, so byte 6 of the
    // fraction falls inside it).
    let bad = "2026-03-14T09:26:00.12345%C3%A9";
    for q in [
        format!("date={bad}"),
        format!("date={bad}Z"),
        format!("date=ge{bad}"),
    ] {
        let r = client
            .get(format!("{}/fhir/AuditEvent?{q}", s.base))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        let (status, diag) = refusal(r).await;
        assert_eq!(status, 400, "{q}: {diag}");
        assert_alive(&mut s).await;
    }
    let r = client
        .post(format!("{}/fhir/AuditEvent", s.base))
        .header("Content-Type", "application/fhir+json")
        .header("If-None-Exist", format!("date={bad}"))
        .body(sample_event(3).to_string())
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let (status, diag) = refusal(r).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("If-None-Exist"), "{diag}");
    assert_alive(&mut s).await;
}

vellum_testkit::backend_tests! {
    /// A 5,000-character index value (over PostgreSQL's B-tree entry size)
    /// is stored, fails none of the events committed with it, and is found
    /// again by an exact search.
    async fn a_very_long_index_value_fails_nothing_and_is_found(backend) {
        let db = TestDb::new(backend).await;
        let mut s = server(&db, &[]).await;
        let long: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let mut event = sample_event(1);
        event["agent"][0]["altId"] = Value::String(long.clone());
        let client = vellum_testkit::authed_client();
        let post_event = |body: String| {
            let client = client.clone();
            let url = format!("{}/fhir/AuditEvent", s.base);
            async move {
                client
                    .post(url)
                    .header("Content-Type", "application/fhir+json")
                    .body(body)
                    .send()
                    .await
                    .expect("an answer")
                    .status()
                    .as_u16()
            }
        };
        // The long one among ordinary neighbours, so they share batches.
        let mut bodies = vec![event.to_string()];
        bodies.extend((2..40).map(|n| sample_event(n).to_string()));
        let statuses = futures_util::future::join_all(bodies.into_iter().map(post_event)).await;
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
        let r = client
            .get(format!("{}/fhir/AuditEvent?altid={long}&_summary=count", s.base))
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 200);
        let bundle: Value = r.json().await.expect("a Bundle");
        assert_eq!(bundle["total"], 1, "{bundle}");
        // A value equal up to the kept prefix but different after it does
        // not match.
        let other = format!("{}z", &long[..4999]);
        let r = client
            .get(format!("{}/fhir/AuditEvent?altid={other}&_summary=count", s.base))
            .send()
            .await
            .expect("an answer");
        let bundle: Value = r.json().await.expect("a Bundle");
        assert_eq!(bundle["total"], 0, "{bundle}");
        assert_alive(&mut s).await;
        let (code, verdict) = vellum_testkit::run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
    }
}

#[tokio::test]
async fn bundles_and_searches_above_their_limits_are_refused_naming_the_setting() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(
        &db,
        &[
            ("VELLUM_LIMITS_BUNDLE_MAX_ENTRIES", "5"),
            ("VELLUM_LIMITS_SEARCH_MAX_PARAMS", "4"),
            ("VELLUM_LIMITS_SEARCH_MAX_VALUES", "3"),
        ],
    )
    .await;
    let entry = serde_json::json!({
        "resource": sample_event(1),
        "request": {"method": "POST", "url": "AuditEvent"}
    });
    let bundle = |n: usize| {
        serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": vec![entry.clone(); n]})
            .to_string()
            .into_bytes()
    };
    let (status, diag) = refusal(post(&s, "/fhir", "application/fhir+json", bundle(6)).await).await;
    assert_eq!(status, 413, "{diag}");
    assert!(diag.contains("limits.bundle_max_entries"), "{diag}");
    let r = post(&s, "/fhir", "application/fhir+json", bundle(5)).await;
    assert_eq!(r.status(), 200);
    let response: Value = r.json().await.expect("a batch-response");
    assert_eq!(response["entry"].as_array().map(Vec::len), Some(5));
    assert!(response["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["response"]["status"] == "201 Created"));

    let client = vellum_testkit::authed_client();
    let search = |q: String| {
        let client = client.clone();
        let url = format!("{}/fhir/AuditEvent?{q}", s.base);
        async move { client.get(url).send().await.expect("an answer") }
    };
    let (status, diag) =
        refusal(search("action=E&action=R&action=C&action=U&action=D".into()).await).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("limits.search_max_params"), "{diag}");
    let (status, diag) = refusal(search("action=E,R,C,U".into()).await).await;
    assert_eq!(status, 400, "{diag}");
    assert!(diag.contains("limits.search_max_values"), "{diag}");
    assert_eq!(search("action=E,R,C".into()).await.status(), 200);
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn location_never_comes_from_the_host_header() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    let r = vellum_testkit::authed_client()
        .post(format!("{}/fhir/AuditEvent", s.base))
        .header("Content-Type", "application/fhir+json")
        .header("Host", "attacker.example")
        .header("Forwarded", "host=attacker.example;proto=https")
        .header("X-Forwarded-Host", "attacker.example")
        .body(sample_event(1).to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    assert!(!location.contains("attacker"), "{location}");
    assert!(
        location.starts_with(&format!("{}/fhir/AuditEvent/", s.base)),
        "{location} vs {}",
        s.base
    );
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn out_of_range_time_components_are_a_400() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    for bad in [
        "2026-03-14T24:00:00Z",
        "2026-03-14T09:60:00Z",
        "2026-03-14T09:26:61Z",
    ] {
        let r = vellum_testkit::authed_client()
            .get(format!("{}/fhir/AuditEvent?date={bad}", s.base))
            .send()
            .await
            .expect("an answer");
        let (status, diag) = refusal(r).await;
        assert_eq!(status, 400, "{bad}: {diag}");
    }
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn control_characters_and_unsafe_narratives_are_refused_with_their_path() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[]).await;
    let json = "application/fhir+json";
    let mut nul = sample_event(1);
    nul["source"]["site"] = Value::String("Radiology\u{0}".into());
    let r = post(&s, "/fhir/AuditEvent", json, nul.to_string().into_bytes()).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.expect("an OperationOutcome");
    assert_eq!(
        body["issue"][0]["expression"][0], "AuditEvent.source.site",
        "{body}"
    );
    for div in [
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>"#,
        r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed &amp bare</div>"#,
    ] {
        let mut e = sample_event(2);
        e["text"] = serde_json::json!({"status": "generated", "div": div});
        let r = post(&s, "/fhir/AuditEvent", json, e.to_string().into_bytes()).await;
        assert_eq!(r.status(), 422, "{div}");
        let body: Value = r.json().await.expect("an OperationOutcome");
        assert_eq!(
            body["issue"][0]["expression"][0], "AuditEvent.text.div",
            "{body}"
        );
    }
    // A plain narrative is stored and comes back inside well-formed XML.
    let mut e = sample_event(3);
    e["text"] = serde_json::json!({"status": "generated",
        "div": r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Query by <b>Dr. X</b> &amp; team</p></div>"#});
    let r = post(&s, "/fhir/AuditEvent", json, e.to_string().into_bytes()).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    let xml = vellum_testkit::authed_client()
        .get(&location)
        .header("Accept", FHIR_XML)
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("text");
    assert!(xml.contains("<b>Dr. X</b>"), "{xml}");
    assert_alive(&mut s).await;
}

#[tokio::test]
async fn a_trickling_body_gets_408_naming_the_setting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[("VELLUM_LIMITS_HTTP_BODY_TIMEOUT_MS", "500")]).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(
        b"POST /fhir/AuditEvent HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer vellum-test-dev-token-0123456789\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{\"resourceType\"",
    )
    .await
    .expect("send");
    let mut answer = Vec::new();
    // The server answers and closes; the client never sends the rest.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("limits.http_body_timeout_ms"), "{text}");
    assert_alive(&mut s).await;
}

/// Sends one keep-alive request on `conn` and returns the response head and
/// body (read up to the end of its Content-Length).
async fn request_on(conn: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.expect("read");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        if n == 0 {
            return text;
        }
    }
}

#[tokio::test]
async fn one_client_address_cannot_take_every_http_connection() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = server(&db, &[("VELLUM_LIMITS_HTTP_MAX_CONNECTIONS_PER_PEER", "4")]).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    // Four kept-alive connections, each proven open by a served request.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect().await.expect("connect");
        let head = request_on(&mut c, "/readyz").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(c);
    }
    // A fifth from the same address: 429 naming the setting, then closed.
    let mut fifth = connect().await.expect("connect");
    let answer = request_on(&mut fifth, "/readyz").await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(
        answer.contains("limits.http_max_connections_per_peer"),
        "{answer}"
    );
    assert!(answer.contains("OperationOutcome"), "{answer}");
    // The held connections still serve.
    let head = request_on(&mut held[0], "/readyz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Closing one frees its slot (released when the server sees the close).
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut c = connect().await.expect("connect");
        if request_on(&mut c, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
        {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served, "a freed slot is usable again");
    drop(held);
    assert_alive(&mut s).await;
}
