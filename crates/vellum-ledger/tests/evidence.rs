//! The Merkle tree, proofs and signed checkpoints against real databases
//! (SQLite and PostgreSQL): roots and proofs match an independent
//! recomputation from the bodies, and `verify_all` detects a truncated
//! tail, a rewritten and re-chained history, and forged or wrong-key
//! checkpoints.

use vellum_ledger::checkpoint::Checkpoint;
use vellum_ledger::hash::{self, Hash};
use vellum_ledger::merkle;
use vellum_ledger::note::NoteSigner;
use vellum_ledger::store::{AnyStore, Store};
use vellum_ledger::testing::{Backend, TestDb};
use vellum_ledger::verify::ProblemKind;
use vellum_ledger::{backend_tests, DatabaseUrl, Draft, Ledger, WriterSettings, STAMP_PLACEHOLDER};

async fn open(db: &TestDb) -> (Ledger, AnyStore) {
    let url = DatabaseUrl::parse(&db.url).expect("database url");
    let store = AnyStore::connect(&url, None).await.expect("connect");
    store.migrate().await.expect("migrate");
    (
        Ledger::start(store.clone(), WriterSettings::default()),
        store,
    )
}

fn draft(n: u32, tag: &str) -> Draft {
    let id = uuid::Uuid::new_v4().to_string();
    let body = format!(
        r#"{{"id":"{id}","meta":{{"lastUpdated":"{STAMP_PLACEHOLDER}"}},"n":{n},"tag":"{tag}"}}"#
    );
    let at = body.find(STAMP_PLACEHOLDER).expect("placeholder");
    Draft::with_index(id, body.into_bytes(), at, vec![]).expect("draft")
}

/// Appends `n` entries in batches of varying size (1, 2, 3, …).
async fn fill(ledger: &Ledger, n: u32, tag: &str) {
    let mut i = 0;
    let mut size = 1;
    while i < n {
        let batch: Vec<Draft> = (i..(i + size).min(n)).map(|k| draft(k, tag)).collect();
        i += batch.len() as u32;
        ledger.append_all(batch).await.expect("append");
        size += 1;
    }
}

/// The leaf hashes recomputed from the stored bodies (not the stored column).
async fn leaves(store: &AnyStore) -> Vec<Hash> {
    let rows = store.entries_after(0, 100_000).await.expect("entries");
    rows.iter()
        .map(|e| hash::leaf_hash(e.body.as_bytes()))
        .collect()
}

/// RFC 6962 MTH, recursively, independent of the stored tree.
fn mth(l: &[Hash]) -> Hash {
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

/// Raw SQL as the database owner, with the insert-only triggers dropped.
async fn owner_sql(store: &AnyStore, backend: Backend, statements: &[&str]) {
    let drops: &[&str] = match backend {
        Backend::Sqlite => &[
            "DROP TRIGGER IF EXISTS entry_no_update",
            "DROP TRIGGER IF EXISTS entry_no_delete",
            "DROP TRIGGER IF EXISTS entry_insert_extends_chain",
            "DROP TRIGGER IF EXISTS merkle_node_no_delete",
            "DROP TRIGGER IF EXISTS search_index_no_delete",
            "DROP TRIGGER IF EXISTS entry_key_no_delete",
            "PRAGMA foreign_keys = OFF",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER IF EXISTS entry_no_update_delete ON entry",
            "DROP TRIGGER IF EXISTS entry_insert_extends_chain ON entry",
            "DROP TRIGGER IF EXISTS merkle_node_no_update_delete ON merkle_node",
            "DROP TRIGGER IF EXISTS search_index_no_update_delete ON search_index",
            "DROP TRIGGER IF EXISTS entry_key_no_update_delete ON entry_key",
        ],
    };
    for sql in drops.iter().chain(statements) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match store {
            AnyStore::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
            AnyStore::Postgres(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
        }
        .expect("owner sql");
    }
}

backend_tests! {
    async fn roots_and_proofs_match_an_independent_recomputation(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        // Past 256 entries, so nodes of the two lowest stored levels (4 and
        // 8) and the levels between them are all read.
        fill(&ledger, 300, "a").await;
        let leaves = leaves(&store).await;
        assert_eq!(leaves.len(), 300);
        for n in (1..=45u64).chain([255, 256, 257, 299, 300]) {
            let root = mth(&leaves[..n as usize]);
            assert_eq!(ledger.tree_root(n).await.expect("root"), root, "root of {n}");
            for seq in [1, n / 2 + 1, n] {
                let p = ledger.inclusion_proof(seq, n).await.expect("read").expect("in range");
                assert_eq!(p.leaf_index, seq - 1);
                assert_eq!(p.leaf_hash, leaves[(seq - 1) as usize]);
                assert!(merkle::verify_inclusion(seq - 1, n, &p.leaf_hash, &p.proof, &root));
                // A wrong proof: another leaf, or one flipped bit.
                let other = leaves[(seq as usize) % leaves.len()];
                assert!(!merkle::verify_inclusion(seq - 1, n, &other, &p.proof, &root));
                if let Some(first) = p.proof.first() {
                    let mut bad = p.proof.clone();
                    bad[0] = hash::node_hash(first, first);
                    assert!(!merkle::verify_inclusion(seq - 1, n, &p.leaf_hash, &bad, &root));
                }
            }
            for m in [1, n / 3 + 1, n] {
                let p = ledger.consistency_proof(m, n).await.expect("read").expect("in range");
                let first = mth(&leaves[..m as usize]);
                assert!(merkle::verify_consistency(m, n, &first, &root, &p), "{m} -> {n}");
                if m < n {
                    let other = mth(&leaves[1..m as usize + 1]);
                    assert!(!merkle::verify_consistency(m, n, &other, &root, &p));
                }
            }
        }
        assert!(ledger.inclusion_proof(301, 301).await.expect("read").is_none());
        assert!(ledger.consistency_proof(5, 301).await.expect("read").is_none());
        // A second process's ledger (no cached frontier) extends the same tree.
        let (other, _) = open(&db).await;
        fill(&other, 7, "b").await;
        fill(&ledger, 3, "c").await;
        let leaves = self::leaves(&store).await;
        assert_eq!(ledger.tree_root(310).await.expect("root"), mth(&leaves));
    }

    async fn checkpoints_are_signed_stored_once_and_verified(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        let key = NoteSigner::generate("vellum.test/log").expect("key");
        fill(&ledger, 10, "a").await;
        let note = ledger.checkpoint(&key).await.expect("checkpoint");
        assert_eq!(ledger.checkpoint(&key).await.expect("again"), note);
        let cp = Checkpoint::open(&note, &key.verifier()).expect("signed");
        assert_eq!(cp.size, 10);
        assert_eq!(cp.root, mth(&leaves(&store).await));
        assert_eq!(cp.chain, ledger.head().await.expect("head").chain_hash);
        fill(&ledger, 5, "b").await;
        ledger.checkpoint(&key).await.expect("checkpoint");
        let latest = ledger.stored_checkpoint(None).await.expect("read").expect("one");
        assert_eq!(latest.tree_size, 15);
        let v = ledger.verify_all(Some(&key.verifier())).await.expect("verify");
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.checkpoints, 2);
        // The wrong key: every checkpoint is unsigned for it.
        let wrong = NoteSigner::generate("vellum.test/log").expect("key");
        let v = ledger.verify_all(Some(&wrong.verifier())).await.expect("verify");
        assert_eq!(v.problem.expect("problem").kind, ProblemKind::CheckpointForged);
        // The checkpoint table refuses changes.
        let refused = match &store {
            AnyStore::Sqlite(s) => sqlx::query("DELETE FROM checkpoint").execute(s.pool()).await.is_err(),
            AnyStore::Postgres(s) => sqlx::query("DELETE FROM checkpoint").execute(s.pool()).await.is_err(),
        };
        assert!(refused);
    }

    async fn a_forged_checkpoint_is_reported(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        let key = NoteSigner::generate("vellum.test/log").expect("key");
        fill(&ledger, 6, "a").await;
        ledger.checkpoint(&key).await.expect("checkpoint");
        // A checkpoint claiming 3 entries, signed by someone else's key.
        let forger = NoteSigner::generate("vellum.test/log").expect("key");
        let fake = Checkpoint {
            origin: "vellum.test/log".into(),
            size: 3,
            root: ledger.tree_root(3).await.expect("root"),
            chain: [0; 32],
            time: "2026-01-01T00:00:00Z".into(),
        }
        .sign(&forger)
        .expect("sign");
        let sql = format!(
            "INSERT INTO checkpoint (tree_size, note, created_at) VALUES (3, '{}', 'x')",
            fake.replace('\'', "''")
        );
        owner_sql(&store, backend, &[&sql]).await;
        let v = ledger.verify_all(Some(&key.verifier())).await.expect("verify");
        let p = v.problem.expect("problem");
        assert_eq!((p.kind, p.seq), (ProblemKind::CheckpointForged, 3));
    }

    async fn a_truncated_tail_is_reported(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        let key = NoteSigner::generate("vellum.test/log").expect("key");
        fill(&ledger, 12, "a").await;
        ledger.checkpoint(&key).await.expect("checkpoint");
        owner_sql(&store, backend, &[
            "DELETE FROM search_index WHERE seq > 9",
            "DELETE FROM entry WHERE seq > 9",
        ]).await;
        // The chain alone still holds.
        assert!(vellum_ledger::verify::verify(&store).await.expect("verify").ok());
        let v = ledger.verify_all(Some(&key.verifier())).await.expect("verify");
        let p = v.problem.expect("problem");
        assert_eq!((p.kind, p.seq), (ProblemKind::Truncated, 10));
    }

    async fn a_rewritten_rechained_history_is_reported(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        let key = NoteSigner::generate("vellum.test/log").expect("key");
        fill(&ledger, 8, "a").await;
        ledger.checkpoint(&key).await.expect("checkpoint");
        drop(ledger);
        // The owner replaces every entry and recomputes chain and tree.
        owner_sql(&store, backend, &[
            "DELETE FROM search_index",
            "DELETE FROM entry_key",
            "DELETE FROM entry",
            "DELETE FROM merkle_node",
        ]).await;
        let (forger, store) = open(&db).await;
        fill(&forger, 8, "rewritten").await;
        assert!(vellum_ledger::verify::verify(&store).await.expect("verify").ok());
        let v = forger.verify_all(Some(&key.verifier())).await.expect("verify");
        let p = v.problem.expect("problem");
        assert_eq!((p.kind, p.seq), (ProblemKind::HistoryRewritten, 8));
    }

    async fn a_tampered_tree_node_is_reported(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        // 16 entries complete the first stored node above the leaves (level
        // 4); the owner removes it.
        fill(&ledger, 16, "a").await;
        owner_sql(&store, backend, &[
            "DELETE FROM merkle_node WHERE level = 4",
        ]).await;
        let v = ledger.verify_all(None).await.expect("verify");
        assert_eq!(v.problem.expect("problem").kind, ProblemKind::TreeMismatch);
    }

    async fn a_stored_node_no_root_is_folded_from_is_still_checked(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        // 288 entries: the root folds from the level-8 node over entries
        // 1..=256 and two level-4 nodes after it; the level-4 node over
        // entries 81..=96 serves proofs only. The owner replaces it.
        fill(&ledger, 288, "a").await;
        assert!(ledger.verify_all(None).await.expect("verify").ok());
        owner_sql(&store, backend, &[
            "DELETE FROM merkle_node WHERE level = 4 AND idx = 5",
            "INSERT INTO merkle_node (level, idx, hash) \
             SELECT 4, 5, hash FROM merkle_node WHERE level = 4 AND idx = 6",
        ]).await;
        // The node is the sibling in entry 65's proof: that proof, served
        // from it, no longer proves the entry.
        let root = mth(&leaves(&store).await);
        let proof = ledger.inclusion_proof(65, 288).await.expect("proof").expect("in range");
        assert!(!vellum_ledger::merkle::verify_inclusion(64, 288, &proof.leaf_hash, &proof.proof, &root));
        let p = ledger.verify_all(None).await.expect("verify").problem.expect("problem");
        assert_eq!(p.kind, ProblemKind::TreeMismatch);
        assert_eq!(p.seq, 1, "{}", p.detail);
    }

    async fn a_store_written_with_every_level_still_proves_and_verifies(backend) {
        // Versions before 2026-12-06 stored the complete nodes of every
        // level above the leaves; now only every fourth is written and read.
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        fill(&ledger, 40, "a").await;
        let leaves = leaves(&store).await;
        let mut inserts = Vec::new();
        for level in (1..=5u32).filter(|l| !merkle::is_stored(*l)) {
            for idx in 0..(40usize >> level) {
                let h = mth(&leaves[idx << level..(idx + 1) << level]);
                let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
                let lit = match backend {
                    Backend::Sqlite => format!("X'{hex}'"),
                    Backend::Postgres => format!("'\\x{hex}'::bytea"),
                };
                inserts.push(format!(
                    "INSERT INTO merkle_node (level, idx, hash) VALUES ({level}, {idx}, {lit})"
                ));
            }
        }
        // 20 + 10 + 5 nodes of levels 1 to 3, and one of level 5.
        assert_eq!(inserts.len(), 36);
        let inserts: Vec<&str> = inserts.iter().map(String::as_str).collect();
        owner_sql(&store, backend, &inserts).await;
        drop(ledger);
        // A new process (no cached frontier) reads the old store and extends it.
        let (ledger, store) = open(&db).await;
        fill(&ledger, 9, "b").await;
        let leaves = self::leaves(&store).await;
        let root = mth(&leaves);
        assert_eq!(ledger.tree_root(49).await.expect("root"), root);
        for seq in [1u64, 17, 33, 40, 41, 49] {
            let p = ledger.inclusion_proof(seq, 49).await.expect("proof").expect("in range");
            assert!(merkle::verify_inclusion(seq - 1, 49, &p.leaf_hash, &p.proof, &root), "{seq}");
        }
        assert!(ledger.verify_all(None).await.expect("verify").ok());
    }

    async fn entries_stored_before_the_tree_get_one_on_migrate(backend) {
        let db = TestDb::new(backend).await;
        let (ledger, store) = open(&db).await;
        // 37 entries: two stored nodes (level 4) to rebuild.
        fill(&ledger, 37, "a").await;
        drop(ledger);
        // As if stored before the tree existed.
        owner_sql(&store, backend, &["DELETE FROM merkle_node"]).await;
        let (ledger, store) = open(&db).await;
        fill(&ledger, 4, "b").await;
        assert_eq!(ledger.tree_root(41).await.expect("root"), mth(&leaves(&store).await));
        let proof = ledger.inclusion_proof(3, 41).await.expect("proof").expect("in range");
        assert!(vellum_ledger::merkle::verify_inclusion(
            2,
            41,
            &proof.leaf_hash,
            &proof.proof,
            &mth(&leaves(&store).await)
        ));
        assert!(ledger.verify_all(None).await.expect("verify").ok());
    }
}
