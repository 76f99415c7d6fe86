//! Report summary rows (`summary_event`, `summary_finding`): one compact,
//! typed row per radiology AI event and one per finding, derived from the
//! entry's body above the ledger (the draft carries it, like its index
//! rows), inserted by the single writer in the entry's transaction, read
//! back with the reports' filters applied in SQL. The rows are derived
//! data: [`crate::verify`] re-derives them with the store's summarizer, and
//! `migrate` back-fills entries stored before the tables existed.

use sqlx::{AssertSqlSafe, Row};

use super::{NewEntry, StoreError, StoredEntry};
use vellum_json::tape::{Node, Tape};

/// Which AI event a summary row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SummaryKind {
    Inference,
    Override,
    Rendering,
    Deployment,
}

impl SummaryKind {
    pub const ALL: [SummaryKind; 4] = [
        SummaryKind::Inference,
        SummaryKind::Override,
        SummaryKind::Rendering,
        SummaryKind::Deployment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SummaryKind::Inference => "inference",
            SummaryKind::Override => "override",
            SummaryKind::Rendering => "rendering",
            SummaryKind::Deployment => "deployment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        SummaryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One finding detail of an inference, in the body's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SummaryFinding {
    pub code: String,
    /// The confidence as its exact decimal text.
    pub confidence: Option<String>,
}

/// The summary row of one AI event. Which fields are set depends on the
/// kind; the layer that derives it documents them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Summary {
    pub kind: SummaryKind,
    pub event_id: String,
    /// `recorded` exactly as written in the body.
    pub recorded: String,
    /// The same instant in µs since the epoch (range filters).
    pub recorded_us: i64,
    pub model: Option<String>,
    pub version: Option<String>,
    pub site: Option<String>,
    pub actor: Option<String>,
    pub refers_to: Option<String>,
    pub action: Option<String>,
    pub tta_ms: Option<i64>,
    pub latency_ms: Option<i64>,
    pub cpu_fallback: Option<bool>,
    pub digest_check: Option<String>,
    pub study_uid: Option<String>,
    pub pixel_sha256: Option<String>,
    /// The patient entity's `what` as JSON text.
    pub patient: Option<String>,
    pub findings: Vec<SummaryFinding>,
}

impl Summary {
    /// A row of `kind` with every optional field empty.
    pub fn new(kind: SummaryKind, event_id: String, recorded: String, recorded_us: i64) -> Self {
        Summary {
            kind,
            event_id,
            recorded,
            recorded_us,
            model: None,
            version: None,
            site: None,
            actor: None,
            refers_to: None,
            action: None,
            tta_ms: None,
            latency_ms: None,
            cpu_fallback: None,
            digest_check: None,
            study_uid: None,
            pixel_sha256: None,
            patient: None,
            findings: Vec::new(),
        }
    }
}

/// Derives a stored body's summary row (`None`: not an AI event) from its
/// parse. Supplied by the layer that knows the events, so the store stays
/// ignorant of them; `verify` hands it the parse it already made of each
/// body.
pub type SummaryFn = for<'t> fn(Node<'t>) -> Option<Summary>;

/// What to read. The inference filters (model … finding) narrow only the
/// inference rows (and their findings); rows of other kinds are returned
/// whole unless `related_only`. Times are bounds on `recorded_us`,
/// inclusive.
#[derive(Debug, Clone, Default)]
pub struct SummaryQuery {
    /// Empty: every kind.
    pub kinds: Vec<SummaryKind>,
    pub model: Vec<String>,
    pub version: Option<String>,
    pub site: Option<String>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    /// Inferences with a finding of this code.
    pub finding: Option<String>,
    /// Only rows with seq in `(after, upto]`.
    pub seq_after: Option<i64>,
    pub seq_upto: Option<i64>,
    /// Read the patient column (only lists that show patients need it).
    pub with_patient: bool,
    /// Leave the inference details empty (latency, CPU fallback, digest
    /// check, study, pixel digest): reports that only count do not read them.
    pub skip_details: bool,
    /// Leave the findings out.
    pub skip_findings: bool,
    /// Override and rendering rows may be limited to those referring to a
    /// selected inference (the store does so when the inference filters
    /// select a small part of the inferences: fewer rows read).
    pub related_only: bool,
}

/// A bound value of a built query.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// The SQL dialect a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// One statement and its arguments.
type Stmt = (String, Vec<Arg>);

/// `WHERE` conditions being built, with their arguments (`$n` numbered
/// from 1 in order of appearance).
#[derive(Default)]
struct Conds {
    conds: Vec<String>,
    args: Vec<Arg>,
}

impl Conds {
    fn push(&mut self, cond: &str, arg: Arg) {
        self.args.push(arg);
        self.conds
            .push(cond.replace('?', &format!("${}", self.args.len())));
    }

    fn fixed(&mut self, cond: String) {
        self.conds.push(cond);
    }

    fn seq_range(&mut self, q: &SummaryQuery, a: &str) {
        if let Some(x) = q.seq_after {
            self.push(&format!("{a}.seq > ?"), Arg::Int(x));
        }
        if let Some(u) = q.seq_upto {
            self.push(&format!("{a}.seq <= ?"), Arg::Int(u));
        }
    }

    /// The inference filters on the row aliased `a`; with `indexed_only`,
    /// only those the kind index holds (model, version, time).
    fn inference_filters(&mut self, q: &SummaryQuery, a: &str, indexed_only: bool) {
        for m in &q.model {
            self.push(&format!("{a}.model = ?"), Arg::Text(m.clone()));
        }
        if let Some(v) = &q.version {
            self.push(&format!("{a}.version = ?"), Arg::Text(v.clone()));
        }
        if let Some(f) = q.from_us {
            self.push(&format!("{a}.recorded_us >= ?"), Arg::Int(f));
        }
        if let Some(t) = q.to_us {
            self.push(&format!("{a}.recorded_us <= ?"), Arg::Int(t));
        }
        if indexed_only {
            return;
        }
        if let Some(s) = &q.site {
            self.push(&format!("{a}.site = ?"), Arg::Text(s.clone()));
        }
        if let Some(code) = &q.finding {
            self.push(
                &format!("{a}.seq IN (SELECT seq FROM summary_finding WHERE code = ?)"),
                Arg::Text(code.clone()),
            );
        }
    }

    fn sql(&self) -> String {
        if self.conds.is_empty() {
            "TRUE".to_string()
        } else {
            self.conds.join(" AND ")
        }
    }
}

fn has_inference_filters(q: &SummaryQuery) -> bool {
    !q.model.is_empty()
        || q.version.is_some()
        || q.site.is_some()
        || q.from_us.is_some()
        || q.to_us.is_some()
        || q.finding.is_some()
}

/// `WHERE` conditions of one kind's query and their arguments.
fn conditions(q: &SummaryQuery, kind: SummaryKind) -> Stmt {
    let mut c = Conds::default();
    c.fixed(format!("e.kind = '{}'", kind.as_str()));
    c.seq_range(q, "e");
    if kind == SummaryKind::Inference {
        c.inference_filters(q, "e", false);
    }
    (c.sql(), c.args)
}

fn kinds(q: &SummaryQuery) -> Vec<SummaryKind> {
    if q.kinds.is_empty() {
        SummaryKind::ALL.to_vec()
    } else {
        q.kinds.clone()
    }
}

fn kind_list(kinds: &[SummaryKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The selected columns, in [`Summary`] order after `seq` and `kind`; the
/// ones not wanted are typed NULLs.
fn columns(q: &SummaryQuery) -> String {
    let mut cols = String::from(
        "e.seq, e.kind, e.event_id, e.recorded, e.recorded_us, e.model, e.version, \
         e.site, e.actor, e.refers_to, e.action, e.tta_ms",
    );
    if q.skip_details {
        cols.push_str(
            ", CAST(NULL AS BIGINT), CAST(NULL AS BOOLEAN), CAST(NULL AS TEXT), \
             CAST(NULL AS TEXT), CAST(NULL AS TEXT)",
        );
    } else {
        cols.push_str(
            ", e.latency_ms, e.cpu_fallback, e.digest_check, e.study_uid, e.pixel_sha256",
        );
    }
    cols.push_str(if q.with_patient {
        ", e.patient"
    } else {
        ", CAST(NULL AS TEXT)"
    });
    cols
}

/// How the rows of a query are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// One pass over the table in seq order, every wanted kind at once.
    Scan,
    /// The selected inferences through the kind index, and only the
    /// overrides and renderings referring to them.
    Related,
}

/// Whether the related plan may pay off, and the two counts that decide
/// it: the inferences the indexed filters keep, and all inferences (both
/// answered from the kind index alone).
fn estimate_sql(q: &SummaryQuery) -> Option<(Stmt, Stmt)> {
    let wanted = kinds(q);
    if !q.related_only || !has_inference_filters(q) || !wanted.contains(&SummaryKind::Inference) {
        return None;
    }
    let mut c = Conds::default();
    c.fixed("e.kind = 'inference'".into());
    c.inference_filters(q, "e", true);
    Some((
        (
            format!("SELECT count(*) FROM summary_event e WHERE {}", c.sql()),
            c.args,
        ),
        (
            "SELECT count(*) FROM summary_event e WHERE e.kind = 'inference'".into(),
            Vec::new(),
        ),
    ))
}

/// The related plan when the indexed filters keep at most one inference in
/// this many.
const RELATED_SHARE: i64 = 8;

fn plan_of(estimate: Option<(i64, i64)>) -> Plan {
    match estimate {
        Some((kept, all)) if kept.saturating_mul(RELATED_SHARE) <= all => Plan::Related,
        _ => Plan::Scan,
    }
}

/// The statements reading the rows of `q`, each in seq order; with more
/// than one, the caller merges them by seq.
fn event_sql(q: &SummaryQuery, plan: Plan, dialect: Dialect) -> Vec<Stmt> {
    let cols = columns(q);
    let wanted = kinds(q);
    match plan {
        Plan::Scan => {
            let mut c = Conds::default();
            if wanted.len() < SummaryKind::ALL.len() {
                c.fixed(format!("e.kind IN ({})", kind_list(&wanted)));
            }
            c.seq_range(q, "e");
            if has_inference_filters(q) && wanted.contains(&SummaryKind::Inference) {
                let mut f = Conds {
                    args: std::mem::take(&mut c.args),
                    ..Default::default()
                };
                f.inference_filters(q, "e", false);
                c.args = f.args;
                c.fixed(format!(
                    "(e.kind <> 'inference' OR ({}))",
                    f.conds.join(" AND ")
                ));
            }
            // A pass in rowid order reads each page once; the kind index
            // would cost a table lookup per row.
            let hint = if dialect == Dialect::Sqlite {
                " NOT INDEXED"
            } else {
                ""
            };
            vec![(
                format!(
                    "SELECT {cols} FROM summary_event e{hint} WHERE {} ORDER BY e.seq",
                    c.sql()
                ),
                c.args,
            )]
        }
        Plan::Related => {
            let mut out = Vec::new();
            let (cond, args) = conditions(q, SummaryKind::Inference);
            out.push((
                format!("SELECT {cols} FROM summary_event e WHERE {cond} ORDER BY e.seq"),
                args,
            ));
            let refs: Vec<SummaryKind> = wanted
                .iter()
                .copied()
                .filter(|k| matches!(k, SummaryKind::Override | SummaryKind::Rendering))
                .collect();
            if !refs.is_empty() {
                let mut c = Conds::default();
                c.fixed(format!("e.kind IN ({})", kind_list(&refs)));
                c.seq_range(q, "e");
                let mut i = Conds {
                    args: std::mem::take(&mut c.args),
                    ..Default::default()
                };
                i.fixed("i.kind = 'inference'".into());
                i.inference_filters(q, "i", false);
                c.args = i.args;
                c.fixed(format!(
                    "e.refers_to IN (SELECT i.event_id FROM summary_event i WHERE {})",
                    i.conds.join(" AND ")
                ));
                out.push((
                    format!(
                        "SELECT {cols} FROM summary_event e WHERE {} ORDER BY e.seq",
                        c.sql()
                    ),
                    c.args,
                ));
            }
            if wanted.contains(&SummaryKind::Deployment) {
                let (cond, args) = conditions(q, SummaryKind::Deployment);
                out.push((
                    format!("SELECT {cols} FROM summary_event e WHERE {cond} ORDER BY e.seq"),
                    args,
                ));
            }
            out
        }
    }
}

/// The findings of the selected inferences, in seq and body order.
fn finding_sql(q: &SummaryQuery) -> Option<Stmt> {
    if q.skip_findings || !kinds(q).contains(&SummaryKind::Inference) {
        return None;
    }
    if !has_inference_filters(q) {
        let mut c = Conds::default();
        c.seq_range(q, "f");
        return Some((
            format!(
                "SELECT f.seq, f.code, f.confidence FROM summary_finding f WHERE {} \
                 ORDER BY f.seq, f.ord",
                c.sql()
            ),
            c.args,
        ));
    }
    let (cond, args) = conditions(q, SummaryKind::Inference);
    Some((
        format!(
            "SELECT f.seq, f.code, f.confidence FROM summary_finding f \
             JOIN summary_event e ON e.seq = f.seq WHERE {cond} ORDER BY f.seq, f.ord"
        ),
        args,
    ))
}

/// Files the findings (in seq, ord order) under their rows (in seq order).
fn attach(rows: &mut [(i64, Summary)], findings: Vec<(i64, SummaryFinding)>) {
    let mut i = 0;
    for (seq, f) in findings {
        while rows.get(i).is_some_and(|(s, _)| *s < seq) {
            i += 1;
        }
        match rows.get_mut(i) {
            Some((s, row)) if *s == seq => row.findings.push(f),
            _ => {}
        }
    }
}

fn corrupt(seq: i64) -> StoreError {
    StoreError::Corrupt {
        seq,
        what: "a summary row has an unknown kind",
    }
}

// ---- SQLite (rusqlite: a plain blocking read is several times faster per
// row than going through the async driver's worker thread) ----

fn bind_sqlite(args: &[Arg]) -> Vec<rusqlite::types::Value> {
    args.iter()
        .map(|a| match a {
            Arg::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Arg::Int(i) => rusqlite::types::Value::Integer(*i),
        })
        .collect()
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, Summary)> {
    let seq: i64 = r.get(0)?;
    let kind: String = r.get(1)?;
    Ok((
        seq,
        kind,
        Summary {
            kind: SummaryKind::Inference,
            event_id: r.get(2)?,
            recorded: r.get(3)?,
            recorded_us: r.get(4)?,
            model: r.get(5)?,
            version: r.get(6)?,
            site: r.get(7)?,
            actor: r.get(8)?,
            refers_to: r.get(9)?,
            action: r.get(10)?,
            tta_ms: r.get(11)?,
            latency_ms: r.get(12)?,
            cpu_fallback: r.get(13)?,
            digest_check: r.get(14)?,
            study_uid: r.get(15)?,
            pixel_sha256: r.get(16)?,
            patient: r.get(17)?,
            findings: Vec::new(),
        },
    ))
}

/// A read-only connection of its own to the SQLite file at `path`.
fn open_read_only(path: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Reads the rows `q` selects from the SQLite file at `path`, by seq.
pub(crate) fn read_sqlite(
    path: &std::path::Path,
    q: &SummaryQuery,
) -> Result<Vec<(i64, Summary)>, StoreError> {
    let conn = open_read_only(path)?;
    // Read the file through a memory map: a report touches most pages of
    // the summary tables once, and copying each through read() doubled
    // the time of an unfiltered report.
    conn.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    // One snapshot for every statement below.
    let tx = conn.unchecked_transaction()?;
    let count = |(sql, args): &Stmt| -> rusqlite::Result<i64> {
        tx.query_row(sql, rusqlite::params_from_iter(bind_sqlite(args)), |r| {
            r.get(0)
        })
    };
    let estimate = match estimate_sql(q) {
        Some((kept, all)) => Some((count(&kept)?, count(&all)?)),
        None => None,
    };
    let stmts = event_sql(q, plan_of(estimate), Dialect::Sqlite);
    let merge = stmts.len() > 1;
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for (sql, args) in stmts {
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(bind_sqlite(&args)), sqlite_row)?;
        for r in rows {
            let (seq, k, mut s) = r?;
            s.kind = SummaryKind::parse(&k).ok_or_else(|| corrupt(seq))?;
            out.push((seq, s));
        }
    }
    if merge {
        out.sort_by_key(|(seq, _)| *seq);
    }
    if let Some((sql, args)) = finding_sql(q) {
        let mut stmt = tx.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(bind_sqlite(&args)), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                SummaryFinding {
                    code: r.get(1)?,
                    confidence: r.get(2)?,
                },
            ))
        })?;
        let findings = rows.collect::<Result<Vec<_>, _>>()?;
        attach(&mut out, findings);
    }
    Ok(out)
}

/// The patient column of the rows `seqs` name (rows without one are left
/// out): the lists that show patients select their cases from the reports'
/// in-memory dataset, which holds no patients, then read only these.
pub(crate) fn patients_sqlite(
    path: &std::path::Path,
    seqs: &[i64],
) -> Result<std::collections::HashMap<i64, String>, StoreError> {
    let conn = open_read_only(path)?;
    let list = serde_json::to_string(seqs).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    let mut stmt = conn.prepare(
        "SELECT seq, patient FROM summary_event \
         WHERE seq IN (SELECT value FROM json_each(?1)) AND patient IS NOT NULL",
    )?;
    let rows = stmt.query_map([list], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// [`patients_sqlite`] on PostgreSQL.
pub(crate) async fn patients_pg(
    pool: &sqlx::PgPool,
    seqs: &[i64],
) -> Result<std::collections::HashMap<i64, String>, StoreError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, patient FROM summary_event WHERE seq = ANY($1) AND patient IS NOT NULL",
    )
    .bind(seqs)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

const SQLITE_INSERT_EVENT: &str = "INSERT INTO summary_event (seq, kind, event_id, recorded, \
     recorded_us, model, version, site, actor, refers_to, action, tta_ms, latency_ms, \
     cpu_fallback, digest_check, study_uid, pixel_sha256, patient) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";
const SQLITE_INSERT_FINDING: &str =
    "INSERT INTO summary_finding (seq, ord, code, confidence) VALUES (?1, ?2, ?3, ?4)";

fn insert_one_sqlite(
    conn: &rusqlite::Connection,
    seq: i64,
    s: &Summary,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(SQLITE_INSERT_EVENT)?
        .execute(rusqlite::params![
            seq,
            s.kind.as_str(),
            s.event_id,
            s.recorded,
            s.recorded_us,
            s.model,
            s.version,
            s.site,
            s.actor,
            s.refers_to,
            s.action,
            s.tta_ms,
            s.latency_ms,
            s.cpu_fallback,
            s.digest_check,
            s.study_uid,
            s.pixel_sha256,
            s.patient
        ])?;
    let mut f = conn.prepare_cached(SQLITE_INSERT_FINDING)?;
    for (ord, x) in s.findings.iter().enumerate() {
        f.execute(rusqlite::params![seq, ord as i64, x.code, x.confidence])?;
    }
    Ok(())
}

/// Inserts the summary rows of a batch (inside the append transaction).
pub(crate) fn insert_sqlite(
    conn: &rusqlite::Connection,
    entries: &[NewEntry],
) -> Result<(), rusqlite::Error> {
    for e in entries {
        if let Some(s) = &e.summary {
            insert_one_sqlite(conn, e.seq, s)?;
        }
    }
    Ok(())
}

/// Inserts the rows of entries that have none yet (the back-fill), in one
/// transaction.
pub(crate) fn backfill_sqlite(
    path: &std::path::Path,
    rows: &[(i64, Summary)],
    upto: Option<(i64, &str)>,
) -> Result<(), StoreError> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (seq, s) in rows {
        let exists: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM summary_event WHERE seq = ?1)")?
            .query_row([seq], |r| r.get(0))?;
        if !exists {
            insert_one_sqlite(&tx, *seq, s)?;
        }
    }
    if let Some((upto, now)) = upto {
        tx.execute(
            "INSERT INTO summary_backfill (upto, created_at) SELECT ?1, ?2 \
             WHERE NOT EXISTS (SELECT 1 FROM summary_backfill WHERE upto = ?1)",
            rusqlite::params![upto, now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

// ---- PostgreSQL ----

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<(i64, Summary), StoreError> {
    let seq: i64 = r.try_get(0)?;
    let kind: String = r.try_get(1)?;
    Ok((
        seq,
        Summary {
            kind: SummaryKind::parse(&kind).ok_or_else(|| corrupt(seq))?,
            event_id: r.try_get(2)?,
            recorded: r.try_get(3)?,
            recorded_us: r.try_get(4)?,
            model: r.try_get(5)?,
            version: r.try_get(6)?,
            site: r.try_get(7)?,
            actor: r.try_get(8)?,
            refers_to: r.try_get(9)?,
            action: r.try_get(10)?,
            tta_ms: r.try_get(11)?,
            latency_ms: r.try_get(12)?,
            cpu_fallback: r.try_get(13)?,
            digest_check: r.try_get(14)?,
            study_uid: r.try_get(15)?,
            pixel_sha256: r.try_get(16)?,
            patient: r.try_get(17)?,
            findings: Vec::new(),
        },
    ))
}

/// Runs one built query, every row.
async fn fetch_pg(
    conn: &mut sqlx::PgConnection,
    sql: String,
    args: &[Arg],
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for a in args {
        query = match a {
            Arg::Text(s) => query.bind(s.clone()),
            Arg::Int(i) => query.bind(*i),
        };
    }
    query.fetch_all(conn).await
}

async fn count_pg(conn: &mut sqlx::PgConnection, (sql, args): Stmt) -> Result<i64, sqlx::Error> {
    let row = fetch_pg(conn, sql, &args).await?;
    row.first().map_or(Ok(0), |r| r.try_get(0))
}

/// Reads the rows `q` selects, by seq, in one transaction (one snapshot).
pub(crate) async fn read_pg(
    pool: &sqlx::PgPool,
    q: &SummaryQuery,
) -> Result<Vec<(i64, Summary)>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let estimate = match estimate_sql(q) {
        Some((kept, all)) => Some((
            count_pg(&mut tx, kept).await?,
            count_pg(&mut tx, all).await?,
        )),
        None => None,
    };
    let stmts = event_sql(q, plan_of(estimate), Dialect::Postgres);
    let merge = stmts.len() > 1;
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for (sql, args) in stmts {
        let rows = fetch_pg(&mut tx, sql, &args).await?;
        for r in &rows {
            out.push(pg_row(r)?);
        }
    }
    if merge {
        out.sort_by_key(|(seq, _)| *seq);
    }
    if let Some((sql, args)) = finding_sql(q) {
        let rows = fetch_pg(&mut tx, sql, &args).await?;
        let mut findings = Vec::with_capacity(rows.len());
        for r in &rows {
            findings.push((
                r.try_get::<i64, _>(0)?,
                SummaryFinding {
                    code: r.try_get(1)?,
                    confidence: r.try_get(2)?,
                },
            ));
        }
        attach(&mut out, findings);
    }
    tx.commit().await?;
    Ok(out)
}

/// One array per column, for `UNNEST`.
#[derive(Default)]
struct PgColumns<'a> {
    seq: Vec<i64>,
    kind: Vec<&'a str>,
    event_id: Vec<&'a str>,
    recorded: Vec<&'a str>,
    recorded_us: Vec<i64>,
    model: Vec<Option<&'a str>>,
    version: Vec<Option<&'a str>>,
    site: Vec<Option<&'a str>>,
    actor: Vec<Option<&'a str>>,
    refers_to: Vec<Option<&'a str>>,
    action: Vec<Option<&'a str>>,
    tta_ms: Vec<Option<i64>>,
    latency_ms: Vec<Option<i64>>,
    cpu_fallback: Vec<Option<bool>>,
    digest_check: Vec<Option<&'a str>>,
    study_uid: Vec<Option<&'a str>>,
    pixel_sha256: Vec<Option<&'a str>>,
    patient: Vec<Option<&'a str>>,
    f_seq: Vec<i64>,
    f_ord: Vec<i32>,
    f_code: Vec<&'a str>,
    f_conf: Vec<Option<&'a str>>,
}

impl<'a> PgColumns<'a> {
    fn push(&mut self, seq: i64, s: &'a Summary) {
        self.seq.push(seq);
        self.kind.push(s.kind.as_str());
        self.event_id.push(&s.event_id);
        self.recorded.push(&s.recorded);
        self.recorded_us.push(s.recorded_us);
        self.model.push(s.model.as_deref());
        self.version.push(s.version.as_deref());
        self.site.push(s.site.as_deref());
        self.actor.push(s.actor.as_deref());
        self.refers_to.push(s.refers_to.as_deref());
        self.action.push(s.action.as_deref());
        self.tta_ms.push(s.tta_ms);
        self.latency_ms.push(s.latency_ms);
        self.cpu_fallback.push(s.cpu_fallback);
        self.digest_check.push(s.digest_check.as_deref());
        self.study_uid.push(s.study_uid.as_deref());
        self.pixel_sha256.push(s.pixel_sha256.as_deref());
        self.patient.push(s.patient.as_deref());
        for (ord, f) in s.findings.iter().enumerate() {
            self.f_seq.push(seq);
            self.f_ord.push(i32::try_from(ord).unwrap_or(i32::MAX));
            self.f_code.push(&f.code);
            self.f_conf.push(f.confidence.as_deref());
        }
    }
}

/// Events and their findings in one statement; `ON CONFLICT` only for the
/// back-fill (`$23`), where the findings of rows already stored are skipped.
const PG_INSERT: &str = "WITH ev AS (INSERT INTO summary_event (seq, kind, event_id, recorded, \
       recorded_us, model, version, site, actor, refers_to, action, tta_ms, latency_ms, \
       cpu_fallback, digest_check, study_uid, pixel_sha256, patient) \
       SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
       $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], \
       $13::bigint[], $14::boolean[], $15::text[], $16::text[], $17::text[], $18::text[]) \
       ON CONFLICT (seq) DO NOTHING RETURNING seq) \
     INSERT INTO summary_finding (seq, ord, code, confidence) \
       SELECT f.* FROM UNNEST($19::bigint[], $20::int[], $21::text[], $22::text[]) \
       AS f(seq, ord, code, confidence) WHERE f.seq IN (SELECT seq FROM ev)";

async fn insert_pg_rows<'a>(
    conn: &mut sqlx::PgConnection,
    rows: impl Iterator<Item = (i64, &'a Summary)>,
) -> Result<(), sqlx::Error> {
    let mut c = PgColumns::default();
    for (seq, s) in rows {
        c.push(seq, s);
    }
    if c.seq.is_empty() {
        return Ok(());
    }
    sqlx::query(PG_INSERT)
        .bind(&c.seq)
        .bind(&c.kind)
        .bind(&c.event_id)
        .bind(&c.recorded)
        .bind(&c.recorded_us)
        .bind(&c.model)
        .bind(&c.version)
        .bind(&c.site)
        .bind(&c.actor)
        .bind(&c.refers_to)
        .bind(&c.action)
        .bind(&c.tta_ms)
        .bind(&c.latency_ms)
        .bind(&c.cpu_fallback)
        .bind(&c.digest_check)
        .bind(&c.study_uid)
        .bind(&c.pixel_sha256)
        .bind(&c.patient)
        .bind(&c.f_seq)
        .bind(&c.f_ord)
        .bind(&c.f_code)
        .bind(&c.f_conf)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts the summary rows of a batch (inside the append transaction).
pub(crate) async fn insert_pg(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    entries: &[NewEntry],
) -> Result<(), sqlx::Error> {
    insert_pg_rows(
        tx,
        entries
            .iter()
            .filter_map(|e| e.summary.as_deref().map(|s| (e.seq, s))),
    )
    .await
}

/// The back-fill's insert (rows already stored are kept), in one
/// transaction.
pub(crate) async fn backfill_pg(
    pool: &sqlx::PgPool,
    rows: &[(i64, Summary)],
    upto: Option<(i64, &str)>,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    insert_pg_rows(&mut tx, rows.iter().map(|(seq, s)| (*seq, s))).await?;
    if let Some((upto, now)) = upto {
        sqlx::query(
            "INSERT INTO summary_backfill (upto, created_at) VALUES ($1, $2) \
             ON CONFLICT (upto) DO NOTHING",
        )
        .bind(upto)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The summaries a page of stored entries must have, by seq.
pub(crate) fn derive(entries: &[StoredEntry], summarizer: SummaryFn) -> Vec<(i64, Summary)> {
    entries
        .iter()
        .filter_map(|e| {
            let tape = Tape::parse(e.body.as_bytes()).ok()?;
            summarizer(tape.root()).map(|s| (e.seq, s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_filters_are_numbered_in_order_and_skip_other_kinds() {
        let q = SummaryQuery {
            model: vec!["m".into()],
            site: Some("s".into()),
            finding: Some("f".into()),
            seq_after: Some(3),
            ..Default::default()
        };
        let (c, args) = conditions(&q, SummaryKind::Inference);
        assert_eq!(
            c,
            "e.kind = 'inference' AND e.seq > $1 AND e.model = $2 AND e.site = $3 \
             AND e.seq IN (SELECT seq FROM summary_finding WHERE code = $4)"
        );
        assert_eq!(args.len(), 4);
        let (c, args) = conditions(&q, SummaryKind::Override);
        assert_eq!(c, "e.kind = 'override' AND e.seq > $1");
        assert_eq!(args.len(), 1);
    }

    #[test]
    fn selective_filters_read_only_the_related_rows() {
        let q = SummaryQuery {
            version: Some("2.1".into()),
            from_us: Some(10),
            site: Some("s".into()),
            related_only: true,
            skip_details: true,
            ..Default::default()
        };
        // The estimate counts only what the kind index holds.
        let ((kept, args), _) = estimate_sql(&q).unwrap();
        assert!(kept.ends_with("e.kind = 'inference' AND e.version = $1 AND e.recorded_us >= $2"));
        assert_eq!(args.len(), 2);
        assert_eq!(plan_of(Some((100, 800))), Plan::Related);
        assert_eq!(plan_of(Some((101, 800))), Plan::Scan);
        assert_eq!(plan_of(None), Plan::Scan);
        let stmts = event_sql(&q, Plan::Related, Dialect::Sqlite);
        assert_eq!(
            stmts.len(),
            3,
            "inferences, their overrides and renderings, deployments"
        );
        let (related, args) = &stmts[1];
        assert!(related.contains(
            "e.kind IN ('override', 'rendering') AND e.refers_to IN (SELECT i.event_id \
             FROM summary_event i WHERE i.kind = 'inference' AND i.version = $1 \
             AND i.recorded_us >= $2 AND i.site = $3)"
        ));
        assert_eq!(args.len(), 3);
        // Without the flag (verify), or without filters, every row is read.
        let whole = SummaryQuery {
            related_only: false,
            ..q.clone()
        };
        assert!(estimate_sql(&whole).is_none());
        assert!(estimate_sql(&SummaryQuery {
            related_only: true,
            ..Default::default()
        })
        .is_none());
    }

    #[test]
    fn a_scan_reads_every_kind_in_one_pass_in_seq_order() {
        let q = SummaryQuery {
            model: vec!["m".into()],
            seq_after: Some(5),
            ..Default::default()
        };
        let stmts = event_sql(&q, Plan::Scan, Dialect::Sqlite);
        assert_eq!(stmts.len(), 1);
        let (sql, args) = &stmts[0];
        assert!(sql.contains(
            "FROM summary_event e NOT INDEXED WHERE e.seq > $1 \
             AND (e.kind <> 'inference' OR (e.model = $2)) ORDER BY e.seq"
        ));
        assert_eq!(args.len(), 2);
        let (pg, _) = &event_sql(&q, Plan::Scan, Dialect::Postgres)[0];
        assert!(!pg.contains("NOT INDEXED"));
        // Unfiltered findings are read in key order, without a join.
        let (f, _) = finding_sql(&SummaryQuery::default()).unwrap();
        assert!(!f.contains("JOIN"));
        assert!(finding_sql(&SummaryQuery {
            skip_findings: true,
            ..Default::default()
        })
        .is_none());
    }

    #[test]
    fn findings_are_filed_under_their_rows() {
        let row = |seq| {
            (
                seq,
                Summary::new(SummaryKind::Inference, format!("{seq}"), String::new(), 0),
            )
        };
        let f = |code: &str| SummaryFinding {
            code: code.into(),
            confidence: None,
        };
        let mut rows = vec![row(2), row(5), row(9)];
        attach(
            &mut rows,
            vec![(2, f("a")), (2, f("b")), (7, f("x")), (9, f("c"))],
        );
        let codes: Vec<Vec<&str>> = rows
            .iter()
            .map(|(_, s)| s.findings.iter().map(|f| f.code.as_str()).collect())
            .collect();
        assert_eq!(codes, vec![vec!["a", "b"], vec![], vec!["c"]]);
    }
}
