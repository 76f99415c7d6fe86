//! The MLLP listener over real sockets (tokio client, in-process server,
//! real SQLite and PostgreSQL): ACKs, storage, idempotency, framing abuse,
//! limits and timeouts.

use std::time::Duration;

use vellum_testkit::mllp::*;
use vellum_testkit::*;

fn entries(db: &TestDb) -> i64 {
    let (code, verdict) = run_verify(&db.url);
    assert_eq!(code, 0, "verify passes: {verdict}");
    verdict["entries"].as_i64().expect("entry count")
}

backend_tests! {
    async fn ack_is_sent_only_after_commit_and_names_the_stored_event(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_mllp_app(&db.url, |_| {}).await;
        let mut c = Client::connect(app.mllp_port).await;
        let ack = c.call(&fixture("adt_a01.hl7")).await;
        assert_eq!(ack.code(), "AA", "{backend:?}: {}", ack.text);
        assert_eq!(ack.field("MSA", 2), "ADT000123");
        // MSH of the ACK: sender and receiver swapped, same version and processing id.
        assert_eq!(ack.field("MSH", 3), "VELLUM");
        assert_eq!(ack.field("MSH", 4), "AUDIT");
        assert_eq!(ack.field("MSH", 5), "EPICADT");
        assert_eq!(ack.field("MSH", 6), "STMARYS^1.2.840.114350.1.13.99^ISO");
        assert_eq!(ack.field("MSH", 9), "ACK^A01^ACK");
        assert_eq!(ack.field("MSH", 11), "P");
        assert_eq!(ack.field("MSH", 12), "2.5.1");
        assert!(ack.segment("ERR").is_none());
        // The ACK names the committed entry; it is readable right away.
        let id = ack.event_id().to_string();
        let (status, body, seq) = read_event(&app.client, &app.http, &id).await;
        assert_eq!(status, 200, "{backend:?}");
        assert_eq!(seq.as_deref(), Some(ack.field("ZVL", 2)));
        assert_eq!(ack.field("ZVL", 4), "Y");
        assert_eq!(
            body["meta"]["profile"][0],
            "https://vellum-audit.org/fhir/StructureDefinition/hl7v2-message-receipt"
        );
        assert_eq!(body["agent"][0]["network"]["address"], "127.0.0.1");
        assert_eq!(entries(&db), 1);
    }
}

backend_tests! {
    async fn a_repeated_msh10_is_acknowledged_again_and_stored_once(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_mllp_app(&db.url, |_| {}).await;
        let msg = fixture("orm_o01.hl7");
        let mut c = Client::connect(app.mllp_port).await;
        let first = c.call(&msg).await;
        let again = c.call(&msg).await;
        // A retry on a new connection (the usual case after a lost ACK).
        let mut c2 = Client::connect(app.mllp_port).await;
        let third = c2.call(&msg).await;
        for a in [&first, &again, &third] {
            assert_eq!(a.code(), "AA", "{backend:?}: {}", a.text);
            assert_eq!(a.field("MSA", 2), "ORM000456");
            assert_eq!(a.event_id(), first.event_id());
        }
        assert_eq!(first.field("ZVL", 4), "Y");
        assert_eq!(again.field("ZVL", 4), "N");
        // The same MSH-10 from another sender is another message.
        let other = c
            .call(&msg.replacen("|RIS|STMARYS|", "|RIS2|STMARYS|", 1))
            .await;
        assert_eq!(other.code(), "AA");
        assert_ne!(other.event_id(), first.event_id());
        // An escaped `|` in MSH-3 cannot pose as another sender's facility:
        // app `RIS|STMARYS` at facility `X` is not app `RIS` at `STMARYS|X`.
        let escaped = c
            .call(&msg.replacen("|RIS|STMARYS|", "|RIS\\F\\STMARYS|X|", 1))
            .await;
        let split = c
            .call(&msg.replacen("|RIS|STMARYS|", "|RIS|STMARYS\\F\\X|", 1))
            .await;
        assert_eq!((escaped.code(), split.code()), ("AA", "AA"));
        assert_ne!(escaped.event_id(), split.event_id(), "{backend:?}: no key collision");
        // The same MSH-10 from the same sender for a different message is
        // refused (AR, ERR 205 at MSH-10) and stores nothing.
        let reused = c.call(&msg.replacen("ORC|", "ORC|X", 1)).await;
        assert_eq!(reused.code(), "AR", "{backend:?}: {}", reused.text);
        let err = reused.segment("ERR").expect("ERR");
        assert!(err.iter().any(|f| f.contains("205")), "{err:?}");
        assert!(err.iter().any(|f| f.contains("MSH^1^10")), "{err:?}");
        assert!(reused.text.contains(first.event_id()), "names the stored event");
        assert_eq!(entries(&db), 4, "{backend:?}");
    }
}

backend_tests! {
    async fn malformed_messages_are_refused_with_err_and_nothing_is_stored(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_mllp_app(&db.url, |_| {}).await;
        let mut c = Client::connect(app.mllp_port).await;
        let cases = [
            ("invalid_no_msh.hl7", "AR", "", "MSH^1^0", "100"),
            ("invalid_missing_msh10.hl7", "AR", "", "MSH^1^10", "101"),
            (
                "invalid_bad_version.hl7",
                "AR",
                "ADT000999",
                "MSH^1^12",
                "203",
            ),
        ];
        for (name, code, msa2, location, err) in cases {
            let ack = c.call(&fixture(name)).await;
            assert_eq!(ack.code(), code, "{name}: {}", ack.text);
            assert_eq!(ack.field("MSA", 2), msa2, "{name}");
            assert_eq!(ack.field("ERR", 2), location, "{name}");
            assert!(
                ack.field("ERR", 3).starts_with(&format!("{err}^")),
                "{name}: {}",
                ack.text
            );
            assert_eq!(ack.field("ERR", 4), "E");
            assert!(ack.segment("ZVL").is_none());
        }
        // An AI result whose confidence is not a number: AE at OBX-5.
        let bad_ai = fixture("oru_r01_ai.hl7").replace("||0.120||", "||likely||");
        let ack = c.call(&bad_ai).await;
        assert_eq!(ack.code(), "AE", "{}", ack.text);
        assert_eq!(ack.field("ERR", 2), "OBX^2^5");
        assert!(ack.field("ERR", 3).starts_with("102^"));
        // The connection is still usable; only the good message is stored.
        assert_eq!(c.call(&fixture("adt_a01.hl7")).await.code(), "AA");
        assert_eq!(entries(&db), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn pipelined_messages_are_answered_in_order() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |_| {}).await;
    let mut c = Client::connect(app.mllp_port).await;
    let template = fixture("adt_a01.hl7");
    let mut burst = Vec::new();
    for i in 0..30 {
        let msg = if i == 7 {
            fixture("invalid_bad_version.hl7")
        } else {
            with_control_id(&template, &format!("PIPE{i:04}"))
        };
        burst.extend(frame(msg.as_bytes()));
    }
    c.send_raw(&burst).await;
    for i in 0..30 {
        let ack = c.recv().await.expect("ACK");
        if i == 7 {
            assert_eq!(ack.code(), "AR");
        } else {
            assert_eq!(ack.code(), "AA", "{}", ack.text);
            assert_eq!(ack.field("MSA", 2), format!("PIPE{i:04}"));
        }
    }
    assert_eq!(entries(&db), 29);
}

#[tokio::test]
async fn bytes_outside_frames_and_split_frames_are_handled() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |_| {}).await;
    let mut c = Client::connect(app.mllp_port).await;
    let a = with_control_id(&fixture("adt_a01.hl7"), "SPLIT1");
    let b = with_control_id(&fixture("adt_a01.hl7"), "SPLIT2");
    let mut stream = b"\r\nGARBAGE\x1c\r".to_vec();
    stream.extend(frame(a.as_bytes()));
    stream.extend(b"more garbage");
    stream.extend(frame(b.as_bytes()));
    // Dribble it in small writes.
    for chunk in stream.chunks(7) {
        c.send_raw(chunk).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(c.recv().await.unwrap().field("MSA", 2), "SPLIT1");
    assert_eq!(c.recv().await.unwrap().field("MSA", 2), "SPLIT2");
    assert_eq!(entries(&db), 2);
}

#[tokio::test]
async fn an_oversize_frame_is_rejected_and_the_connection_closed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |s| s.mllp_max_frame_bytes = 2048).await;
    let mut c = Client::connect(app.mllp_port).await;
    let mut big = with_control_id(&fixture("adt_a01.hl7"), "BIG0001");
    big.push_str(&format!("NTE|1||{}\r", "x".repeat(4000)));
    c.send(&big).await;
    let ack = c.recv().await.expect("a reject before the close");
    assert_eq!(ack.code(), "AR");
    assert_eq!(ack.field("MSA", 2), "BIG0001");
    assert!(ack.field("ERR", 3).starts_with("207^"), "{}", ack.text);
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // Other connections are unaffected.
    let mut c2 = Client::connect(app.mllp_port).await;
    assert_eq!(c2.call(&fixture("adt_a01.hl7")).await.code(), "AA");
    assert_eq!(entries(&db), 1);
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed_after_the_read_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |s| s.mllp_read_timeout_ms = 500).await;
    let mut idle = Client::connect(app.mllp_port).await;
    assert!(idle.closed_within(Duration::from_secs(5)).await);
    // A frame that never finishes: cut off too, nothing stored.
    let mut slow = Client::connect(app.mllp_port).await;
    let msg = frame(fixture("adt_a01.hl7").as_bytes());
    let started = std::time::Instant::now();
    let mut closed = false;
    for b in &msg[..msg.len() - 2] {
        if slow.stream.try_write(&[*b]).is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert!(closed || slow.closed_within(Duration::from_secs(5)).await);
    // A connection that keeps sending whole messages stays open.
    let mut busy = Client::connect(app.mllp_port).await;
    for i in 0..5 {
        let ack = busy
            .call(&with_control_id(
                &fixture("adt_a01.hl7"),
                &format!("BUSY{i}"),
            ))
            .await;
        assert_eq!(ack.code(), "AA");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(entries(&db), 5);
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |s| s.mllp_max_connections = 1).await;
    let mut first = Client::connect(app.mllp_port).await;
    assert_eq!(
        first
            .call(&with_control_id(&fixture("adt_a01.hl7"), "LIM1"))
            .await
            .code(),
        "AA"
    );
    let mut second = Client::connect(app.mllp_port).await;
    second
        .send(&with_control_id(&fixture("adt_a01.hl7"), "LIM2"))
        .await;
    // Not served while the first holds the only slot.
    let waited = tokio::time::timeout(Duration::from_millis(500), second.recv()).await;
    assert!(waited.is_err(), "the second connection must wait");
    drop(first);
    let ack = second.recv().await.expect("served after the first closed");
    assert_eq!(ack.field("MSA", 2), "LIM2");
}

#[tokio::test]
async fn enhanced_mode_follows_msh15_and_msh16() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |_| {}).await;
    let mut c = Client::connect(app.mllp_port).await;
    let base = fixture("orm_o01.hl7");
    let enhanced = |id: &str, accept: &str| {
        with_control_id(&base, id).replacen("|2.3.1\r", &format!("|2.3.1|||{accept}|NE\r"), 1)
    };
    let ack = c.call(&enhanced("ENH1", "AL")).await;
    assert_eq!(ack.code(), "CA", "{}", ack.text);
    assert_eq!(
        ack.field("MSH", 9),
        "ACK^O01",
        "v2.3.1 has no message structure"
    );
    // NE: no accept acknowledgement at all; ER: only on error.
    c.send(&enhanced("ENH2", "NE")).await;
    c.send(&enhanced("ENH3", "ER")).await;
    let bad = enhanced("ENH4", "ER").replacen("|P|", "|Q|", 1);
    let ack = c.call(&bad).await;
    assert_eq!(
        (ack.code(), ack.field("MSA", 2)),
        ("CR", "ENH4"),
        "the next reply is the error for ENH4"
    );
    assert_eq!(
        ack.field("ERR", 1),
        "MSH^1^11^202&Unsupported processing id&HL70357"
    );
    assert_eq!(entries(&db), 3);
}

backend_tests! {
    async fn an_ai_correction_is_linked_to_the_earlier_inference(backend) {
        let db = TestDb::new(backend).await;
        let app = spawn_mllp_app(&db.url, |_| {}).await;
        let mut c = Client::connect(app.mllp_port).await;
        // Without a stored inference, a correction is kept as a receipt.
        let early = with_control_id(&fixture("oru_r01_ai_correction.hl7"), "EARLY1");
        let ack = c.call(&early).await;
        let (_, body, _) = read_event(&app.client, &app.http, ack.event_id()).await;
        assert_eq!(
            body["meta"]["profile"][0],
            "https://vellum-audit.org/fhir/StructureDefinition/hl7v2-message-receipt"
        );
        let inference = c.call(&fixture("oru_r01_ai.hl7")).await;
        assert_eq!(inference.code(), "AA", "{}", inference.text);
        // Pipelined right behind the inference on a second connection: the
        // correction still finds it.
        let correction = c.call(&fixture("oru_r01_ai_correction.hl7")).await;
        assert_eq!(correction.code(), "AA", "{}", correction.text);
        let (_, inf, _) = read_event(&app.client, &app.http, inference.event_id()).await;
        assert_eq!(
            inf["meta"]["profile"][0],
            "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-inference"
        );
        let (_, ovr, _) = read_event(&app.client, &app.http, correction.event_id()).await;
        assert_eq!(
            ovr["meta"]["profile"][0],
            "https://vellum-audit.org/fhir/StructureDefinition/radiology-ai-override"
        );
        assert_eq!(
            ovr["entity"][0]["what"]["reference"],
            format!("AuditEvent/{}", inference.event_id()),
            "{backend:?}"
        );
        assert_eq!(entries(&db), 3);
    }
}

#[tokio::test]
async fn inference_and_correction_in_one_burst_keep_their_order() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |_| {}).await;
    let mut c = Client::connect(app.mllp_port).await;
    let mut burst = frame(fixture("oru_r01_ai.hl7").as_bytes());
    burst.extend(frame(fixture("oru_r01_ai_correction.hl7").as_bytes()));
    c.send_raw(&burst).await;
    let inference = c.recv().await.unwrap();
    let correction = c.recv().await.unwrap();
    let (_, ovr, _) = read_event(&app.client, &app.http, correction.event_id()).await;
    assert_eq!(
        ovr["entity"][0]["what"]["reference"],
        format!("AuditEvent/{}", inference.event_id())
    );
}

#[tokio::test]
async fn latin1_messages_are_decoded_per_msh18() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |_| {}).await;
    let mut c = Client::connect(app.mllp_port).await;
    let msg = fixture("orm_o01.hl7")
        .replacen("|2.3.1\r", "|2.3.1||||||8859/1\r", 1)
        .replace("FIL-77812", "FIL-\u{e9}77812");
    // Encode as Latin-1 bytes.
    let bytes: Vec<u8> = msg.chars().map(|ch| ch as u32 as u8).collect();
    c.send_raw(&frame(&bytes)).await;
    let ack = c.recv().await.unwrap();
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    let (_, body, _) = read_event(&app.client, &app.http, ack.event_id()).await;
    assert!(
        body.to_string().contains("FIL-\u{e9}77812"),
        "Latin-1 decoded: {body}"
    );
    // Without MSH-18 the same bytes are not valid UTF-8: AR at MSH-18.
    let undeclared: Vec<u8> = msg
        .replacen("||||||8859/1", "", 1)
        .replace("ORM000456", "ORM000457")
        .chars()
        .map(|ch| ch as u32 as u8)
        .collect();
    c.send_raw(&frame(&undeclared)).await;
    let ack = c.recv().await.unwrap();
    assert_eq!(
        (ack.code(), ack.field("ERR", 1)),
        ("AR", "MSH^1^18^102&Data type error&HL70357")
    );
}

#[tokio::test]
async fn one_greedy_peer_cannot_take_every_connection() {
    let db = TestDb::new(vellum_testkit::Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |raw| {
        raw.limits.mllp_max_connections_per_peer = 2;
    })
    .await;
    let idle = Client::connect(app.mllp_port).await;
    let idle2 = Client::connect(app.mllp_port).await;
    // A third connection from the same address is over the cap: closed
    // without an answer, its message not stored.
    let mut third = Client::connect(app.mllp_port).await;
    assert!(third.try_call(&fixture("adt_a01.hl7")).await.is_none());
    drop((idle, idle2));
    // The slots are released with the connections: a sender is served again
    // (retry while the server notices the closed connections).
    let mut served = None;
    for _ in 0..50 {
        let mut c = Client::connect(app.mllp_port).await;
        if let Some(ack) = c.try_call(&fixture("adt_a01.hl7")).await {
            served = Some(ack);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ack = served.expect("served once the peer's connections closed");
    assert_eq!(ack.code(), "AA", "{}", ack.text);
    assert_eq!(entries(&db), 1);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
    let db = TestDb::new(vellum_testkit::Backend::Sqlite).await;
    let app = spawn_mllp_app(&db.url, |raw| {
        raw.limits.mllp_first_byte_timeout_ms = 300;
    })
    .await;
    // The idle read timeout stays at its default (minutes): only the
    // first-byte timeout can close this connection.
    let mut idle = Client::connect(app.mllp_port).await;
    assert!(idle.recv_timeout(Duration::from_secs(30)).await.is_none());
    // A connection that has sent a message may then idle longer than the
    // first-byte timeout (persistent sender connections stay open).
    let mut c = Client::connect(app.mllp_port).await;
    assert_eq!(c.call(&fixture("adt_a01.hl7")).await.code(), "AA");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let ack = c
        .call(&with_control_id(&fixture("adt_a01.hl7"), "SECOND-1"))
        .await;
    assert_eq!(ack.code(), "AA", "{}", ack.text);
}
