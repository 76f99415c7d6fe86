//! RFC 3161 time seals of checkpoints, on both backends, against real
//! time-stamping authorities made here with `openssl ts -reply` behind a
//! small HTTP shim: a new checkpoint gets a token that `openssl ts -verify`
//! accepts and vellum's own check accepts; a token from an untrusted TSA is
//! never stored; a token for other data or under another CA is refused by
//! `vellum verify --export` and `vellum verify`; tokens are insert-only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vellum::config::{PathList, RawSettings};
use vellum::ledger::note::NoteSigner;
use vellum::ledger::rfc3161;
use vellum_testkit::*;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run openssl");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA and a TSA certificate it issued (extendedKeyUsage critical
/// timeStamping), with the `openssl ts -reply` configuration that signs
/// with them, all under `dir/name/`.
struct Tsa {
    dir: PathBuf,
}

impl Tsa {
    fn new(root: &Path, name: &str) -> Tsa {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name} test CA"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "tsa.key",
                "-out",
                "tsa.csr",
                "-subj",
                &format!("/CN={name} test TSA"),
            ],
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=critical,timeStamping\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "2",
                "-days",
                "2",
                "-out",
                "tsa.pem",
                "-extfile",
                "ext.cnf",
            ],
        );
        std::fs::write(dir.join("serial"), "01\n").unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa_config\n\n[ tsa_config ]\nserial = {d}/serial\n\
                 crypto_device = builtin\nsigner_cert = {d}/tsa.pem\ncerts = {d}/ca.pem\n\
                 signer_key = {d}/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
                 digests = sha256\naccuracy = secs:1\nordering = no\ntsa_name = no\n\
                 ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
            ),
        )
        .unwrap();
        Tsa { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `openssl ts -reply` for the query `tsq`: the TimeStampResp DER.
    fn reply(&self, tsq: &[u8], n: u64) -> Vec<u8> {
        let q = self.dir.join(format!("q{n}.tsq"));
        let r = self.dir.join(format!("r{n}.tsr"));
        std::fs::write(&q, tsq).unwrap();
        run(Command::new("openssl").args([
            "ts",
            "-reply",
            "-config",
            self.dir.join("tsa.cnf").to_str().unwrap(),
            "-queryfile",
            q.to_str().unwrap(),
            "-out",
            r.to_str().unwrap(),
        ]));
        std::fs::read(r).unwrap()
    }

    /// A token (not a response) for `data`, made with openssl alone.
    fn token_for(&self, data: &[u8]) -> Vec<u8> {
        let d = self.dir.join("other.data");
        std::fs::write(&d, data).unwrap();
        let q = self.dir.join("other.tsq");
        let t = self.dir.join("other.tst");
        run(Command::new("openssl").args([
            "ts",
            "-query",
            "-data",
            d.to_str().unwrap(),
            "-sha256",
            "-cert",
            "-out",
            q.to_str().unwrap(),
        ]));
        run(Command::new("openssl").args([
            "ts",
            "-reply",
            "-config",
            self.dir.join("tsa.cnf").to_str().unwrap(),
            "-queryfile",
            q.to_str().unwrap(),
            "-token_out",
            "-out",
            t.to_str().unwrap(),
        ]));
        std::fs::read(t).unwrap()
    }

    /// Serves `POST` time-stamp queries over HTTP/1.1, one `openssl ts
    /// -reply` per request; returns the URL.
    async fn serve(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/tsa", listener.local_addr().unwrap());
        let tsa = Arc::new(self);
        let count = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (tsa, count) = (tsa.clone(), count.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, len) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let query = buf[head_end..head_end + len].to_vec();
                    let n = count.fetch_add(1, Ordering::Relaxed);
                    let reply = tokio::task::spawn_blocking(move || tsa.reply(&query, n))
                        .await
                        .unwrap();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        reply.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        url
    }
}

fn vellum(args: &[&str]) -> (i32, String) {
    let out = Command::new(vellum_bin())
        .args(args)
        .output()
        .expect("run vellum");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `vellum_time_seals_total` count of `outcome` in `/metrics`.
async fn seal_count(app: &TestApp, outcome: &str) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("vellum_time_seals_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

backend_tests! {
    async fn checkpoints_are_sealed_by_a_trusted_tsa_and_checked_offline(backend) {
        if !tool_available("openssl", on_path("openssl")) {
            return;
        }
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let good = Tsa::new(dir.path(), "good");
        let rogue = Tsa::new(dir.path(), "rogue");
        let (good_ca, rogue_ca) = (good.ca(), rogue.ca());
        let other_data_token = good.token_for(b"not the checkpoint\n");
        let good_url = good.serve().await;
        let rogue_url = rogue.serve().await;

        let signer = NoteSigner::generate("vellum.test/log").unwrap();
        let keys = dir.path().join("keys");
        vellum::evidence::write_key_files(&keys, &signer).unwrap();
        let key_file = keys.join("log.key").display().to_string();
        let vkey = keys.join("log.vkey").display().to_string();
        let settings = vellum::config::Settings::validate(RawSettings {
            signing_key_file: Some(key_file.clone()),
            tsa_urls: PathList(vec![good_url.clone(), rogue_url.clone()]),
            tsa_ca_file: Some(good_ca.display().to_string()),
            ..raw_settings_for(&db.url)
        })
        .unwrap();
        let app = spawn_app_with(settings).await;
        for n in 0..3 {
            assert_eq!(app.post_event(&sample_event(n)).await.status(), 201);
        }
        let r = app.client.post(format!("{}/admin/checkpoints", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let note = r.text().await.unwrap();

        // The sealer runs in the background: wait for the trusted TSA's token
        // and for the rogue TSA's token to have been refused.
        let mut seals = Vec::new();
        for _ in 0..600 {
            let (s, body) = app.get_json("/admin/checkpoints/3/timestamps").await;
            assert_eq!(s, 200);
            seals = body["timestamps"].as_array().cloned().unwrap_or_default();
            if !seals.is_empty() && seal_count(&app, "invalid").await > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(seal_count(&app, "invalid").await > 0, "the rogue TSA's token is refused");
        assert_eq!(seals.len(), 1, "only the trusted TSA's token is stored: {seals:?}");
        assert_eq!(seals[0]["tsa"], good_url.as_str());
        let token = B64.decode(seals[0]["token"].as_str().unwrap()).unwrap();
        let (s, _) = app.get_json("/admin/checkpoints/999/timestamps").await;
        assert_eq!(s, 404);

        // Independent check: openssl accepts the token for the note bytes.
        let note_path = dir.path().join("note");
        let token_path = dir.path().join("token.tst");
        std::fs::write(&note_path, &note).unwrap();
        std::fs::write(&token_path, &token).unwrap();
        openssl(dir.path(), &[
            "ts", "-verify", "-data", note_path.to_str().unwrap(), "-in", token_path.to_str().unwrap(),
            "-token_in", "-CAfile", good_ca.to_str().unwrap(),
        ]);
        // vellum's own check: accepted under the good CA only, for the note only.
        let trust = rfc3161::trust_store(&std::fs::read(&good_ca).unwrap()).unwrap();
        let rogue_trust = rfc3161::trust_store(&std::fs::read(&rogue_ca).unwrap()).unwrap();
        let info = rfc3161::verify_token(&token, note.as_bytes(), Some(&trust), None).unwrap();
        assert_eq!(info.gen_time, seals[0]["gen_time"].as_str().unwrap());
        assert!(rfc3161::verify_token(&token, b"other", Some(&trust), None).is_err());
        assert!(rfc3161::verify_token(&token, note.as_bytes(), Some(&rogue_trust), None).is_err());
        assert!(rfc3161::verify_token(&other_data_token, note.as_bytes(), Some(&trust), None).is_err());

        // Export: the seal beside the checkpoint, checked offline.
        let exp = dir.path().join("exp");
        let exp_s = exp.display().to_string();
        let out = Command::new(vellum_bin())
            .args(["export", "--out", &exp_s, "--database-url", &db.url])
            .env("VELLUM_SIGNING_KEY_FILE", &key_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(exp.join("checkpoint.tsr.1")).unwrap(), token);
        assert!(!exp.join("checkpoint.tsr.2").exists());
        let (good_ca_s, rogue_ca_s) = (good_ca.display().to_string(), rogue_ca.display().to_string());
        let (code, err) = vellum(&["verify", "--export", &exp_s, "--vkey", &vkey, "--tsa-ca", &good_ca_s]);
        assert_eq!(code, 0, "{err}");
        let (code, _) = vellum(&["verify", "--export", &exp_s, "--vkey", &vkey, "--tsa-ca", &rogue_ca_s]);
        assert_eq!(code, 1, "a seal from a TSA outside the trusted CA is refused");
        std::fs::write(exp.join("checkpoint.tsr.1"), &other_data_token).unwrap();
        let (code, err) = vellum(&["verify", "--export", &exp_s, "--vkey", &vkey, "--tsa-ca", &good_ca_s]);
        assert_eq!(code, 1, "a seal of other data is refused");
        assert!(err.contains("message imprint"), "{err}");

        // The stored seals, checked by `vellum verify`.
        let (code, err) = vellum(&["verify", "--database-url", &db.url, "--vkey", &vkey, "--tsa-ca", &good_ca_s]);
        assert_eq!(code, 0, "{err}");
        let (code, _) = vellum(&["verify", "--database-url", &db.url, "--vkey", &vkey, "--tsa-ca", &rogue_ca_s]);
        assert_eq!(code, 1, "stored seals under an untrusted CA are reported");

        // Insert-only: the database refuses to change or remove a seal.
        let refused = match backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                let u = sqlx::query("UPDATE time_seal SET token = x'00'").execute(&pool).await;
                let d = sqlx::query("DELETE FROM time_seal").execute(&pool).await;
                u.is_err() && d.is_err()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                let u = sqlx::query("UPDATE time_seal SET token = '\\x00'").execute(&pool).await;
                let d = sqlx::query("DELETE FROM time_seal").execute(&pool).await;
                let t = sqlx::query("TRUNCATE time_seal").execute(&pool).await;
                u.is_err() && d.is_err() && t.is_err()
            }
        };
        assert!(refused, "UPDATE/DELETE of a time seal must be refused");
        let (_, body) = app.get_json("/admin/checkpoints/3/timestamps").await;
        assert_eq!(body["timestamps"][0]["token"], seals[0]["token"]);

        // `/admin/verify` checks the stored seals as well, against the
        // configured TSA certificates.
        let (s, body) = app.get_json("/admin/verify").await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["time_seals"]["seals"], 1, "{body}");
        // A genuine token of other data, stored for checkpoint 3 by whoever
        // can insert rows, is reported there and by `vellum verify`.
        let insert = "INSERT INTO time_seal (tree_size, tsa, token, gen_time, created_at) \
                      VALUES (3, 'http://forged.example/', $1, '2026-01-01T00:00:00Z', '2999-01-01T00:00:00Z')";
        match backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                sqlx::query(insert).bind(&other_data_token).execute(&pool).await.unwrap();
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                sqlx::query(insert).bind(&other_data_token).execute(&pool).await.unwrap();
            }
        }
        let (s, body) = app.get_json("/admin/verify").await;
        assert_eq!(s, 409, "{body}");
        let problem = body["time_seals"]["problem"].as_str().unwrap_or_default();
        assert!(problem.contains("message imprint"), "{body}");
        assert!(problem.contains("forged.example"), "{body}");
        let (code, err) = vellum(&["verify", "--database-url", &db.url, "--vkey", &vkey, "--tsa-ca", &good_ca_s]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("message imprint"), "{err}");
    }
}
