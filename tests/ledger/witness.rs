//! Witnesses (C2SP tlog-witness / tlog-cosignature) on both backends: two
//! `vellum serve` processes witnessing each other, each cosignature checked
//! independently with `openssl pkeyutl`; a witness refusing forks, smaller
//! trees, stale old sizes and bad consistency proofs, storing nothing for
//! them; and the hand-off of new checkpoints to a directory and a command.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::Digest as _;
use vellum::config::RawSettings;
use vellum::ledger::hash::{self, Hash};
use vellum::ledger::note::NoteSigner;
use vellum_testkit::*;

use super::evidence::mth;

/// RFC 6962 §2.1.2 consistency proof, recursively from the leaves.
fn consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, d: &[Hash], whole: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if whole { vec![] } else { vec![mth(d)] };
        }
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        let mut p = if m <= k {
            let mut p = subproof(m, &d[..k], whole);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        };
        p.shrink_to_fit();
        p
    }
    subproof(m, leaves, true)
}

fn vellum(args: &[&str]) -> (i32, String) {
    let out = Command::new(vellum_bin())
        .args(args)
        .output()
        .expect("run vellum");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Checks a cosignature line with openssl alone: the key ID from the vkey,
/// the timestamped message, `openssl pkeyutl -verify` on the signature.
fn openssl_verifies(vkey: &str, text: &str, line: &str, work: &Path) -> bool {
    let mut parts = vkey.trim().splitn(3, '+');
    let (name, _id, key) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let key = B64.decode(key).unwrap();
    assert_eq!(key[0], 0x04, "a cosigner vkey has type 0x04");
    let public = &key[1..];
    let rest = line
        .trim_end()
        .strip_prefix("\u{2014} ")
        .expect("a signature line");
    let (line_name, sig) = rest.split_once(' ').unwrap();
    if line_name != name {
        return false;
    }
    let sig = B64.decode(sig).unwrap();
    let mut id = sha2::Sha256::new();
    id.update(format!("{name}\n").as_bytes());
    id.update([0x04]);
    id.update(public);
    if sig.len() != 76 || sig[..4] != id.finalize()[..4] {
        return false;
    }
    let ts = u64::from_be_bytes(sig[4..12].try_into().unwrap());
    std::fs::write(
        work.join("msg"),
        format!("cosignature/v1\ntime {ts}\n{text}"),
    )
    .unwrap();
    std::fs::write(work.join("sig"), &sig[12..]).unwrap();
    let mut der = hex::decode("302a300506032b6570032100").unwrap();
    der.extend(public);
    std::fs::write(
        work.join("pub.pem"),
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(der)
        ),
    )
    .unwrap();
    Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(work.join("pub.pem"))
        .arg("-in")
        .arg(work.join("msg"))
        .arg("-sigfile")
        .arg(work.join("sig"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// One vellum's keys: its log key and its witness key.
struct Keys {
    log_key: String,
    log_vkey: String,
    witness_key: String,
    witness_vkey: String,
}

fn keys(dir: &Path, name: &str) -> Keys {
    let d = dir.join(name);
    let (c, log_vkey) = vellum(&[
        "keygen",
        "--origin",
        &format!("{name}.test/log"),
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(c, 0);
    let (c, witness_vkey) = vellum(&[
        "keygen",
        "--witness",
        "--origin",
        &format!("{name}.test/witness"),
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(c, 0);
    Keys {
        log_key: d.join("log.key").display().to_string(),
        log_vkey: log_vkey.trim().to_string(),
        witness_key: d.join("witness.key").display().to_string(),
        witness_vkey: witness_vkey.trim().to_string(),
    }
}

/// The newest checkpoint once it carries `lines` signature lines.
async fn cosigned(base: &str, lines: usize) -> String {
    let client = authed_client();
    for _ in 0..300 {
        let note = client
            .get(format!("{base}/admin/checkpoints/latest"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if note
            .split("\n\n")
            .nth(1)
            .is_some_and(|s| s.lines().count() == lines)
        {
            return note;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the checkpoint of {base} did not get {lines} signature lines");
}

async fn checkpoint_after(base: &str, events: std::ops::Range<u64>) -> String {
    let client = authed_client();
    for n in events {
        let r = client
            .post(format!("{base}/fhir/AuditEvent"))
            .header("Content-Type", "application/fhir+json")
            .body(sample_event(n).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = client
        .post(format!("{base}/admin/checkpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.text().await.unwrap()
}

backend_tests! {
    async fn two_vellums_witness_each_other(backend) {
        if !tool_available("openssl", on_path("openssl")) {
            return;
        }
        let (db_a, db_b) = (TestDb::new(backend).await, TestDb::new(backend).await);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (keys(dir.path(), "a"), keys(dir.path(), "b"));
        let (port_a, port_b) = (free_port(), free_port());
        let handed = dir.path().join("handed-a");
        let command_out = dir.path().join("command-a.txt");
        let command = format!("tee -a {}", command_out.display());
        let env = |me: &Keys, other: &Keys, port: u16, other_port: u16| {
            vec![
                ("VELLUM_HTTP_ADDR".to_string(), format!("127.0.0.1:{port}")),
                ("VELLUM_SIGNING_KEY_FILE".into(), me.log_key.clone()),
                ("VELLUM_CHECKPOINT_EVERY_ENTRIES".into(), "1000000".into()),
                ("VELLUM_CHECKPOINT_EVERY_SECONDS".into(), "0".into()),
                ("VELLUM_WITNESS_KEY_FILE".into(), me.witness_key.clone()),
                ("VELLUM_WITNESS_LOGS".into(), other.log_vkey.clone()),
                ("VELLUM_WITNESS_URLS".into(), format!("http://127.0.0.1:{other_port}/witness")),
                ("VELLUM_WITNESS_VKEYS".into(), other.witness_vkey.clone()),
                ("VELLUM_WITNESS_TOKENS".into(), DEV_TOKEN.into()),
            ]
        };
        let mut env_a = env(&a, &b, port_a, port_b);
        env_a.push(("VELLUM_EVIDENCE_CHECKPOINT_DIR".into(), handed.display().to_string()));
        env_a.push(("VELLUM_EVIDENCE_CHECKPOINT_COMMAND".into(), command));
        let env_b = env(&b, &a, port_b, port_a);
        let mut server_a = spawn_server_process(&db_a.url, &pairs(&env_a));
        server_a.base = format!("http://127.0.0.1:{port_a}");
        let mut server_b = spawn_server_process(&db_b.url, &pairs(&env_b));
        server_b.base = format!("http://127.0.0.1:{port_b}");
        server_a.wait_ready().await;
        server_b.wait_ready().await;

        // A's checkpoint of 3 entries, cosigned by B (first time: old 0).
        let note3 = checkpoint_after(&server_a.base, 0..3).await;
        let with = cosigned(&server_a.base, 2).await;
        assert!(with.starts_with(&note3), "{with}");
        let (text3, sigs) = with.split_once("\n\n").map(|(t, s)| (format!("{t}\n"), s.to_string())).unwrap();
        let line = sigs.lines().nth(1).unwrap();
        assert!(openssl_verifies(&b.witness_vkey, &text3, line, dir.path()), "{line}");
        // The log's own signature is not a cosignature.
        assert!(!openssl_verifies(&b.witness_vkey, &text3, sigs.lines().next().unwrap(), dir.path()));

        // Size 5: B checks the consistency proof from 3 before cosigning.
        let note5 = checkpoint_after(&server_a.base, 3..5).await;
        let with = cosigned(&server_a.base, 2).await;
        assert!(with.starts_with(&note5) && with != note5, "{with}");
        let (text5, sigs) = with.split_once("\n\n").unwrap();
        assert!(openssl_verifies(&b.witness_vkey, &format!("{text5}\n"), sigs.lines().nth(1).unwrap(), dir.path()));

        // And the other way round: B's checkpoint cosigned by A.
        let note_b = checkpoint_after(&server_b.base, 10..12).await;
        let with = cosigned(&server_b.base, 2).await;
        assert!(with.starts_with(&note_b));
        let (text_b, sigs) = with.split_once("\n\n").unwrap();
        assert!(openssl_verifies(&a.witness_vkey, &format!("{text_b}\n"), sigs.lines().nth(1).unwrap(), dir.path()));

        // Hand-off: one file per size and `latest`, the command got both.
        for _ in 0..100 {
            if handed.join("5").exists() && std::fs::read_to_string(&command_out).is_ok_and(|s| s.contains(&note5)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(std::fs::read_to_string(handed.join("3")).unwrap(), note3);
        assert_eq!(std::fs::read_to_string(handed.join("5")).unwrap(), note5);
        assert_eq!(std::fs::read_to_string(handed.join("latest")).unwrap(), note5);
        assert_eq!(std::fs::read_to_string(&command_out).unwrap(), format!("{note3}{note5}"));

        // `vellum verify` checks the stored cosignatures with the witness vkeys.
        let out = Command::new(vellum_bin())
            .args(["verify", "--json", "--database-url", &db_a.url])
            .env("VELLUM_SIGNING_KEY_FILE", &a.log_key)
            .env("VELLUM_WITNESS_URLS", format!("http://127.0.0.1:{port_b}/witness"))
            .env("VELLUM_WITNESS_VKEYS", &b.witness_vkey)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(verdict["cosignatures"]["verified"], 2, "{verdict}");

        // The export and the proof bundle carry the cosignatures, and the
        // export still verifies offline.
        let exp = dir.path().join("exp");
        let out = Command::new(vellum_bin())
            .args(["export", "--out", exp.to_str().unwrap(), "--database-url", &db_a.url])
            .env("VELLUM_SIGNING_KEY_FILE", &a.log_key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let exported = std::fs::read_to_string(exp.join("checkpoint")).unwrap();
        assert!(exported.starts_with(&note5) && exported.lines().count() == note5.lines().count() + 1);
        let cosig5 = exported.lines().last().unwrap().to_string();
        assert!(openssl_verifies(&b.witness_vkey, &format!("{}\n", text5), &cosig5, dir.path()));
        let (code, _) = vellum(&["verify", "--export", exp.to_str().unwrap()]);
        assert_eq!(code, 0);
        // Offline, against the witness keys an auditor trusts: B cosigned
        // it; A's witness did not; a cosignature line altered by one
        // character is reported.
        let with_witness = |exp: &Path, witness: &str| {
            let vkey = dir.path().join(witness).join("witness.vkey");
            let out = Command::new(vellum_bin())
                .args(["verify", "--export", exp.to_str().unwrap(), "--witness-vkey", vkey.to_str().unwrap()])
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let (code, err) = with_witness(&exp, "b");
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("b.test/witness"), "each witness is reported: {err}");
        let (code, err) = with_witness(&exp, "a");
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("no valid cosignature by witness a.test/witness"), "{err}");
        let (head, sig) = cosig5.rsplit_once(' ').unwrap();
        let flipped = if sig.starts_with('A') { sig.replacen('A', "B", 1) } else { format!("A{}", &sig[1..]) };
        std::fs::write(exp.join("checkpoint"), exported.replace(&cosig5, &format!("{head} {flipped}"))).unwrap();
        let (code, err) = with_witness(&exp, "b");
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("no valid cosignature by witness b.test/witness"), "{err}");
        std::fs::write(exp.join("checkpoint"), &exported).unwrap();

        // A cosignature the witness never made (copied onto a checkpoint it
        // never saw, by whoever can insert rows) is reported as tampering.
        drop(server_b);
        let _note7 = checkpoint_after(&server_a.base, 5..7).await;
        let label = b.witness_vkey.splitn(3, '+').take(2).collect::<Vec<_>>().join("+");
        owner_insert_cosignature(&db_a, 7, &label, &cosig5).await;
        let out = Command::new(vellum_bin())
            .args(["verify", "--database-url", &db_a.url])
            .env("VELLUM_SIGNING_KEY_FILE", &a.log_key)
            .env("VELLUM_WITNESS_URLS", format!("http://127.0.0.1:{port_b}/witness"))
            .env("VELLUM_WITNESS_VKEYS", &b.witness_vkey)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cosignature of checkpoint 7"), "{err}");
        // The running server's `/admin/verify` checks them with its
        // configured witness keys too.
        let r = authed_client()
            .get(format!("{}/admin/verify", server_a.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        let body: serde_json::Value = r.json().await.unwrap();
        let problem = body["cosignatures"]["problem"].as_str().unwrap_or_default();
        assert!(problem.contains("cosignature of checkpoint 7"), "{body}");
        drop(server_a);
    }

    async fn a_witness_refuses_forks_and_bad_proofs_and_stores_nothing_for_them(backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let w = keys(dir.path(), "w");
        let log = NoteSigner::generate("other.test/log").unwrap();
        let stranger = NoteSigner::generate("other.test/log").unwrap();
        let mut raw: RawSettings = raw_settings_for(&db.url);
        raw.witness.key_file = Some(w.witness_key.clone());
        raw.witness.logs = vellum::config::PathList(vec![log.verifier().to_vkey()]);
        let app = spawn_app_with(vellum::config::Settings::validate(raw).unwrap()).await;
        let leaves: Vec<Hash> = (0..8u8).map(|i| hash::leaf_hash(&[i])).collect();
        let forked: Vec<Hash> = (0..8u8).map(|i| hash::leaf_hash(&[i, 1])).collect();
        let note = |signer: &NoteSigner, size: usize, root: Hash| {
            signer.sign(&format!("other.test/log\n{size}\n{}\n", B64.encode(root))).unwrap()
        };
        let add = |old: usize, proof: Vec<Hash>, note: String| {
            let mut body = format!("old {old}\n");
            for h in proof {
                body.push_str(&format!("{}\n", B64.encode(h)));
            }
            body.push('\n');
            body.push_str(&note);
            let (client, base) = (app.client.clone(), app.base.clone());
            async move {
                let r = client.post(format!("{base}/witness/add-checkpoint")).body(body).send().await.unwrap();
                let status = r.status().as_u16();
                let ctype = r.headers().get("Content-Type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                (status, ctype, r.text().await.unwrap())
            }
        };
        let work = dir.path();
        let wvkey = w.witness_vkey.as_str();
        let check = |n: &str, line: &str| openssl_verifies(wvkey, n.split_once("\n\n").map(|(t, _)| format!("{t}\n")).unwrap().as_str(), line, work);
        let tools = tool_available("openssl", on_path("openssl"));

        // First checkpoint: old 0, no proof.
        let n4 = note(&log, 4, mth(&leaves[..4]));
        let (s, _, line) = add(0, vec![], n4.clone()).await;
        assert_eq!(s, 200, "{line}");
        if tools {
            assert!(check(&n4, &line), "{line}");
        }
        // Unknown origin, wrong key.
        let other = NoteSigner::generate("nobody.test/log").unwrap();
        let (s, _, _) = add(0, vec![], other.sign(&format!("nobody.test/log\n1\n{}\n", B64.encode(leaves[0]))).unwrap()).await;
        assert_eq!(s, 404);
        let (s, _, _) = add(4, consistency(4, &leaves[..6]), note(&stranger, 6, mth(&leaves[..6]))).await;
        assert_eq!(s, 403);

        // A fork: the same size with another root.
        let (s, ctype, _) = add(4, vec![], note(&log, 4, mth(&forked[..4]))).await;
        assert_eq!(s, 409);
        assert!(!ctype.starts_with("text/x.tlog.size"));
        // A fork that extends another history: its proof cannot verify.
        let (s, _, _) = add(4, consistency(4, &forked[..6]), note(&log, 6, mth(&forked[..6]))).await;
        assert_eq!(s, 422);
        // A bad proof for the true history.
        let mut bad = consistency(4, &leaves[..6]);
        bad[0][0] ^= 1;
        let (s, _, _) = add(4, bad, note(&log, 6, mth(&leaves[..6]))).await;
        assert_eq!(s, 422);
        // A smaller tree: old above the size, or a stale old size.
        let (s, _, _) = add(4, vec![], note(&log, 3, mth(&leaves[..3]))).await;
        assert_eq!(s, 400);
        let (s, ctype, body) = add(2, consistency(2, &leaves[..3]), note(&log, 3, mth(&leaves[..3]))).await;
        assert_eq!((s, ctype.as_str(), body.as_str()), (409, "text/x.tlog.size", "4\n"));

        // Nothing of that was stored: the state is still the first root at 4,
        // so the true extension verifies from it and is cosigned.
        let n6 = note(&log, 6, mth(&leaves[..6]));
        let (s, _, line) = add(4, consistency(4, &leaves[..6]), n6.clone()).await;
        assert_eq!(s, 200, "{line}");
        if tools {
            assert!(check(&n6, &line));
        }
        // The same checkpoint again is cosigned again; the old size moved on.
        let (s, _, _) = add(6, vec![], n6.clone()).await;
        assert_eq!(s, 200);
        let (s, _, body) = add(4, consistency(4, &leaves[..8]), note(&log, 8, mth(&leaves[..8]))).await;
        assert_eq!((s, body.as_str()), (409, "6\n"));
    }

    async fn a_failing_checkpoint_command_is_counted_and_never_blocks_appends(backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let k = keys(dir.path(), "c");
        let mut server = spawn_server_process(&db.url, &[
            ("VELLUM_SIGNING_KEY_FILE", k.log_key.as_str()),
            ("VELLUM_CHECKPOINT_EVERY_ENTRIES", "2"),
            ("VELLUM_CHECKPOINT_EVERY_SECONDS", "0"),
            ("VELLUM_EVIDENCE_CHECKPOINT_COMMAND", "sleep 30"),
            ("VELLUM_EVIDENCE_CHECKPOINT_COMMAND_TIMEOUT_MS", "100"),
        ]);
        server.wait_ready().await;
        let client = authed_client();
        let metric = || async {
            let text = client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
            text.lines()
                .find(|l| l.starts_with("vellum_checkpoint_publish_failures_total{target=\"command\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // Appends go on while the command hangs and is killed.
        let mut failures = 0.0;
        for n in 0..300u64 {
            let r = client
                .post(format!("{}/fhir/AuditEvent", server.base))
                .header("Content-Type", "application/fhir+json")
                .body(sample_event(n).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            failures = metric().await;
            if failures >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(failures >= 1.0, "no command failure counted");
    }
}

/// Inserts a cosignature row directly, as the database owner could.
async fn owner_insert_cosignature(db: &TestDb, size: i64, witness: &str, line: &str) {
    const SQL: &str = "INSERT INTO witness_cosignature VALUES ($1, $2, $3, 't')";
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(SQL)
                .bind(size)
                .bind(witness)
                .bind(line)
                .execute(&pool)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(SQL)
                .bind(size)
                .bind(witness)
                .bind(line)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

/// Runs one statement on the test database as its owner.
async fn owner_exec(db: &TestDb, sql: &'static str) -> Result<(), String> {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(sql)
                .execute(&pool)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(sql)
                .execute(&pool)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

backend_tests! {
    async fn witness_tables_refuse_update_and_delete(backend) {
        let db = TestDb::new(backend).await;
        let _app = spawn_app(&db.url).await;
        let root = match backend {
            Backend::Sqlite => "INSERT INTO witnessed_checkpoint VALUES ('o', 1, zeroblob(32), 'n', 't')",
            Backend::Postgres => "INSERT INTO witnessed_checkpoint VALUES ('o', 1, decode(repeat('00', 32), 'hex'), 'n', 't')",
        };
        owner_exec(&db, root).await.unwrap();
        owner_exec(&db, "INSERT INTO witness_cosignature VALUES (1, 'w', 'l', 't')").await.unwrap();
        let mut refused = vec![
            "UPDATE witnessed_checkpoint SET note = 'forged'",
            "DELETE FROM witnessed_checkpoint",
            "UPDATE witness_cosignature SET line = 'forged'",
            "DELETE FROM witness_cosignature",
        ];
        if backend == Backend::Postgres {
            refused.extend(["TRUNCATE witnessed_checkpoint", "TRUNCATE witness_cosignature"]);
        }
        for sql in refused {
            let e = owner_exec(&db, sql).await.expect_err(sql);
            assert!(e.contains("insert-only"), "{sql}: {e}");
        }
    }
}
