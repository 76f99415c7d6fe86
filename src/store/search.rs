//! Backend-neutral search queries over the `search_index` table, rendered to
//! SQL with `?` placeholders (PostgreSQL renumbers them to `$n`). Every value
//! is bound, never spliced into the SQL text.
//!
//! Plan: the most selective condition (if any is selective) drives the query
//! as `e.seq IN (SELECT seq FROM search_index …)`; every other condition is a
//! correlated `EXISTS` probe through the `(seq, param)` index. Without a
//! selective condition the entry table is walked in sort order and probed,
//! which stops as soon as a page is full.

use super::StoredEntry;

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

const COLUMNS: &str =
    "e.seq, e.id, e.body, e.body_sha256, e.chain_hash, e.leaf_hash, e.last_updated";

/// Conditions that could drive the query (positive index matches that are
/// not known to be broad), by position.
pub fn driver_candidates(q: &SearchQuery) -> Vec<usize> {
    q.conditions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Condition::Has {
                negate: false,
                selectivity,
                ..
            } if *selectivity < Selectivity::Broad => Some(i),
            _ => None,
        })
        .collect()
}

/// How many rows (up to `PROBE_LIMIT`) condition `i` matches in the index:
/// a bounded index range scan that tells which condition is narrowest on
/// this data, where a static guess cannot (one model version may be most of
/// a store, one radiologist a sliver of it).
pub fn probe_sql(q: &SearchQuery, i: usize) -> Option<Sql> {
    let Condition::Has { param, any, .. } = q.conditions.get(i)? else {
        return None;
    };
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) AS n FROM (SELECT 1 FROM search_index s WHERE s.seq <= ");
    sql.bind_int(q.head);
    sql.push(" AND s.param = ");
    sql.bind_text(param.as_str());
    sql.push(" AND (");
    for (j, m) in any.iter().enumerate() {
        if j > 0 {
            sql.push(" OR ");
        }
        row_match(&mut sql, m);
    }
    sql.push(") LIMIT ");
    sql.bind_int(PROBE_LIMIT);
    sql.push(") p");
    Some(sql)
}

/// Probes stop counting here: beyond it a condition is not worth driving.
pub const PROBE_LIMIT: i64 = 1000;

/// The default driver when nothing was probed: the narrowest by kind.
fn static_driver(q: &SearchQuery) -> Option<usize> {
    driver_candidates(q)
        .into_iter()
        .filter_map(|i| match &q.conditions[i] {
            Condition::Has { selectivity, .. } => Some((*selectivity, i)),
            _ => None,
        })
        .min()
        .map(|(_, i)| i)
}

/// The query returning one page of hits (`sort_key` column last).
pub fn page_sql(q: &SearchQuery) -> Sql {
    page_sql_driven(q, static_driver(q))
}

/// As [`page_sql`], driven by condition `driver` (None: walk the entries).
pub fn page_sql_driven(q: &SearchQuery, driver: Option<usize>) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    sql.push(COLUMNS);
    let key = match q.sort {
        SortKey::Seq => "e.seq",
        SortKey::Recorded => "COALESCE(d.low, 0)",
    };
    sql.push(&format!(", {key} AS sort_key FROM entry e"));
    if q.sort == SortKey::Recorded {
        sql.push(" LEFT JOIN search_index d ON d.seq = e.seq AND d.param = 'date'");
    }
    where_clause(&mut sql, q, driver);
    if let Some(c) = q.cursor {
        // Walking backwards for a previous page flips the comparison; the
        // caller re-reverses the rows.
        let after = c.forward != q.descending;
        let op = if after { ">" } else { "<" };
        sql.push(&format!(" AND ({key} {op} "));
        sql.bind_int(c.key);
        sql.push(&format!(" OR ({key} = "));
        sql.bind_int(c.key);
        sql.push(&format!(" AND e.seq {op} "));
        sql.bind_int(c.seq);
        sql.push("))");
    }
    let backwards = q.cursor.is_some_and(|c| !c.forward);
    let dir = if q.descending != backwards {
        "DESC"
    } else {
        "ASC"
    };
    if q.sort == SortKey::Seq {
        sql.push(&format!(" ORDER BY e.seq {dir} LIMIT "));
    } else {
        sql.push(&format!(" ORDER BY {key} {dir}, e.seq {dir} LIMIT "));
    }
    sql.bind_int(q.limit);
    sql
}

/// The query counting every match (for `total`), ignoring cursor and limit.
pub fn count_sql(q: &SearchQuery, driver: Option<usize>) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT COUNT(*) AS n FROM entry e");
    where_clause(&mut sql, q, driver);
    sql
}

fn where_clause(sql: &mut Sql, q: &SearchQuery, driver: Option<usize>) {
    sql.push(" WHERE e.seq <= ");
    sql.bind_int(q.head);
    for (i, c) in q.conditions.iter().enumerate() {
        sql.push(" AND ");
        match c {
            Condition::Id(ids) => {
                sql.push("e.id IN (");
                for (j, id) in ids.iter().enumerate() {
                    if j > 0 {
                        sql.push(",");
                    }
                    sql.bind_text(id.as_str());
                }
                sql.push(")");
            }
            Condition::Has {
                param, any, negate, ..
            } => {
                if Some(i) == driver {
                    sql.push("e.seq IN (SELECT s.seq FROM search_index s WHERE ");
                } else {
                    if *negate {
                        sql.push("NOT ");
                    }
                    sql.push("EXISTS (SELECT 1 FROM search_index s WHERE s.seq = e.seq AND ");
                }
                sql.push("s.param = ");
                sql.bind_text(param.as_str());
                sql.push(" AND (");
                for (j, m) in any.iter().enumerate() {
                    if j > 0 {
                        sql.push(" OR ");
                    }
                    row_match(sql, m);
                }
                sql.push("))");
            }
            Condition::Missing { param, missing } => {
                if *missing {
                    sql.push("NOT ");
                }
                sql.push("EXISTS (SELECT 1 FROM search_index s WHERE s.seq = e.seq AND s.param = ");
                sql.bind_text(param.as_str());
                sql.push(")");
            }
        }
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
            sql.bind_text(val.as_str());
            match sys {
                SystemMatch::Any => {}
                SystemMatch::Absent => sql.push(" AND s.sys IS NULL"),
                SystemMatch::Is(system) => {
                    sql.push(" AND s.sys = ");
                    sql.bind_text(system.as_str());
                }
            }
            sql.push(")");
        }
        RowMatch::System(system) => {
            sql.push("(s.sys = ");
            sql.bind_text(system.as_str());
            sql.push(")");
        }
        RowMatch::TypedId { ty, id } => {
            sql.push("(s.val = ");
            sql.bind_text(id.as_str());
            sql.push(" AND s.sys = ");
            sql.bind_text(ty.as_str());
            sql.push(")");
        }
        RowMatch::Prefix(p) => {
            // A byte range, so the (param, val) index serves it; "C"
            // collation on PostgreSQL makes the range byte-wise there too.
            sql.push("(s.val >= ");
            sql.bind_text(p.as_str());
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
            sql.bind_text(v.as_str());
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
        DatePrefix::Eq => cond(sql, &[("s.low >= ", low), ("s.high <= ", high)]),
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

    #[test]
    fn values_are_bound_not_spliced() {
        let sql = page_sql(&q(vec![Condition::Has {
            param: "agent-name".into(),
            any: vec![RowMatch::Prefix("o'brien".into())],
            negate: false,
            selectivity: Selectivity::Narrow,
        }]));
        assert!(!sql.text.contains("o'brien"));
        assert_eq!(sql.text.matches('?').count(), sql.binds.len());
        assert!(sql.text.contains("e.seq IN (SELECT"));
        assert!(sql.numbered().contains("$4"));
    }

    #[test]
    fn broad_conditions_probe_instead_of_driving() {
        let sql = page_sql(&q(vec![Condition::Has {
            param: "action".into(),
            any: vec![RowMatch::Value {
                val: "E".into(),
                sys: SystemMatch::Any,
            }],
            negate: false,
            selectivity: Selectivity::Broad,
        }]));
        assert!(sql.text.contains("EXISTS"));
        assert!(!sql.text.contains("e.seq IN"));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }
}
