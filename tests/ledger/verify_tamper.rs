//! `vellum verify` against real databases tampered with by their owner:
//! build a ledger of 20 entries through the `Ledger`, drop the insert-only
//! triggers (as the owner can), tamper with raw SQL, and check that verify
//! names the first bad seq and what happened there — on SQLite and on
//! PostgreSQL. Plus the `verify` command line itself.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};

use vellum_testkit::{Backend, TestDb};

use vellum::config::{DatabaseUrl, WriterSettings};
use vellum::fhir::create::prepare_audit_event;
use vellum::ledger::hash::{self, Hash};
use vellum::ledger::verify::{verify, ProblemKind, Verdict};
use vellum::ledger::{Ledger, Receipt};
use vellum::store::{AnyStore, PostgresStore, SqliteStore, Store, StoredEntry};

const ENTRIES: i64 = 20;
/// The entry most scenarios tamper with.
const K: i64 = 7;
/// Added to seq values to move rows out of the way while renumbering.
const FAR: i64 = 1_000_000;

const EVENT: &str = r#"{"resourceType":"AuditEvent","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110112"},"action":"E","recorded":"2026-01-01T00:00:00Z","outcome":"0","agent":[{"requestor":true,"who":{"display":"dr x"}}],"source":{"observer":{"display":"pacs"}}}"#;

/// A fresh database (the harness's `TestDb`, dropped with it) holding a
/// ledger of `ENTRIES` entries.
struct Fixture {
    backend: Backend,
    url: String,
    receipts: Vec<Receipt>,
    _db: TestDb,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let db = TestDb::new(backend).await;
        let mut fixture = Fixture {
            backend,
            url: db.url.clone(),
            receipts: Vec::new(),
            _db: db,
        };
        let store = match backend {
            Backend::Sqlite => AnyStore::Sqlite(
                SqliteStore::open(&fixture.sqlite_path())
                    .await
                    .expect("open sqlite"),
            ),
            Backend::Postgres => AnyStore::Postgres(
                PostgresStore::connect(&fixture.url, None)
                    .await
                    .expect("connect postgres"),
            ),
        };
        store.migrate().await.expect("migrate");
        let ledger = Ledger::start(store, WriterSettings::default());
        for _ in 0..ENTRIES {
            let draft = prepare_audit_event(EVENT.as_bytes()).expect("valid AuditEvent");
            let committed = ledger.append(draft).await.expect("append");
            fixture.receipts.push(committed.receipt);
        }
        let seqs: Vec<i64> = fixture.receipts.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=ENTRIES).collect::<Vec<_>>());
        fixture
    }

    fn sqlite_path(&self) -> PathBuf {
        PathBuf::from(self.url.trim_start_matches("sqlite://"))
    }

    /// Opens the store as `vellum verify` does and verifies it.
    async fn verify(&self) -> Verdict {
        let url = DatabaseUrl::parse(&self.url).expect("database url");
        let store = AnyStore::connect(&url, None).await.expect("open store");
        verify(&store).await.expect("verify reads the store")
    }

    async fn entries(&self) -> Vec<StoredEntry> {
        let url = DatabaseUrl::parse(&self.url).expect("database url");
        let store = AnyStore::connect(&url, None).await.expect("open store");
        store.entries_after(0, 1000).await.expect("read entries")
    }

    async fn entry(&self, seq: i64) -> StoredEntry {
        let e = self.entries().await;
        e.into_iter()
            .find(|e| e.seq == seq)
            .unwrap_or_else(|| panic!("no entry {seq}"))
    }

    /// A raw connection of the owner, with the insert-only triggers dropped.
    async fn owner(&self) -> Owner {
        let mut owner = match self.backend {
            Backend::Sqlite => Owner::Sqlite(
                SqliteConnection::connect(&format!("sqlite://{}", self.sqlite_path().display()))
                    .await
                    .expect("raw sqlite connection"),
            ),
            Backend::Postgres => Owner::Pg(
                PgConnection::connect(&self.url)
                    .await
                    .expect("raw postgres connection"),
            ),
        };
        let drops: &[&str] = match self.backend {
            Backend::Sqlite => &[
                "DROP TRIGGER entry_no_update",
                "DROP TRIGGER entry_no_delete",
                "DROP TRIGGER entry_insert_extends_chain",
                // The search index references entries; an attacker with the
                // owner's rights switches that check off too.
                "PRAGMA foreign_keys = OFF",
            ],
            Backend::Postgres => &[
                "DROP TRIGGER entry_no_update_delete ON entry",
                "DROP TRIGGER entry_no_truncate ON entry",
                "DROP TRIGGER entry_insert_extends_chain ON entry",
                "ALTER TABLE search_index DROP CONSTRAINT search_index_seq_fkey",
            ],
        };
        for sql in drops {
            owner.exec(sql, vec![]).await;
        }
        owner
    }
}

enum Arg {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// The database owner's raw connection (SQL uses `$n` placeholders, which
/// both backends accept).
enum Owner {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl Owner {
    async fn exec(&mut self, sql: &str, args: Vec<Arg>) {
        let result = match self {
            Owner::Sqlite(c) => {
                let mut q = sqlx::query(AssertSqlSafe(sql.to_string()));
                for a in args {
                    q = match a {
                        Arg::Int(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::Bytes(v) => q.bind(v),
                    };
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            }
            Owner::Pg(c) => {
                let mut q = sqlx::query(AssertSqlSafe(sql.to_string()));
                for a in args {
                    q = match a {
                        Arg::Int(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::Bytes(v) => q.bind(v),
                    };
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            }
        };
        if let Err(e) = result {
            panic!("tampering statement failed: {sql}: {e}");
        }
    }

    async fn set_column(&mut self, seq: i64, column: &str, value: Arg) {
        self.exec(
            &format!("UPDATE entry SET {column} = $1 WHERE seq = $2"),
            vec![value, Arg::Int(seq)],
        )
        .await;
    }

    async fn insert(&mut self, e: &StoredEntry) {
        self.exec(
            "INSERT INTO entry (seq, id, body, body_sha256, chain_hash, leaf_hash, last_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                Arg::Int(e.seq),
                Arg::Text(e.id.clone()),
                Arg::Text(e.body.clone()),
                Arg::Bytes(e.body_sha256.clone()),
                Arg::Bytes(e.chain_hash.clone()),
                Arg::Bytes(e.leaf_hash.clone()),
                Arg::Text(e.last_updated.clone()),
            ],
        )
        .await;
    }

    /// Adds `by` to the seq of every entry from `from` on (two steps, so
    /// the primary key never collides).
    async fn renumber_from(&mut self, from: i64, by: i64) {
        self.exec(
            "UPDATE entry SET seq = seq + $1 WHERE seq >= $2",
            vec![Arg::Int(FAR), Arg::Int(from)],
        )
        .await;
        self.exec(
            "UPDATE entry SET seq = seq - $1 WHERE seq >= $2",
            vec![Arg::Int(FAR - by), Arg::Int(FAR)],
        )
        .await;
    }
}

fn chain(e: &StoredEntry) -> Hash {
    hash::from_slice(&e.chain_hash).expect("32-byte chain hash")
}

/// The same event with another outcome: what an insider would "correct".
fn edited(body: &str) -> String {
    assert!(body.contains(r#""outcome":"0""#), "{body}");
    body.replace(r#""outcome":"0""#, r#""outcome":"8""#)
}

/// A row with honest hashes for `body` chained from `prev` at `seq` (id and
/// last_updated from `template`).
fn honest_row(seq: i64, prev: &Hash, body: String, template: &StoredEntry) -> StoredEntry {
    let sha = hash::body_sha256(body.as_bytes());
    StoredEntry {
        seq,
        id: template.id.clone(),
        body_sha256: sha.to_vec(),
        chain_hash: hash::chain_hash(prev, seq as u64, &sha).to_vec(),
        leaf_hash: hash::leaf_hash(body.as_bytes()).to_vec(),
        last_updated: template.last_updated.clone(),
        body,
    }
}

/// A new row (fresh id, edited copy of `template`'s body) with honest hashes
/// chained from `prev` at `seq`.
fn forged_row(seq: i64, prev: &Hash, template: &StoredEntry) -> StoredEntry {
    let id = uuid::Uuid::new_v4().to_string();
    let body = edited(&template.body).replace(&template.id, &id);
    StoredEntry {
        id,
        ..honest_row(seq, prev, body, template)
    }
}

#[track_caller]
fn assert_problem(v: &Verdict, seq: i64, kind: ProblemKind) -> String {
    let p = v
        .problem
        .as_ref()
        .unwrap_or_else(|| panic!("tampering went unnoticed: {v:?}"));
    assert_eq!((p.seq, p.kind), (seq, kind), "detail: {}", p.detail);
    p.detail.clone()
}

// ---- scenarios, each run on both backends ----

async fn intact_ledger_verifies_with_its_head_hash(backend: Backend) {
    let f = Fixture::new(backend).await;
    let v = f.verify().await;
    assert!(v.ok(), "{:?}", v.problem);
    assert_eq!(v.entries, ENTRIES);
    assert_eq!(
        v.head_chain_hash,
        f.receipts[ENTRIES as usize - 1].chain_hash_hex()
    );
}

async fn edited_body_is_reported_at_its_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let e = f.entry(K).await;
    let mut owner = f.owner().await;
    owner
        .set_column(K, "body", Arg::Text(edited(&e.body)))
        .await;
    let v = f.verify().await;
    let detail = assert_problem(&v, K, ProblemKind::BodyModified);
    assert!(detail.contains("body_sha256"), "{detail}");
    assert_eq!(v.entries, K - 1);
    assert_eq!(
        v.head_chain_hash,
        f.receipts[K as usize - 2].chain_hash_hex()
    );
}

async fn edited_body_with_rewritten_body_hash_is_reported_at_its_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let e = f.entry(K).await;
    let body = edited(&e.body);
    let mut owner = f.owner().await;
    owner
        .set_column(
            K,
            "body_sha256",
            Arg::Bytes(hash::body_sha256(body.as_bytes()).to_vec()),
        )
        .await;
    owner.set_column(K, "body", Arg::Text(body)).await;
    assert_problem(&f.verify().await, K, ProblemKind::BodyModified);
}

async fn consistently_rechained_body_is_reported_at_its_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let prev = chain(&f.entry(K - 1).await);
    let forged = forged_row(K, &prev, &f.entry(K).await);
    let mut owner = f.owner().await;
    owner.set_column(K, "body", Arg::Text(forged.body)).await;
    owner
        .set_column(K, "body_sha256", Arg::Bytes(forged.body_sha256))
        .await;
    owner
        .set_column(K, "chain_hash", Arg::Bytes(forged.chain_hash))
        .await;
    // leaf_hash is left: it still describes the original body.
    assert_problem(&f.verify().await, K, ProblemKind::BodyModified);
}

async fn fully_rewritten_entry_breaks_the_chain_at_the_next_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let prev = chain(&f.entry(K - 1).await);
    let original = f.entry(K).await;
    let forged = honest_row(K, &prev, edited(&original.body), &original);
    let mut owner = f.owner().await;
    owner.set_column(K, "body", Arg::Text(forged.body)).await;
    for (column, value) in [
        ("body_sha256", forged.body_sha256),
        ("chain_hash", forged.chain_hash),
        ("leaf_hash", forged.leaf_hash),
    ] {
        owner.set_column(K, column, Arg::Bytes(value)).await;
    }
    let v = f.verify().await;
    let detail = assert_problem(&v, K + 1, ProblemKind::ChainBroken);
    assert!(
        detail.contains(&format!("entry {K} (or an earlier one) was rewritten")),
        "{detail}"
    );
}

async fn altered_chain_hash_is_reported_as_chain_broken(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = f.owner().await;
    owner
        .set_column(
            K,
            "chain_hash",
            Arg::Bytes(hash::body_sha256(b"forged").to_vec()),
        )
        .await;
    let detail = assert_problem(&f.verify().await, K, ProblemKind::ChainBroken);
    assert!(detail.contains("chain_hash"), "{detail}");
}

async fn deleted_entry_is_reported_missing_at_its_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = f.owner().await;
    owner
        .exec("DELETE FROM entry WHERE seq = $1", vec![Arg::Int(K)])
        .await;
    let v = f.verify().await;
    assert_problem(&v, K, ProblemKind::EntryMissing);
    assert_eq!(v.entries, K - 1);
}

async fn deleted_entry_with_renumbered_successors_is_reported_missing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = f.owner().await;
    owner
        .exec("DELETE FROM entry WHERE seq = $1", vec![Arg::Int(K)])
        .await;
    owner.renumber_from(K + 1, -1).await;
    assert_eq!(f.entries().await.len() as i64, ENTRIES - 1);
    let detail = assert_problem(&f.verify().await, K, ProblemKind::EntryMissing);
    assert!(detail.contains("renumbered down"), "{detail}");
}

async fn several_deleted_entries_with_renumbering_are_reported_missing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = f.owner().await;
    owner
        .exec(
            "DELETE FROM entry WHERE seq BETWEEN $1 AND $2",
            vec![Arg::Int(K), Arg::Int(K + 2)],
        )
        .await;
    owner.renumber_from(K + 3, -3).await;
    let detail = assert_problem(&f.verify().await, K, ProblemKind::EntryMissing);
    assert!(detail.starts_with("3 entries were deleted"), "{detail}");
}

async fn inserted_entry_with_renumbered_successors_is_reported_at_its_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut x = forged_row(K, &hash::GENESIS, &f.entry(K).await);
    x.chain_hash = hash::body_sha256(b"bogus").to_vec();
    let mut owner = f.owner().await;
    owner.renumber_from(K, 1).await;
    owner.insert(&x).await;
    let detail = assert_problem(&f.verify().await, K, ProblemKind::EntryInserted);
    assert!(detail.contains("renumbered up"), "{detail}");
}

async fn consistently_chained_insertion_is_reported_at_its_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let prev = chain(&f.entry(K - 1).await);
    let x = forged_row(K, &prev, &f.entry(K).await);
    let mut owner = f.owner().await;
    owner.renumber_from(K, 1).await;
    owner.insert(&x).await;
    let v = f.verify().await;
    assert_problem(&v, K, ProblemKind::EntryInserted);
    assert_eq!(v.entries, K - 1);
    assert_eq!(v.head_chain_hash, hex::encode(prev));
}

async fn appended_entry_with_a_bogus_hash_is_reported_at_its_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut x = forged_row(ENTRIES + 1, &hash::GENESIS, &f.entry(ENTRIES).await);
    x.chain_hash = hash::body_sha256(b"bogus").to_vec();
    let mut owner = f.owner().await;
    owner.insert(&x).await;
    let v = f.verify().await;
    assert_problem(&v, ENTRIES + 1, ProblemKind::EntryInserted);
    assert_eq!(v.entries, ENTRIES);
}

async fn swapped_seq_values_are_reported_at_the_lower_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = f.owner().await;
    for (from, to) in [(K, FAR), (K + 1, K), (FAR, K + 1)] {
        owner
            .exec(
                "UPDATE entry SET seq = $1 WHERE seq = $2",
                vec![Arg::Int(to), Arg::Int(from)],
            )
            .await;
    }
    let v = f.verify().await;
    assert_problem(&v, K, ProblemKind::OrderChanged);
    assert_eq!(v.entries, K - 1);
}

async fn swapped_contents_are_reported_at_the_lower_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.entry(K).await, f.entry(K + 1).await);
    let mut owner = f.owner().await;
    for (seq, src) in [(K, &b), (K + 1, &a)] {
        owner
            .set_column(seq, "body", Arg::Text(src.body.clone()))
            .await;
        owner
            .set_column(seq, "body_sha256", Arg::Bytes(src.body_sha256.clone()))
            .await;
        owner
            .set_column(seq, "leaf_hash", Arg::Bytes(src.leaf_hash.clone()))
            .await;
    }
    assert_problem(&f.verify().await, K, ProblemKind::OrderChanged);
}

async fn altered_leaf_hash_is_reported_as_leaf_hash_mismatch(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = f.owner().await;
    owner
        .set_column(
            K,
            "leaf_hash",
            Arg::Bytes(hash::leaf_hash(b"forged").to_vec()),
        )
        .await;
    assert_problem(&f.verify().await, K, ProblemKind::LeafHashMismatch);
}

async fn truncated_hash_column_is_reported_as_malformed(backend: Backend) {
    let f = Fixture::new(backend).await;
    let e = f.entry(K).await;
    let mut owner = f.owner().await;
    match backend {
        Backend::Sqlite => {
            owner
                .exec("PRAGMA ignore_check_constraints = ON", vec![])
                .await
        }
        Backend::Postgres => {
            owner
                .exec(
                    "ALTER TABLE entry DROP CONSTRAINT entry_chain_hash_check",
                    vec![],
                )
                .await
        }
    }
    owner
        .set_column(K, "chain_hash", Arg::Bytes(e.chain_hash[..31].to_vec()))
        .await;
    let detail = assert_problem(&f.verify().await, K, ProblemKind::Malformed);
    assert!(detail.contains("chain_hash"), "{detail}");
}

async fn altered_id_column_is_reported_as_malformed(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = f.owner().await;
    owner
        .set_column(K, "id", Arg::Text(uuid::Uuid::new_v4().to_string()))
        .await;
    let detail = assert_problem(&f.verify().await, K, ProblemKind::Malformed);
    assert!(detail.contains("id column"), "{detail}");
}

/// Verifies as `vellum verify` does with the FHIR index rules: the search
/// index rows are recomputed from each body.
async fn verify_with_index(url: &str) -> Verdict {
    let url = DatabaseUrl::parse(url).expect("database url");
    let store = AnyStore::connect(&url, None)
        .await
        .expect("open store")
        .with_indexer(vellum::fhir::search_index::derive_rows);
    vellum::ledger::verify::verify_all(&store, None)
        .await
        .expect("verify reads the store")
}

async fn index_owner(f: &Fixture) -> Owner {
    let mut owner = f.owner().await;
    let drop = match f.backend {
        Backend::Sqlite => "DROP TRIGGER search_index_no_delete",
        Backend::Postgres => "DROP TRIGGER search_index_no_update_delete ON search_index",
    };
    owner.exec(drop, vec![]).await;
    owner
}

async fn hidden_index_rows_are_reported_at_their_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    assert!(verify_with_index(&f.url).await.ok());
    // The owner hides entry K from searches by its agent and type.
    let mut owner = index_owner(&f).await;
    owner
        .exec(
            "DELETE FROM search_index WHERE seq = $1 AND param <> '_lastUpdated'",
            vec![Arg::Int(K)],
        )
        .await;
    // The chain and tree still hold; only the index check sees it.
    assert!(f.verify().await.ok());
    let v = verify_with_index(&f.url).await;
    let detail = assert_problem(&v, K, ProblemKind::IndexMismatch);
    assert!(detail.contains("missing"), "{detail}");
}

async fn extra_index_rows_are_reported_at_their_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = index_owner(&f).await;
    // A row that makes entry K match a search it should not.
    owner
        .exec(
            "INSERT INTO search_index (seq, param, val) VALUES ($1, 'patient', 'Patient/someone')",
            vec![Arg::Int(K)],
        )
        .await;
    let v = verify_with_index(&f.url).await;
    let detail = assert_problem(&v, K, ProblemKind::IndexMismatch);
    assert!(detail.contains("1 extra"), "{detail}");
}

async fn index_rows_of_no_entry_are_reported_at_their_seq(backend: Backend) {
    let f = Fixture::new(backend).await;
    let mut owner = index_owner(&f).await;
    // Rows naming an entry that does not exist (after the last one): they
    // would make a later event match searches before it is even stored.
    owner
        .exec(
            "INSERT INTO search_index (seq, param, val) VALUES ($1, 'patient', 'Patient/someone')",
            vec![Arg::Int(ENTRIES + 5)],
        )
        .await;
    let v = verify_with_index(&f.url).await;
    let detail = assert_problem(&v, ENTRIES + 5, ProblemKind::IndexMismatch);
    assert!(detail.contains("name no stored entry"), "{detail}");
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both_backends!(
    intact_ledger_verifies_with_its_head_hash,
    edited_body_is_reported_at_its_seq,
    edited_body_with_rewritten_body_hash_is_reported_at_its_seq,
    consistently_rechained_body_is_reported_at_its_seq,
    fully_rewritten_entry_breaks_the_chain_at_the_next_seq,
    altered_chain_hash_is_reported_as_chain_broken,
    deleted_entry_is_reported_missing_at_its_seq,
    deleted_entry_with_renumbered_successors_is_reported_missing,
    several_deleted_entries_with_renumbering_are_reported_missing,
    inserted_entry_with_renumbered_successors_is_reported_at_its_seq,
    consistently_chained_insertion_is_reported_at_its_seq,
    appended_entry_with_a_bogus_hash_is_reported_at_its_seq,
    swapped_seq_values_are_reported_at_the_lower_seq,
    swapped_contents_are_reported_at_the_lower_seq,
    altered_leaf_hash_is_reported_as_leaf_hash_mismatch,
    truncated_hash_column_is_reported_as_malformed,
    altered_id_column_is_reported_as_malformed,
    hidden_index_rows_are_reported_at_their_seq,
    extra_index_rows_are_reported_at_their_seq,
    index_rows_of_no_entry_are_reported_at_their_seq,
);

// ---- the command line ----

fn run_cli(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(args)
        .current_dir(cwd)
        .env_remove("VELLUM_CONFIG")
        .env_remove("VELLUM_DATABASE_URL")
        .env_remove("VELLUM_DATABASE_ROLE")
        .output()
        .expect("run vellum");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn verify_command_exits_0_1_2_and_prints_the_verdict() {
    let f = Fixture::new(Backend::Sqlite).await;
    let cwd = tempfile::tempdir().expect("tempdir");
    let url = f.url.clone();
    let head = f.receipts[ENTRIES as usize - 1].chain_hash_hex();

    // Intact: exit 0, entry count and head hash on stdout.
    let (code, stdout, stderr) = run_cli(&["verify", "--database-url", &url], cwd.path());
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("{ENTRIES} entries")), "{stdout}");
    assert!(stdout.contains(&head), "{stdout}");

    let (code, stdout, _) = run_cli(&["verify", "--database-url", &url, "--json"], cwd.path());
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(stdout.trim()).expect("JSON verdict");
    assert_eq!(v["entries"], ENTRIES);
    assert_eq!(v["head_chain_hash"], head.as_str());
    assert!(v["problem"].is_null(), "{v}");

    // Tampered: exit 1, the seq on stderr.
    let e = f.entry(K).await;
    let mut owner = f.owner().await;
    owner
        .set_column(K, "body", Arg::Text(edited(&e.body)))
        .await;
    let (code, stdout, stderr) = run_cli(&["verify", "--database-url", &url], cwd.path());
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(&format!("seq {K}")), "{stderr}");
    assert!(!stdout.contains("ok:"), "{stdout}");

    let (code, stdout, stderr) = run_cli(&["verify", "--database-url", &url, "--json"], cwd.path());
    assert_eq!(code, 1, "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("JSON verdict");
    assert_eq!(v["problem"]["seq"], K);
    assert_eq!(v["problem"]["kind"], "body_modified");
    assert_eq!(v["entries"], K - 1);
    assert_eq!(
        v["head_chain_hash"],
        f.receipts[K as usize - 2].chain_hash_hex().as_str()
    );

    // Unreachable database: exit 2.
    let missing = cwd.path().join("no-such-dir").join("vellum.db");
    let (code, _, stderr) = run_cli(
        &[
            "verify",
            "--database-url",
            &format!("sqlite://{}", missing.display()),
        ],
        cwd.path(),
    );
    assert_eq!(code, 2, "{stderr}");
    // A malformed URL is a usage error.
    let (code, _, stderr) = run_cli(&["verify", "--database-url", "mysql://x"], cwd.path());
    assert_eq!(code, 2, "{stderr}");
}
