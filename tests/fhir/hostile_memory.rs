//! Memory under attack: the real `vellum serve` binary is sent batches of
//! hostile requests, four at once per kind; after each batch the server's
//! peak resident memory (VmHWM of /proc/<pid>/status) must stay under a
//! stated bound, `/readyz` must answer, and at the end `vellum verify`
//! passes with every acknowledged event present. The bound is generous
//! (docs/operations.md, "Memory bounds"): it proves the growth the issue
//! measured (hundreds of MiB to GiB per request) is gone, not a tuning.

use serde_json::{json, Value};
use vellum_testkit::dicom::deflated_instance;
use vellum_testkit::{sample_event, spawn_server_process, Backend, TestDb};

/// Peak resident memory allowed for the whole server process (debug
/// build, every batch below); docs/operations.md derives it.
const PEAK_RSS_BOUND_MIB: u64 = 768;

/// `VmRSS` and `VmHWM` (peak) of `pid`, MiB.
fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("a kB figure")
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn send_four(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> Vec<u16> {
    let sends = (0..4).map(|_| {
        client
            .post(url)
            .header("Content-Type", content_type)
            .body(body.to_vec())
            .send()
    });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| {
            r.expect("an answer, not a dropped connection")
                .status()
                .as_u16()
        })
        .collect()
}

fn keys_event(n: usize) -> Vec<u8> {
    let mut source = String::from(r#"{"observer":{"display":"pacs-01"}"#);
    for i in 0..n {
        source.push_str(&format!(r#","k{i:06}":1"#));
    }
    source.push('}');
    let mut event = sample_event(1);
    event["source"] = Value::Null;
    event
        .to_string()
        .replace(r#""source":null"#, &format!(r#""source":{source}"#))
        .into_bytes()
}

fn nested_xml_bundle(levels: usize) -> Vec<u8> {
    let open = r#"<extension url="http://example.org/nest">"#;
    format!(
        r#"<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/><entry><resource><AuditEvent><agent>{}{}</agent></AuditEvent></resource><request><method value="POST"/><url value="AuditEvent"/></request></entry></Bundle>"#,
        open.repeat(levels),
        "</extension>".repeat(levels)
    )
    .into_bytes()
}

fn batch(entries: Vec<Value>) -> Vec<u8> {
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn peak_memory_stays_bounded_under_every_kind_of_attack() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut s = spawn_server_process(&db.url, &[]);
    s.wait_ready().await;
    let pid = s.child.id();
    let client = vellum_testkit::authed_client();
    let fhir = format!("{}/fhir", s.base);
    let mut acknowledged = 0u64;
    let mut report = Vec::new();
    let (idle, _) = rss_mib(pid);
    report.push(format!("idle: {idle} MiB"));

    let mut check = |kind: &str, statuses: &[u16], want: &[u16]| {
        for st in statuses {
            assert!(want.contains(st), "{kind}: status {st}");
        }
        let (now, peak) = rss_mib(pid);
        report.push(format!("{kind}: now {now} MiB, peak {peak} MiB"));
        eprintln!("{}", report.last().map(String::as_str).unwrap_or(""));
        assert!(
            peak <= PEAK_RSS_BOUND_MIB,
            "{kind}: peak RSS {peak} MiB over {PEAK_RSS_BOUND_MIB} MiB\n{}",
            report.join("\n")
        );
    };

    // 1. JSON: 87,000 keys in one object (≈ 1 MiB).
    let st = send_four(
        &client,
        &format!("{fhir}/AuditEvent"),
        "application/fhir+json",
        &keys_event(87_000),
    )
    .await;
    check("json keys", &st, &[400]);

    // 2. XML: 40,000 nested elements in a Bundle (≈ 1.7 MB).
    let st = send_four(
        &client,
        &fhir,
        "application/fhir+xml",
        &nested_xml_bundle(40_000),
    )
    .await;
    check("xml depth", &st, &[400]);

    // 3. Search: 20,000 OR values; 1,000 parameters.
    let values: Vec<String> = (0..20_000).map(|i| format!("x{i}")).collect();
    let many_values = format!("entity-name={}", values.join(","));
    let many_params = (0..1000)
        .map(|i| format!("entity-name=x{i}"))
        .collect::<Vec<_>>()
        .join("&");
    let form = "application/x-www-form-urlencoded";
    let search = format!("{fhir}/AuditEvent/_search");
    let mut st = send_four(&client, &search, form, many_values.as_bytes()).await;
    st.extend(send_four(&client, &search, form, many_params.as_bytes()).await);
    check("search terms", &st, &[400]);

    // 4. Bundle amplification: 10,000 searches per batch (the entry cap).
    let gets = batch(vec![
        json!({"request": {"method": "GET", "url": "AuditEvent?_count=1"}});
        10_000
    ]);
    let st = send_four(&client, &fhir, "application/fhir+json", &gets).await;
    check("bundle of searches", &st, &[200]);
    // 5. A batch of 1,000 creates, four at once: every event acknowledged.
    for round in 0..4u64 {
        let entries = (0..1000)
            .map(|i| json!({"resource": sample_event(10_000 + round * 1000 + i), "request": {"method": "POST", "url": "AuditEvent"}}))
            .collect();
        let r = client
            .post(&fhir)
            .header("Content-Type", "application/fhir+json")
            .body(batch(entries))
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.expect("batch-response");
        acknowledged += answer["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["response"]["status"] == "201 Created")
            .count() as u64;
    }
    check("bundle of creates", &[200], &[200]);

    // 6. DICOM deflate bombs: three 200 MiB elements in < 1 MiB, four at once.
    let bomb = deflated_instance(3, 200 << 20);
    let st = send_four(
        &client,
        &format!("{}/dicom/digest", s.base),
        "application/dicom",
        &bomb,
    )
    .await;
    check("dicom deflate bomb", &st, &[200]);

    assert!(
        s.child.try_wait().expect("status").is_none(),
        "vellum exited"
    );
    let r = client
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    let (code, verdict) = vellum_testkit::run_verify(&db.url);
    assert_eq!(code, 0, "{verdict}");
    assert!(acknowledged > 0);
    assert_eq!(verdict["entries"].as_u64(), Some(acknowledged), "{verdict}");
    eprintln!("peak RSS per attack batch:\n{}", report.join("\n"));
}
