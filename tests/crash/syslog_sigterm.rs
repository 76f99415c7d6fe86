//! SIGTERM while ATNA syslog messages are in flight: the real `vellum serve`
//! with the TCP syslog listener exits 0, every message whose frame a sender
//! wrote whole before the signal is stored exactly once, and `vellum verify`
//! passes — on both backends. This holds also for connections the kernel
//! completed but the server had not yet accepted when the signal came (a
//! busy server): syslog has no acknowledgement, so their senders have
//! written their frames all the same.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use vellum_testkit::*;

use crate::durability::wait_exit;

const SENDERS: usize = 8;
const PER_SENDER: usize = 60;

/// A distinct RFC 5424 message, octet-counted (the audit source id varies,
/// so no two are the same bytes and none is deduplicated).
fn frame(xml: &str, sender: usize, n: usize) -> Vec<u8> {
    let xml = xml.replacen(
        "AuditSourceID=\"",
        &format!("AuditSourceID=\"s{sender}-m{n}-"),
        1,
    );
    let msg = format!(
        "<85>1 2026-03-01T10:15:30.123+01:00 pacs.example.org DCM4CHEE 4242 IHE+RFC-3881 - {xml}"
    );
    format!("{} {msg}", msg.len()).into_bytes()
}

/// The ATNA fixture on one line, with the AuditSourceID `frame` varies.
fn fixture_xml() -> String {
    let raw =
        std::fs::read_to_string(repo_root().join("fixtures/atna/query.xml")).expect("fixture");
    let xml: String = raw.lines().map(str::trim).collect();
    assert!(
        xml.contains("AuditSourceID=\""),
        "fixture without AuditSourceID"
    );
    xml
}

/// The server exited 0 after SIGTERM and its store verifies with exactly
/// `expected` entries.
fn assert_drained(backend: Backend, exit: std::process::ExitStatus, url: &str, expected: usize) {
    assert_eq!(
        exit.code(),
        Some(0),
        "{backend:?}: SIGTERM must drain and exit 0: {exit}"
    );
    let (code, verdict) = run_verify(url);
    assert_eq!(code, 0, "{backend:?}: {verdict}");
    assert_eq!(
        verdict["entries"], expected as u64,
        "{backend:?}: every frame written before SIGTERM is stored once: {verdict}"
    );
}

#[test]
fn sigterm_stores_every_syslog_message_written_before_it() {
    crate::serially(scenario());
}

async fn scenario() {
    let xml = fixture_xml();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut server = spawn_server_process(&db.url, &[("VELLUM_SYSLOG_ADDR", &addr)]);
        server.wait_ready().await;

        // Every sender writes all its frames as fast as it can and keeps
        // its connection open: storing is one commit per frame, so most
        // are still in the server's socket buffers when the signal comes.
        let mut senders = Vec::new();
        for sender in 0..SENDERS {
            let xml = xml.clone();
            senders.push(tokio::spawn(async move {
                let mut tcp = TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                for n in 0..PER_SENDER {
                    tcp.write_all(&frame(&xml, sender, n))
                        .await
                        .expect("write a frame");
                }
                tcp
            }));
        }
        let mut open = Vec::new();
        for s in senders {
            open.push(s.await.expect("sender"));
        }
        let pid = Pid::from_raw(server.child.id() as i32);
        kill(pid, Signal::SIGTERM).expect("SIGTERM vellum");
        let exit = wait_exit(&mut server.child, Duration::from_secs(120)).await;
        drop(open);
        assert_drained(backend, exit, &db.url, SENDERS * PER_SENDER);
    }
}

/// The server is stopped (SIGSTOP) while the senders connect and write, so
/// every connection is still in the kernel's accept queue when SIGTERM
/// arrives with SIGCONT: shutdown must take them in, not reset them.
#[test]
fn sigterm_takes_in_connections_still_in_the_accept_queue() {
    crate::serially(queued_scenario());
}

async fn queued_scenario() {
    const QUEUED_SENDERS: usize = 8;
    const QUEUED_FRAMES: usize = 20;
    let xml = fixture_xml();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut server = spawn_server_process(&db.url, &[("VELLUM_SYSLOG_ADDR", &addr)]);
        server.wait_ready().await;
        let pid = Pid::from_raw(server.child.id() as i32);

        kill(pid, Signal::SIGSTOP).expect("SIGSTOP vellum");
        let mut open = Vec::new();
        for sender in 0..QUEUED_SENDERS {
            // The kernel completes the handshake and buffers the frames
            // without the (stopped) process.
            let mut tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect to the stopped server");
            for n in 0..QUEUED_FRAMES {
                tcp.write_all(&frame(&xml, sender, n))
                    .await
                    .expect("write a frame");
            }
            open.push(tcp);
        }
        kill(pid, Signal::SIGTERM).expect("SIGTERM vellum");
        kill(pid, Signal::SIGCONT).expect("SIGCONT vellum");
        let exit = wait_exit(&mut server.child, Duration::from_secs(120)).await;
        drop(open);
        assert_drained(backend, exit, &db.url, QUEUED_SENDERS * QUEUED_FRAMES);
    }
}
