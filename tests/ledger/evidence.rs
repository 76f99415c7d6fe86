//! Checkpoints and proofs end to end, on both backends: the admin routes
//! (signed note, proof JSON checked against an independent recomputation
//! from the bodies `GET` returns), and the command line — export and its
//! offline verification, proof bundles, verify with checkpoints — each
//! tampered copy detected.

use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use vellum::config::RawSettings;
use vellum::ledger::checkpoint::Checkpoint;
use vellum::ledger::hash::{self, Hash};
use vellum::ledger::merkle;
use vellum::ledger::note::NoteSigner;
use vellum_testkit::*;

fn b64(h: &Value) -> Hash {
    hash::from_slice(&B64.decode(h.as_str().expect("string")).expect("base64")).expect("32 bytes")
}

/// RFC 6962 MTH, recursively, from the leaves.
pub(crate) fn mth(l: &[Hash]) -> Hash {
    match l.len() {
        0 => merkle::empty_root(),
        1 => l[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            hash::node_hash(&mth(&l[..k]), &mth(&l[k..]))
        }
    }
}

fn vellum(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(vellum_bin())
        .args(args)
        .output()
        .expect("run vellum");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

backend_tests! {
    async fn checkpoints_proofs_export_and_bundles(backend) {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        let (code, vkey_line, _) = vellum(&["keygen", "--origin", "vellum.test/log", "--out", keys.to_str().unwrap()]);
        assert_eq!(code, 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys.join("log.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let vkey = std::fs::read_to_string(keys.join("log.vkey")).unwrap();
        assert_eq!(vkey.trim(), vkey_line.trim());
        let key_file = keys.join("log.key").display().to_string();
        let signer = NoteSigner::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
        let settings = vellum::config::Settings::validate(RawSettings {
            signing_key_file: Some(key_file.clone()),
            ..vellum_testkit::raw_settings_for(&db.url)
        })
        .unwrap();
        let app = spawn_app_with(settings).await;
        let mut leaves = Vec::new();
        let mut ids = Vec::new();
        for n in 0..6 {
            let r = app.post_event(&sample_event(n)).await;
            assert_eq!(r.status(), 201);
            let body: Value = r.json().await.unwrap();
            let id = body["id"].as_str().unwrap().to_string();
            let stored = app.client.get(format!("{}/fhir/AuditEvent/{id}", app.base)).send().await.unwrap().bytes().await.unwrap();
            leaves.push(hash::leaf_hash(&stored));
            ids.push(id);
        }
        let r = app.client.post(format!("{}/admin/checkpoints", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let note = r.text().await.unwrap();
        let r = app.client.get(format!("{}/admin/checkpoints/latest", app.base)).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.text().await.unwrap(), note);
        let cp = Checkpoint::open(&note, &signer.verifier()).expect("signed by the configured key");
        assert_eq!((cp.size, cp.root), (6, mth(&leaves)));

        for seq in 1..=6u64 {
            let (s, p) = app.get_json(&format!("/admin/proof/inclusion?seq={seq}&size=6")).await;
            assert_eq!(s, 200);
            assert_eq!(p["leaf_index"], seq - 1);
            assert_eq!(p["tree_size"], 6);
            assert_eq!(b64(&p["leaf_hash"]), leaves[seq as usize - 1]);
            let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(b64).collect();
            assert!(merkle::verify_inclusion(seq - 1, 6, &leaves[seq as usize - 1], &proof, &cp.root));
            assert!(!merkle::verify_inclusion(seq - 1, 6, &leaves[seq as usize % 6], &proof, &cp.root));
        }
        for m in 1..=6u64 {
            let (s, p) = app.get_json(&format!("/admin/proof/consistency?from={m}&to=6")).await;
            assert_eq!(s, 200);
            assert_eq!((p["first"].as_u64(), p["second"].as_u64()), (Some(m), Some(6)));
            let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(b64).collect();
            assert!(merkle::verify_consistency(m, 6, &mth(&leaves[..m as usize]), &cp.root, &proof));
        }
        for bad in ["inclusion?seq=7&size=6", "inclusion?seq=0&size=6", "inclusion?seq=x", "consistency?from=5&to=9"] {
            let (s, _) = app.get_json(&format!("/admin/proof/{bad}")).await;
            assert_eq!(s, 400, "{bad}");
        }

        // The command line, as an auditor and an operator use it.
        let url = db.url.as_str();
        let env_key = ["--database-url", url];
        let vkey_path = keys.join("log.vkey").display().to_string();
        let exp = dir.path().join("exp").display().to_string();
        let mut args = vec!["export", "--out", &exp];
        args.extend(env_key);
        let out = Command::new(vellum_bin()).args(&args).env("VELLUM_SIGNING_KEY_FILE", &key_file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (code, _, err) = vellum(&["verify", "--export", &exp, "--vkey", &vkey_path]);
        assert_eq!(code, 0, "{err}");
        let other = NoteSigner::generate("vellum.test/log").unwrap();
        let other_vkey = dir.path().join("other.vkey");
        std::fs::write(&other_vkey, other.verifier().to_vkey()).unwrap();
        let (code, _, _) = vellum(&["verify", "--export", &exp, "--vkey", other_vkey.to_str().unwrap()]);
        assert_eq!(code, 1, "a checkpoint under another key is refused");
        let lines = std::fs::read_to_string(format!("{exp}/entries.jsonl")).unwrap();
        let cut: Vec<&str> = lines.lines().take(5).collect();
        std::fs::write(format!("{exp}/entries.jsonl"), cut.join("\n") + "\n").unwrap();
        let (code, _, _) = vellum(&["verify", "--export", &exp, "--vkey", &vkey_path]);
        assert_eq!(code, 1, "a truncated export is detected");

        let bundle = dir.path().join("p.json").display().to_string();
        let out = Command::new(vellum_bin())
            .args(["proof", "--id", &ids[2], "--out", &bundle, "--database-url", url])
            .env("VELLUM_SIGNING_KEY_FILE", &key_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(vellum(&["verify-proof", &bundle, "--vkey", &vkey_path]).0, 0);
        let mut b: Value = serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
        b["leaf_index"] = 1.into();
        b["seq"] = 2.into();
        std::fs::write(&bundle, b.to_string()).unwrap();
        assert_eq!(vellum(&["verify-proof", &bundle, "--vkey", &vkey_path]).0, 1, "a wrong proof is refused");

        let (code, out, err) = vellum(&["verify", "--database-url", url, "--vkey", &vkey_path]);
        assert_eq!(code, 0, "{err}");
        // Piped, the progress bar draws nothing: stderr stays empty and
        // stdout is the one verdict line.
        // (Unknown VELLUM_* variables of the test environment are warned of.)
        assert!(
            err.lines().all(|l| l.starts_with("vellum: warning: VELLUM_")),
            "nothing on stderr when it is not a terminal: {err:?}"
        );
        assert!(out.starts_with("ok: ") && out.lines().count() == 1, "{out:?}");
        let (code, _, _) = vellum(&["verify", "--database-url", url, "--vkey", other_vkey.to_str().unwrap()]);
        assert_eq!(code, 1, "verify with the wrong key reports a forged checkpoint");
    }
}
