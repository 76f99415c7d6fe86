//! Backend-neutral search queries over the `search_index` table, rendered to
//! SQL with `?` placeholders (PostgreSQL renumbers them to `$n`). Every value
//! is bound, never spliced into the SQL text.
//!
//! Plan ([`choose_plan`]): bounded probes count how many index rows each
//! condition matches. The narrow ones (fewer than [`PROBE_LIMIT`] rows) drive
//! the query: their entry sets are intersected, and every other condition is
//! a correlated `EXISTS` probe through the `(seq, param)` index for those
//! entries only. When every condition is broad, the entries (or, sorted by
//! date, the date index) are walked in sort order and probed, which stops as
//! soon as a page is full. The page is found from the index alone; only its
//! rows are read from `entry`.

use super::{bound_index_text, StoredEntry};

/// A bound SQL value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Text(String),
    Int(i64),
}

/// How a token's system must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMatch {
    /// `code`: any system, or none.
    Any,
    /// `|code`: no system.
    Absent,
    /// `system|code`.
    Is(String),
}

/// Date comparison prefixes of FHIR search (R4 §3.1.1.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePrefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One way an index row of a parameter can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowMatch {
    /// `val = ?` with the system rule.
    Value { val: String, sys: SystemMatch },
    /// `system|`: any code of that system.
    System(String),
    /// Reference `Type/id`: `sys = Type AND val = id`.
    TypedId { ty: String, id: String },
    /// String default: normalised value starts with.
    Prefix(String),
    /// String `:contains`: normalised value contains.
    Contains(String),
    /// String `:exact` / reference as written: `exact = ?`.
    Exact(String),
    /// Date range comparison; `[low, high)` in µs of the search value.
    Date {
        prefix: DatePrefix,
        low: i64,
        high: i64,
    },
}

/// How likely a condition is to narrow the search (lower = narrower); decides
/// which condition drives the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Selectivity {
    Narrow = 1,
    Medium = 2,
    Broad = 3,
}

/// One AND-ed condition of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `_id`: one of these logical ids.
    Id(Vec<String>),
    /// Some index row of `param` matches one of `any` (comma = OR); with
    /// `negate`, no row does (`:not`, `ne`).
    Has {
        param: String,
        any: Vec<RowMatch>,
        negate: bool,
        selectivity: Selectivity,
    },
    /// `:missing`: the entry has (false) or lacks (true) any row of `param`.
    Missing { param: String, missing: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Ledger order (= `_lastUpdated`, commit order).
    Seq,
    /// `AuditEvent.recorded`, ties in ledger order.
    Recorded,
}

/// A page boundary: the sort key and seq of the last (or first) row seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub key: i64,
    pub seq: i64,
    /// True: rows after the cursor in sort order (next page); false: rows
    /// before it (previous page).
    pub forward: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub conditions: Vec<Condition>,
    pub sort: SortKey,
    pub descending: bool,
    /// Only entries with `seq <= head` (pins a paged search to the ledger as
    /// it was at the first page, so links keep returning the same rows).
    pub head: i64,
    pub cursor: Option<Cursor>,
    pub limit: i64,
}

/// One search result: the stored entry and its sort key (for cursors).
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub entry: StoredEntry,
    pub sort_key: i64,
}

/// The widest `[low, high)` range an indexed date can have: `recorded` and
/// `lastUpdated` are FHIR instants (at least second precision). Lets date
/// comparisons bound `low` so the date index can be used.
const MAX_TARGET_WIDTH_US: i64 = 1_000_000;

/// SQL text plus its bound values, in placeholder order.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
    fn bind_text(&mut self, v: impl Into<String>) {
        self.text.push('?');
        self.binds.push(Bind::Text(v.into()));
    }
    fn bind_int(&mut self, v: i64) {
        self.text.push('?');
        self.binds.push(Bind::Int(v));
    }
    fn append(&mut self, other: Sql) {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
    }

    /// `?` → `$1, $2, …` (PostgreSQL). Placeholders are the only `?` in the
    /// text: values are never spliced in.
    pub fn numbered(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        let mut n = 0;
        for c in self.text.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }
}

const COLUMNS: &str = super::reads::entry_columns!();

/// The SQL dialect a query is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The index table as the source of a per-entry probe. SQLite without
    /// `ANALYZE` statistics would otherwise probe a date condition through
    /// the date index — every row of the range for every candidate entry
    /// (measured: 8 s instead of 2 ms over a million entries).
    fn probe_table(self) -> &'static str {
        match self {
            Dialect::Sqlite => "search_index s INDEXED BY search_index_entry",
            Dialect::Postgres => "search_index s",
        }
    }
}

/// How a search runs, chosen per query by [`choose_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Start from the entries matching all of these conditions (their index
    /// rows intersected: each is known to match few rows) and probe the
    /// remaining conditions for those entries only.
    Drive(Vec<usize>),
    /// Every condition matches many rows: walk the entries in sort order,
    /// probing every condition, until the page is full.
    Walk,
}

/// What a plan is for: a page stops early, a count sees every match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Page,
    Count,
}

/// Probes stop counting here: a condition matching more rows than this does
/// not drive (walking in sort order finds a page sooner).
pub const PROBE_LIMIT: i64 = 10_000;

/// When no condition of a conjunction is under [`PROBE_LIMIT`], they are
/// counted again up to here, and two or more under it drive together: a rare
/// conjunction of broad conditions (one model version on one day by one
/// radiologist, at 10 M events: 1.5 M, 27 k and 50 k rows) would otherwise
/// walk the whole ledger looking for a page it never fills.
pub const WIDE_PROBE_LIMIT: i64 = 100_000;

/// A condition matching at most this many rows drives alone, without
/// probing the others: another probe would cost about as much as checking
/// these entries.
pub const SMALL_DRIVER: i64 = 256;

/// Positive index conditions, narrowest kind first: the ones a probe may
/// choose to drive the query.
pub fn driver_candidates(q: &SearchQuery) -> Vec<usize> {
    let mut c: Vec<(Selectivity, usize)> = q
        .conditions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Condition::Has {
                negate: false,
                selectivity,
                ..
            } => Some((*selectivity, i)),
            _ => None,
        })
        .collect();
    c.sort();
    c.into_iter().map(|(_, i)| i).collect()
}

/// Chooses the plan from bounded index probes (`count` runs a probe's SQL
/// and returns its `n`): which conditions are narrow depends on the data —
/// one model version may be most of a store, one radiologist a sliver.
pub async fn choose_plan<F, Fut>(
    q: &SearchQuery,
    purpose: Purpose,
    mut count: F,
) -> Result<Plan, super::StoreError>
where
    F: FnMut(Sql) -> Fut,
    Fut: std::future::Future<Output = Result<i64, super::StoreError>>,
{
    if let Some(i) = q
        .conditions
        .iter()
        .position(|c| matches!(c, Condition::Id(_)))
    {
        return Ok(Plan::Drive(vec![i]));
    }
    let mut probed: Vec<(i64, usize)> = Vec::new();
    for i in driver_candidates(q) {
        let Some(sql) = probe_sql(q, i, PROBE_LIMIT) else {
            continue;
        };
        let n = count(sql).await?;
        if n <= SMALL_DRIVER {
            return Ok(Plan::Drive(vec![i]));
        }
        probed.push((n, i));
    }
    probed.sort();
    let narrow: Vec<usize> = probed
        .iter()
        .filter(|(n, _)| *n < PROBE_LIMIT)
        .map(|(_, i)| *i)
        .collect();
    // Sorted by date with only date conditions narrow: walking that date
    // range in order stops at a full page, where driving would check (and
    // sort) every entry of the range.
    let walk_dates = q.sort == SortKey::Recorded
        && purpose == Purpose::Page
        && narrow.iter().all(|&i| is_date(&q.conditions[i]));
    if !narrow.is_empty() && !walk_dates {
        return Ok(Plan::Drive(narrow));
    }
    if narrow.is_empty() && probed.len() >= 2 {
        let mut wide: Vec<(i64, usize)> = Vec::new();
        for &(_, i) in &probed {
            if let Some(sql) = probe_sql(q, i, WIDE_PROBE_LIMIT) {
                let n = count(sql).await?;
                if n < WIDE_PROBE_LIMIT {
                    wide.push((n, i));
                }
            }
        }
        if wide.len() >= 2 {
            wide.sort();
            return Ok(Plan::Drive(wide.into_iter().map(|(_, i)| i).collect()));
        }
    }
    Ok(match (purpose, probed.first()) {
        // A count must see every match: one condition's index rows are
        // cheaper to read than every entry.
        (Purpose::Count, Some(&(_, i))) => Plan::Drive(vec![i]),
        _ => Plan::Walk,
    })
}

/// How many rows (up to `limit`) condition `i` matches in the index: a
/// bounded index range scan.
pub fn probe_sql(q: &SearchQuery, i: usize, limit: i64) -> Option<Sql> {
    let Condition::Has { param, any, .. } = q.conditions.get(i)? else {
        return None;
    };
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) AS n FROM (SELECT 1 FROM search_index s WHERE s.seq <= ");
    sql.bind_int(q.head);
    sql.push(" AND s.param = ");
    sql.bind_text(param.as_str());
    sql.push(" AND (");
    row_matches(&mut sql, any);
    sql.push(") LIMIT ");
    sql.bind_int(limit);
    sql.push(") p");
    Some(sql)
}

/// The entries a plan starts from, as `FROM …` source aliased `d` (its
/// `seq` column is the entry's), plus the sort key expression over it.
fn source(sql: &mut Sql, q: &SearchQuery, plan: &Plan, dialect: Dialect) -> &'static str {
    let date_sort = q.sort == SortKey::Recorded;
    match plan {
        Plan::Drive(drivers) => {
            sql.push(" FROM (");
            for (j, &i) in drivers.iter().enumerate() {
                if j > 0 {
                    sql.push(" INTERSECT ");
                }
                driver_rows(sql, q, i, drivers.len() == 1);
            }
            sql.push(") d");
            if date_sort {
                sql.push(" CROSS JOIN ");
                sql.push(match dialect {
                    Dialect::Sqlite => "search_index dt INDEXED BY search_index_entry",
                    Dialect::Postgres => "search_index dt",
                });
                sql.push(" WHERE dt.seq = d.seq AND dt.param = 'date' AND");
                "dt.low"
            } else {
                sql.push(" WHERE");
                "d.seq"
            }
        }
        // Every entry has exactly one `date` row (`recorded` is 1..1), so
        // walking the date index in order walks the entries by date.
        Plan::Walk if date_sort => {
            sql.push(" FROM search_index d WHERE d.param = 'date' AND d.low IS NOT NULL AND");
            "d.low"
        }
        Plan::Walk => {
            sql.push(" FROM entry d WHERE");
            "d.seq"
        }
    }
}

/// `SELECT seq` of the entries condition `i` matches (bounded by the head).
fn driver_rows(sql: &mut Sql, q: &SearchQuery, i: usize, distinct: bool) {
    match &q.conditions[i] {
        Condition::Id(ids) => {
            sql.push("SELECT s.seq FROM entry s WHERE s.seq <= ");
            sql.bind_int(q.head);
            sql.push(" AND s.id IN (");
            bind_list(sql, ids);
            sql.push(")");
        }
        Condition::Has { param, any, .. } => {
            sql.push(if distinct {
                "SELECT DISTINCT s.seq"
            } else {
                "SELECT s.seq"
            });
            sql.push(" FROM search_index s WHERE s.seq <= ");
            sql.bind_int(q.head);
            sql.push(" AND s.param = ");
            sql.bind_text(param.as_str());
            sql.push(" AND (");
            row_matches(sql, any);
            sql.push(")");
        }
        // Never a driver (see choose_plan); matches nothing rather than
        // everything if it ever were.
        Condition::Missing { .. } => sql.push("SELECT s.seq FROM entry s WHERE 1 = 0"),
    }
}

/// The query returning one page of hits (`sort_key` column last). The page
/// is found from the index alone; only its rows are read from `entry`.
pub fn page_sql(q: &SearchQuery, plan: &Plan, dialect: Dialect) -> Sql {
    let backwards = q.cursor.is_some_and(|c| !c.forward);
    let dir = if q.descending != backwards {
        "DESC"
    } else {
        "ASC"
    };
    let mut sql = Sql::default();
    sql.push("SELECT ");
    sql.push(COLUMNS);
    sql.push(", p.sort_key FROM (SELECT d.seq AS seq, ");
    // The key expression is only known once the source is chosen: render
    // the source into its own buffer first.
    let mut from = Sql::default();
    let key = source(&mut from, q, plan, dialect);
    sql.push(key);
    sql.push(" AS sort_key");
    sql.append(from);
    conditions(&mut sql, q, plan, dialect);
    if let Some(c) = q.cursor {
        // Walking backwards for a previous page flips the comparison; the
        // caller re-reverses the rows.
        let op = if c.forward != q.descending { ">" } else { "<" };
        sql.push(&format!(" AND ({key} {op} "));
        sql.bind_int(c.key);
        sql.push(&format!(" OR ({key} = "));
        sql.bind_int(c.key);
        sql.push(&format!(" AND d.seq {op} "));
        sql.bind_int(c.seq);
        sql.push("))");
    }
    if key == "d.seq" {
        sql.push(&format!(" ORDER BY d.seq {dir} LIMIT "));
    } else {
        sql.push(&format!(" ORDER BY {key} {dir}, d.seq {dir} LIMIT "));
    }
    sql.bind_int(q.limit);
    sql.push(&format!(
        ") p CROSS JOIN entry e WHERE e.seq = p.seq ORDER BY p.sort_key {dir}, p.seq {dir}"
    ));
    sql
}

/// The query counting every match (for `total`), ignoring cursor and limit.
pub fn count_sql(q: &SearchQuery, plan: &Plan, dialect: Dialect) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) AS n");
    let count_q = SearchQuery {
        sort: SortKey::Seq,
        ..q.clone()
    };
    source(&mut sql, &count_q, plan, dialect);
    conditions(&mut sql, &count_q, plan, dialect);
    sql
}

/// ` d.seq <= head AND <every condition not driving>` over source `d`.
fn conditions(sql: &mut Sql, q: &SearchQuery, plan: &Plan, dialect: Dialect) {
    sql.push(" d.seq <= ");
    sql.bind_int(q.head);
    let drivers: &[usize] = match plan {
        Plan::Drive(d) => d,
        Plan::Walk => &[],
    };
    let walks_dates = *plan == Plan::Walk && q.sort == SortKey::Recorded;
    for (i, c) in q.conditions.iter().enumerate() {
        if drivers.contains(&i) {
            continue;
        }
        sql.push(" AND ");
        match c {
            Condition::Id(ids) => {
                sql.push("d.seq IN (SELECT s.seq FROM entry s WHERE s.id IN (");
                bind_list(sql, ids);
                sql.push("))");
            }
            Condition::Has { any, .. } if walks_dates && is_date(c) => {
                date_on_walked_row(sql, any);
            }
            Condition::Has {
                param, any, negate, ..
            } => {
                if *negate {
                    sql.push("NOT ");
                }
                sql.push("EXISTS (SELECT 1 FROM ");
                sql.push(dialect.probe_table());
                sql.push(" WHERE s.seq = d.seq AND s.param = ");
                sql.bind_text(param.as_str());
                sql.push(" AND (");
                row_matches(sql, any);
                sql.push("))");
            }
            Condition::Missing { param, missing } => {
                if *missing {
                    sql.push("NOT ");
                }
                sql.push("EXISTS (SELECT 1 FROM ");
                sql.push(dialect.probe_table());
                sql.push(" WHERE s.seq = d.seq AND s.param = ");
                sql.bind_text(param.as_str());
                sql.push(")");
            }
        }
    }
}

/// A positive condition on the `date` parameter (`recorded`).
fn is_date(c: &Condition) -> bool {
    matches!(c, Condition::Has { param, negate: false, .. } if param == "date")
}

/// A `date` condition tested on the walked date row `d` itself (every entry
/// has exactly one), so it bounds the walk's index range. Values are bound,
/// never in the text, so renaming the columns is safe.
fn date_on_walked_row(sql: &mut Sql, any: &[RowMatch]) {
    let mut m = Sql::default();
    m.push("(");
    row_matches(&mut m, any);
    m.push(")");
    sql.append(Sql {
        text: m.text.replace("s.low", "d.low").replace("s.high", "d.high"),
        binds: m.binds,
    });
}

fn bind_list(sql: &mut Sql, values: &[String]) {
    for (j, v) in values.iter().enumerate() {
        if j > 0 {
            sql.push(",");
        }
        sql.bind_text(v.as_str());
    }
}

/// `m1 OR m2 OR …` (comma = OR).
fn row_matches(sql: &mut Sql, any: &[RowMatch]) {
    for (j, m) in any.iter().enumerate() {
        if j > 0 {
            sql.push(" OR ");
        }
        row_match(sql, m);
    }
}

/// Escapes `%`, `_` and `\` for `LIKE … ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn row_match(sql: &mut Sql, m: &RowMatch) {
    match m {
        RowMatch::Value { val, sys } => {
            sql.push("(s.val = ");
            sql.bind_text(bound_index_text(val));
            match sys {
                SystemMatch::Any => {}
                SystemMatch::Absent => sql.push(" AND s.sys IS NULL"),
                SystemMatch::Is(system) => {
                    sql.push(" AND s.sys = ");
                    sql.bind_text(bound_index_text(system));
                }
            }
            sql.push(")");
        }
        RowMatch::System(system) => {
            sql.push("(s.sys = ");
            sql.bind_text(bound_index_text(system));
            sql.push(")");
        }
        RowMatch::TypedId { ty, id } => {
            sql.push("(s.val = ");
            sql.bind_text(bound_index_text(id));
            sql.push(" AND s.sys = ");
            sql.bind_text(bound_index_text(ty));
            sql.push(")");
        }
        RowMatch::Prefix(p) => {
            // A byte range, so the (param, val) index serves it; "C"
            // collation on PostgreSQL makes the range byte-wise there too.
            let p = bound_index_text(p);
            sql.push("(s.val >= ");
            sql.bind_text(p.as_ref());
            sql.push(" AND s.val < ");
            sql.bind_text(format!("{p}\u{10FFFF}"));
            sql.push(")");
        }
        RowMatch::Contains(p) => {
            sql.push("(s.val LIKE ");
            sql.bind_text(format!("%{}%", like_escape(p)));
            sql.push(" ESCAPE '\\')");
        }
        RowMatch::Exact(v) => {
            sql.push("(s.exact = ");
            sql.bind_text(bound_index_text(v));
            sql.push(")");
        }
        RowMatch::Date { prefix, low, high } => date_match(sql, *prefix, *low, *high),
    }
}

/// R4 date prefix semantics over ranges: the target is `[s.low, s.high)`, the
/// search value `[low, high)`. Each form also bounds `s.low` (targets are
/// at most `MAX_TARGET_WIDTH_US` wide) so the date index narrows the scan.
fn date_match(sql: &mut Sql, prefix: DatePrefix, low: i64, high: i64) {
    let w = MAX_TARGET_WIDTH_US;
    let cond = |sql: &mut Sql, parts: &[(&str, i64)]| {
        sql.push("(");
        for (i, (text, v)) in parts.iter().enumerate() {
            if i > 0 {
                sql.push(" AND ");
            }
            sql.push(text);
            sql.bind_int(*v);
        }
        sql.push(")");
    };
    match prefix {
        // The search range contains the target.
        // (`s.low < high` is implied, but bounds the index range scan.)
        DatePrefix::Eq => cond(
            sql,
            &[("s.low >= ", low), ("s.low < ", high), ("s.high <= ", high)],
        ),
        // Not contained.
        DatePrefix::Ne => {
            sql.push("(s.low < ");
            sql.bind_int(low);
            sql.push(" OR s.high > ");
            sql.bind_int(high);
            sql.push(")");
        }
        // The range above the search value overlaps the target.
        DatePrefix::Gt => cond(sql, &[("s.low > ", high - w), ("s.high > ", high)]),
        // The range below the search value overlaps the target.
        DatePrefix::Lt => cond(sql, &[("s.low < ", low)]),
        // gt, or contained.
        DatePrefix::Ge => {
            sql.push("(s.low > ");
            sql.bind_int(low - w);
            sql.push(" AND (s.low >= ");
            sql.bind_int(low);
            sql.push(" OR s.high > ");
            sql.bind_int(high);
            sql.push("))");
        }
        // lt, or contained.
        DatePrefix::Le => {
            sql.push("(s.low < ");
            sql.bind_int(high);
            sql.push(" AND (s.high <= ");
            sql.bind_int(high);
            sql.push(" OR s.low < ");
            sql.bind_int(low);
            sql.push("))");
        }
        // Starts after the search range ends.
        DatePrefix::Sa => cond(sql, &[("s.low >= ", high)]),
        // Ends before the search range starts.
        DatePrefix::Eb => cond(sql, &[("s.low < ", low), ("s.high <= ", low)]),
        // Overlaps the (already widened) search range.
        DatePrefix::Ap => cond(
            sql,
            &[
                ("s.low > ", low - w),
                ("s.low < ", high),
                ("s.high > ", low),
            ],
        ),
    }
}

/// Reads a page's rows (`page_sql`) back, in the query's sort order.
pub(crate) fn hits_in_order(mut hits: Vec<SearchHit>, q: &SearchQuery) -> Vec<SearchHit> {
    if q.cursor.is_some_and(|c| !c.forward) {
        hits.reverse();
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(conditions: Vec<Condition>) -> SearchQuery {
        SearchQuery {
            conditions,
            sort: SortKey::Seq,
            descending: false,
            head: 100,
            cursor: None,
            limit: 10,
        }
    }

    fn has(param: &str, val: &str, selectivity: Selectivity) -> Condition {
        Condition::Has {
            param: param.into(),
            any: vec![RowMatch::Value {
                val: val.into(),
                sys: SystemMatch::Any,
            }],
            negate: false,
            selectivity,
        }
    }

    /// Runs `choose_plan` with probe answers given per parameter name.
    fn plan_with(query: &SearchQuery, purpose: Purpose, counts: &[(&str, i64)]) -> Plan {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(choose_plan(query, purpose, |sql: Sql| {
            // A probe counts up to its LIMIT, the last bound integer.
            let limit = sql.binds.iter().rev().find_map(|b| match b {
                Bind::Int(n) => Some(*n),
                Bind::Text(_) => None,
            });
            let n = counts
                .iter()
                .find(|(p, _)| sql.binds.contains(&Bind::Text(p.to_string())))
                .map_or(0, |(_, n)| *n)
                .min(limit.unwrap_or(i64::MAX));
            async move { Ok(n) }
        }))
        .expect("plan")
    }

    #[test]
    fn values_are_bound_not_spliced() {
        let query = q(vec![Condition::Has {
            param: "agent-name".into(),
            any: vec![RowMatch::Prefix("o'brien".into())],
            negate: false,
            selectivity: Selectivity::Narrow,
        }]);
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = page_sql(&query, &Plan::Drive(vec![0]), dialect);
            assert!(!sql.text.contains("o'brien"));
            assert_eq!(sql.text.matches('?').count(), sql.binds.len());
            assert!(sql.numbered().contains("$4"));
        }
    }

    #[test]
    fn a_small_condition_drives_alone_without_probing_the_rest() {
        let query = q(vec![
            has("patient", "p1", Selectivity::Narrow),
            has("date", "x", Selectivity::Medium),
        ]);
        let plan = plan_with(&query, Purpose::Page, &[("patient", 12), ("date", 9_000)]);
        assert_eq!(plan, Plan::Drive(vec![0]));
    }

    #[test]
    fn narrow_conditions_are_intersected_smallest_first() {
        let query = q(vec![
            has("subtype", "inference", Selectivity::Broad),
            has("agent", "rad-7", Selectivity::Narrow),
            has("date", "day", Selectivity::Medium),
        ]);
        let plan = plan_with(
            &query,
            Purpose::Page,
            &[("subtype", PROBE_LIMIT), ("agent", 4_900), ("date", 2_800)],
        );
        assert_eq!(plan, Plan::Drive(vec![2, 1]));
        let sql = page_sql(&query, &plan, Dialect::Sqlite);
        assert!(sql.text.contains(" INTERSECT "));
        assert!(sql.text.contains("INDEXED BY search_index_entry"));
        let pg = page_sql(&query, &plan, Dialect::Postgres);
        assert!(!pg.text.contains("INDEXED BY"));
    }

    #[test]
    fn broad_conditions_walk_for_a_page_but_drive_a_count() {
        let query = q(vec![has("action", "E", Selectivity::Broad)]);
        let counts = [("action", PROBE_LIMIT)];
        assert_eq!(plan_with(&query, Purpose::Page, &counts), Plan::Walk);
        assert_eq!(
            plan_with(&query, Purpose::Count, &counts),
            Plan::Drive(vec![0])
        );
        let sql = page_sql(&query, &Plan::Walk, Dialect::Sqlite);
        assert!(sql.text.contains("FROM entry d WHERE"));
        assert!(sql.text.contains("EXISTS"));
    }

    #[test]
    fn a_rare_conjunction_of_broad_conditions_drives_by_its_narrower_ones() {
        // 10 M events: one model version, one day, one radiologist.
        let query = q(vec![
            has("agent:identifier", "chest-ai|2.5.0", Selectivity::Narrow),
            has("date", "day", Selectivity::Medium),
            has("agent", "rad-7", Selectivity::Narrow),
        ]);
        let counts = [
            ("agent:identifier", 1_500_000),
            ("date", 27_000),
            ("agent", 50_000),
        ];
        assert_eq!(
            plan_with(&query, Purpose::Page, &counts),
            Plan::Drive(vec![1, 2])
        );
        assert_eq!(
            plan_with(&query, Purpose::Count, &counts),
            Plan::Drive(vec![1, 2])
        );
        // Only one under the wide limit: walking may still fill a page soon.
        let counts = [
            ("agent:identifier", 1_500_000),
            ("date", 27_000),
            ("agent", 500_000),
        ];
        assert_eq!(plan_with(&query, Purpose::Page, &counts), Plan::Walk);
    }

    #[test]
    fn an_id_always_drives() {
        let query = q(vec![
            has("action", "E", Selectivity::Broad),
            Condition::Id(vec!["abc".into()]),
        ]);
        assert_eq!(plan_with(&query, Purpose::Page, &[]), Plan::Drive(vec![1]));
    }

    #[test]
    fn walking_by_date_walks_the_date_index() {
        let mut query = q(vec![has("action", "E", Selectivity::Broad)]);
        query.sort = SortKey::Recorded;
        query.descending = true;
        let sql = page_sql(&query, &Plan::Walk, Dialect::Postgres);
        assert!(sql
            .text
            .contains("FROM search_index d WHERE d.param = 'date'"));
        assert!(sql.text.contains("ORDER BY d.low DESC, d.seq DESC"));
    }

    #[test]
    fn a_date_sorted_search_walks_its_narrow_date_range() {
        let mut query = q(vec![
            has("subtype", "override", Selectivity::Broad),
            Condition::Has {
                param: "date".into(),
                any: vec![RowMatch::Date {
                    prefix: DatePrefix::Eq,
                    low: 10,
                    high: 20,
                }],
                negate: false,
                selectivity: Selectivity::Medium,
            },
        ]);
        query.sort = SortKey::Recorded;
        let counts = [("subtype", PROBE_LIMIT), ("date", 2_800)];
        assert_eq!(plan_with(&query, Purpose::Page, &counts), Plan::Walk);
        assert_eq!(
            plan_with(&query, Purpose::Count, &counts),
            Plan::Drive(vec![1])
        );
        let sql = page_sql(&query, &Plan::Walk, Dialect::Sqlite);
        assert!(sql
            .text
            .contains("(d.low >= ? AND d.low < ? AND d.high <= ?)"));
        assert_eq!(sql.text.matches("EXISTS").count(), 1);
        query.sort = SortKey::Seq;
        assert_eq!(
            plan_with(&query, Purpose::Page, &counts),
            Plan::Drive(vec![1])
        );
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }
}
