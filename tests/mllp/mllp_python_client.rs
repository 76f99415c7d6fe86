//! An independent client: python-hl7 (`pip install hl7`) frames, sends and
//! parses, against the real `vellum serve` binary on both backends. Checks
//! the ACK fields it reads and the stored events over the FHIR API.
//! Needs `python3` with the `hl7` package (scripts/test installs it);
//! without it the test fails on CI and skips only locally.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;
use vellum_testkit::*;

fn fixture_path(name: &str) -> String {
    format!("{}/fixtures/hl7v2/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn python_send(port: u16, files: &[&str]) -> Vec<Value> {
    let script = format!("{}/tests/mllp/mllp_send.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(&script)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files.iter().map(|f| fixture_path(f)))
        .output()
        .expect("python3 runs (install it, and `pip install hl7`)");
    assert!(
        out.status.success(),
        "python-hl7 client failed (is `pip install hl7` done?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per message"))
        .collect()
}

async fn get(base: &str, id: &str) -> Value {
    let r = vellum_testkit::authed_client()
        .get(format!("{base}/fhir/AuditEvent/{id}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200, "event {id} is readable");
    r.json().await.expect("JSON")
}

backend_tests! {
    async fn python_hl7_client_gets_acks_and_events_are_stored(backend) {
        if !tool_available("python3 with the hl7 package", python_imports("hl7.client")) {
            return;
        }
        let db = TestDb::new(backend).await;
        let mllp_port = free_port();
        let addr = format!("127.0.0.1:{mllp_port}");
        let mut server = spawn_server_process(&db.url, &[("VELLUM_MLLP_ADDR", &addr)]);
        server.wait_ready().await;

        let files = [
            "adt_a01.hl7",
            "orm_o01.hl7",
            "oru_r01_ai.hl7",
            "oru_r01_ai_correction.hl7",
            "adt_a01.hl7", // a retry: same MSH-10 from the same sender
            "invalid_no_msh.hl7",
            "invalid_missing_msh10.hl7",
            "invalid_bad_version.hl7",
        ];
        let acks = python_send(mllp_port, &files);
        assert_eq!(acks.len(), files.len());
        let by: HashMap<usize, &Value> = acks.iter().enumerate().collect();
        let s = |i: usize, k: &str| by[&i][k].as_str().unwrap_or("").to_string();

        for i in 0..5 {
            assert_eq!(s(i, "msa1"), "AA", "{backend:?} {}", by[&i]);
            assert_eq!(s(i, "msa2"), s(i, "control_id"), "MSA-2 echoes MSH-10");
            assert_eq!(s(i, "ack_sending_app"), "VELLUM");
        }
        assert_eq!(s(0, "ack_receiving_app"), "EPICADT");
        assert_eq!(s(0, "ack_type"), "ACK^A01^ACK");
        assert_eq!(s(1, "ack_version"), "2.3.1");
        // The retry names the first entry and stored nothing.
        assert_eq!(s(4, "event_id"), s(0, "event_id"));
        assert_eq!(
            (s(0, "created").as_str(), s(4, "created").as_str()),
            ("Y", "N")
        );

        let refusals = [
            (5, "AR", "MSH^1^0", "100"),
            (6, "AR", "MSH^1^10", "101"),
            (7, "AR", "MSH^1^12", "203"),
        ];
        for (i, code, loc, err) in refusals {
            assert_eq!(s(i, "msa1"), code, "{}", by[&i]);
            assert_eq!(s(i, "err2"), loc, "{}", by[&i]);
            assert!(s(i, "err3").starts_with(&format!("{err}^")), "{}", by[&i]);
            assert_eq!(s(i, "event_id"), "");
        }
        assert_eq!(s(7, "msa2"), "ADT000999");

        let receipt = get(&server.base, &s(0, "event_id")).await;
        assert_eq!(
            receipt["meta"]["profile"][0],
            "https://vellum-audit.org/fhir/StructureDefinition/hl7v2-message-receipt"
        );
        assert_eq!(receipt["subtype"][1]["code"], "A01");
        let order = get(&server.base, &s(1, "event_id")).await;
        assert_eq!(order["type"]["code"], "110109");
        let inference = get(&server.base, &s(2, "event_id")).await;
        assert_eq!(
            inference["meta"]["profile"][0],
            "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-inference"
        );
        let correction = get(&server.base, &s(3, "event_id")).await;
        assert_eq!(
            correction["entity"][0]["what"]["reference"],
            format!("AuditEvent/{}", s(2, "event_id"))
        );

        // Graceful stop: SIGTERM → exit 0.
        let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = server.child.wait().expect("server exits");
        assert!(status.success(), "SIGTERM exits 0: {status}");

        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{verdict}");
        assert_eq!(
            verdict["entries"].as_i64(),
            Some(4),
            "{backend:?}: {verdict}"
        );
    }
}
