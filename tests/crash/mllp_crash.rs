//! Crash safety: `kill -9` the real server while MLLP messages flow. After
//! a restart every message that got AA is stored, exactly once (resending
//! everything stores only what was missing), and `vellum verify` passes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vellum_testkit::mllp::*;
use vellum_testkit::*;

const SENDERS: usize = 8;

async fn serve(db: &TestDb) -> (ServerProcess, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = spawn_server_process(&db.url, &[("VELLUM_MLLP_ADDR", &addr)]);
    server.wait_ready().await;
    (server, port)
}

fn message(sender: usize, n: usize) -> String {
    let base = fixture("adt_a01.hl7");
    with_control_id(&base, &format!("CRASH{sender:02}{n:06}"))
}

#[test]
fn every_acknowledged_message_survives_kill_9_exactly_once() {
    crate::serially(every_acknowledged_message_survives_kill_9_exactly_once_scenario());
}

async fn every_acknowledged_message_survives_kill_9_exactly_once_scenario() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let (mut server, port) = serve(&db).await;

        let stop = Arc::new(AtomicBool::new(false));
        let acked_total = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for sender in 0..SENDERS {
            let stop = stop.clone();
            let acked_total = acked_total.clone();
            tasks.push(tokio::spawn(async move {
                // (control id → event id) for AA; every control id sent.
                let mut acked: HashMap<String, String> = HashMap::new();
                let mut sent: Vec<String> = Vec::new();
                let Some(mut c) = Client::try_connect(port).await else {
                    return (acked, sent);
                };
                for n in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let msg = message(sender, n);
                    let id = format!("CRASH{sender:02}{n:06}");
                    sent.push(id.clone());
                    match c.try_call(&msg).await {
                        Some(ack) if ack.code() == "AA" => {
                            assert_eq!(ack.field("MSA", 2), id);
                            acked.insert(id, ack.event_id().to_string());
                            acked_total.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(ack) => panic!("unexpected ACK {}", ack.text),
                        None => break, // the server died mid-message
                    }
                }
                (acked, sent)
            }));
        }
        // Let messages flow, then kill -9 while they still do.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while acked_total.load(Ordering::Relaxed) < 300 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        stop.store(true, Ordering::Relaxed);

        let mut acked: HashMap<String, String> = HashMap::new();
        let mut sent: Vec<String> = Vec::new();
        for t in tasks {
            let (a, s) = t.await.expect("sender task");
            acked.extend(a);
            sent.extend(s);
        }
        assert!(
            acked.len() >= 300,
            "{backend:?}: messages flowed before the kill"
        );
        let unacked = sent.len() - acked.len();
        assert!(
            unacked <= SENDERS,
            "at most one message in flight per sender"
        );
        eprintln!(
            "{backend:?}: {} messages acknowledged, {unacked} in flight at the kill",
            acked.len()
        );

        // Restart on the same database.
        let (server, port) = serve(&db).await;
        let client = vellum_testkit::authed_client();
        for (control_id, id) in &acked {
            let (status, _, _) = read_event(&client, &server.base, id).await;
            assert_eq!(status, 200, "{backend:?}: AA'd {control_id} is stored");
        }
        // Senders resend what they are unsure of (and, here, everything):
        // AA'd messages name their first entry; nothing is stored twice.
        let mut c = Client::connect(port).await;
        for control_id in &sent {
            let sender: usize = control_id[5..7].parse().unwrap();
            let n: usize = control_id[7..].parse().unwrap();
            let ack = c.call(&message(sender, n)).await;
            assert_eq!(ack.code(), "AA", "{}", ack.text);
            if let Some(first) = acked.get(control_id) {
                assert_eq!(ack.event_id(), first, "{backend:?}: same entry");
                assert_eq!(ack.field("ZVL", 4), "N");
            }
        }
        drop(server);
        let (code, verdict) = run_verify(&db.url);
        assert_eq!(code, 0, "{backend:?}: verify passes: {verdict}");
        assert_eq!(
            verdict["entries"].as_i64(),
            Some(sent.len() as i64),
            "{backend:?}: exactly one entry per message"
        );
    }
}

#[test]
fn sigterm_while_messages_flow_finishes_in_flight_messages_and_exits_0() {
    crate::serially(sigterm_while_messages_flow_finishes_in_flight_messages_and_exits_0_scenario());
}

async fn sigterm_while_messages_flow_finishes_in_flight_messages_and_exits_0_scenario() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (mut server, port) = serve(&db).await;
    let acked_total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let acked_total = acked_total.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked: HashMap<String, String> = HashMap::new();
            let Some(mut c) = Client::try_connect(port).await else {
                return acked;
            };
            for n in 0..100_000 {
                let id = format!("TERM{sender:02}{n:06}");
                match c
                    .try_call(&with_control_id(&fixture("adt_a01.hl7"), &id))
                    .await
                {
                    Some(ack) if ack.code() == "AA" => {
                        acked.insert(id, ack.event_id().to_string());
                        acked_total.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(ack) => panic!("unexpected ACK {}", ack.text),
                    None => break, // closed by the shutdown
                }
            }
            acked
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked_total.load(Ordering::Relaxed) < 200 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = server.child.wait();
        (s, server)
    })
    .await
    .expect("wait");
    let (status, _server) = status;
    assert!(status.expect("exit status").success(), "SIGTERM exits 0");
    let mut acked: HashMap<String, String> = HashMap::new();
    for t in tasks {
        acked.extend(t.await.expect("sender"));
    }
    assert!(acked.len() >= 200);
    let (server, _) = serve(&db).await;
    let client = vellum_testkit::authed_client();
    for id in acked.values() {
        let (status, _, _) = read_event(&client, &server.base, id).await;
        assert_eq!(status, 200, "every AA'd message is stored");
    }
    drop(server);
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "{verdict}");
    assert!(verdict["entries"].as_i64().unwrap_or(0) >= acked.len() as i64);
}
