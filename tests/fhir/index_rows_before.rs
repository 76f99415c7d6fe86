//! The search-index rows of the owned-tree extraction this crate used
//! before the borrowing one (kept here verbatim, as the reference), against
//! the rows the current code derives — from the owned tree (intake) and
//! from the tape (verify, back-fill) — on every AuditEvent fixture and on
//! the events `vellum demo` stores. Equal row for row, in order.

use vellum::dicom::enrich::study_uid_of;
use vellum::fhir::search_index::{
    date_range, extract, normalize_string, rows_for_body, split_reference, PIXEL_PENDING,
};
use vellum::store::{AnyStore, IndexRow, Store};
use vellum_json::Json;
use vellum_testkit::*;

/// The previous `pending_study` (owned tree, owned result).
fn pending_study(entity: &Json) -> Option<String> {
    let pending = entity
        .get("detail")
        .and_then(Json::as_array)?
        .iter()
        .any(|d| {
            d.get("type").and_then(Json::as_str) == Some(vellum::dicom::enrich::DETAIL_PENDING)
        });
    if pending {
        study_uid_of(entity)
    } else {
        None
    }
}

/// One index row of a token parameter (`system|code`; `system` may be absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenRow {
    param: &'static str,
    system: Option<String>,
    code: String,
}

/// One index row of a string parameter: the value as stored and its
/// normalised form (lower case, accents and punctuation folded) for the
/// default "starts with, case-insensitive" match.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StringRow {
    param: &'static str,
    value: String,
    normalized: String,
}

/// One index row of a reference parameter. `reference` is the literal
/// reference (`Patient/123`), split into type and id when it has that form;
/// `identifier` is the logical reference used by the `:identifier` modifier
/// and the ITI-81 `.identifier` chains.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReferenceRow {
    param: &'static str,
    reference: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    identifier_system: Option<String>,
    identifier_value: Option<String>,
}

/// One index row of a date parameter: the instant range [`low`, `high`)
/// covered by the value's precision, as microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DateRow {
    param: &'static str,
    low: i64,
    high: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SearchIndex {
    tokens: Vec<TokenRow>,
    strings: Vec<StringRow>,
    references: Vec<ReferenceRow>,
    dates: Vec<DateRow>,
    /// Study Instance UIDs whose pixel digest is pending in this event
    /// (internal [`PIXEL_PENDING`] rows, not a FHIR search parameter).
    pixel_pending: Vec<String>,
}

impl SearchIndex {
    /// The rows of the `search_index` table for these values (layout in
    /// migrations/sqlite/0004_search_index.sql).
    fn into_rows(self) -> Vec<IndexRow> {
        let mut rows = Vec::with_capacity(
            self.tokens.len() + self.strings.len() + 2 * self.references.len() + self.dates.len(),
        );
        for t in self.tokens {
            rows.push(IndexRow {
                param: t.param.to_string(),
                sys: t.system,
                val: Some(t.code),
                ..Default::default()
            });
        }
        for s in self.strings {
            rows.push(IndexRow {
                param: s.param.to_string(),
                val: Some(s.normalized),
                exact: Some(s.value),
                ..Default::default()
            });
        }
        for r in self.references {
            if let Some(reference) = r.reference {
                let (sys, val) = match (r.target_type, r.target_id) {
                    (Some(t), Some(id)) => (Some(t), id),
                    _ => (None, reference.clone()),
                };
                rows.push(IndexRow {
                    param: r.param.to_string(),
                    sys,
                    val: Some(val),
                    exact: Some(reference),
                    ..Default::default()
                });
            }
            if let Some(value) = r.identifier_value {
                rows.push(IndexRow {
                    param: format!("{}:identifier", r.param),
                    sys: r.identifier_system,
                    val: Some(value),
                    ..Default::default()
                });
            }
        }
        for d in self.dates {
            rows.push(IndexRow {
                param: d.param.to_string(),
                low: Some(d.low),
                high: Some(d.high),
                ..Default::default()
            });
        }
        for uid in self.pixel_pending {
            rows.push(IndexRow {
                param: PIXEL_PENDING.to_string(),
                val: Some(uid),
                ..Default::default()
            });
        }
        rows
    }
}

/// Iterates a 0..* element (array) or a 0..1 element (single value).
fn each(node: Option<&Json>) -> impl Iterator<Item = &Json> {
    let items: Vec<&Json> = match node {
        Some(j) => match j.as_array() {
            Some(a) => a.iter().collect(),
            None => vec![j],
        },
        None => vec![],
    };
    items.into_iter()
}

fn str_of(node: Option<&Json>) -> Option<String> {
    node.and_then(Json::as_str).map(str::to_string)
}

impl SearchIndex {
    fn token(&mut self, param: &'static str, system: Option<String>, code: Option<String>) {
        if let Some(code) = code {
            self.tokens.push(TokenRow {
                param,
                system,
                code,
            });
        }
    }

    fn coding(&mut self, param: &'static str, coding: &Json) {
        self.token(
            param,
            str_of(coding.get("system")),
            str_of(coding.get("code")),
        );
    }

    fn codeable_concept(&mut self, param: &'static str, cc: &Json) {
        for c in each(cc.get("coding")) {
            self.coding(param, c);
        }
    }

    fn string(&mut self, param: &'static str, value: Option<&Json>) {
        if let Some(v) = value.and_then(Json::as_str) {
            self.strings.push(StringRow {
                param,
                value: v.to_string(),
                normalized: normalize_string(v),
            });
        }
    }

    fn reference(&mut self, param: &'static str, r: &Json) {
        let reference = str_of(r.get("reference"));
        let (target_type, target_id) = reference
            .as_deref()
            .map(split_reference)
            .unwrap_or((None, None));
        let ident = r.get("identifier");
        let row = ReferenceRow {
            param,
            reference,
            target_type,
            target_id,
            identifier_system: ident.and_then(|i| str_of(i.get("system"))),
            identifier_value: ident.and_then(|i| str_of(i.get("value"))),
        };
        if row.reference.is_some() || row.identifier_value.is_some() {
            self.references.push(row);
        }
    }
}

/// Extracts every R4 AuditEvent search parameter from `event`.
fn extract_before(event: &Json) -> SearchIndex {
    let mut ix = SearchIndex::default();
    ix.token("action", None, str_of(event.get("action")));
    if let Some(meta) = event.get("meta") {
        for tag in each(meta.get("tag")) {
            ix.coding("_tag", tag);
        }
    }
    ix.token("outcome", None, str_of(event.get("outcome")));
    if let Some(t) = event.get("type") {
        ix.coding("type", t);
    }
    for st in each(event.get("subtype")) {
        ix.coding("subtype", st);
    }
    if let Some(recorded) = event.get("recorded").and_then(Json::as_str) {
        if let Some((low, high)) = date_range(recorded) {
            ix.dates.push(DateRow {
                param: "date",
                low,
                high,
            });
        }
    }
    for agent in each(event.get("agent")) {
        if let Some(who) = agent.get("who") {
            ix.reference("agent", who);
            if is_patient_reference(who) {
                ix.reference("patient", who);
            }
        }
        ix.string("agent-name", agent.get("name"));
        for role in each(agent.get("role")) {
            ix.codeable_concept("agent-role", role);
        }
        ix.token("altid", None, str_of(agent.get("altId")));
        for p in each(agent.get("policy")) {
            ix.token("policy", None, p.as_str().map(str::to_string));
        }
        if let Some(net) = agent.get("network") {
            ix.string("address", net.get("address"));
        }
    }
    if let Some(source) = event.get("source") {
        ix.token("site", None, str_of(source.get("site")));
        if let Some(obs) = source.get("observer") {
            ix.reference("source", obs);
        }
    }
    for entity in each(event.get("entity")) {
        if let Some(what) = entity.get("what") {
            ix.reference("entity", what);
            if is_patient_reference(what) {
                ix.reference("patient", what);
            }
        }
        ix.string("entity-name", entity.get("name"));
        if let Some(role) = entity.get("role") {
            ix.coding("entity-role", role);
        }
        if let Some(ty) = entity.get("type") {
            ix.coding("entity-type", ty);
        }
        if let Some(uid) = pending_study(entity) {
            if !ix.pixel_pending.contains(&uid) {
                ix.pixel_pending.push(uid);
            }
        }
    }
    ix
}

/// The R4 `patient` parameter: references whose target is a Patient. Without
/// a resolvable literal reference, a `Reference.type` of Patient counts.
fn is_patient_reference(r: &Json) -> bool {
    if let Some(reference) = r.get("reference").and_then(Json::as_str) {
        return split_reference(reference).0.as_deref() == Some("Patient");
    }
    r.get("type").and_then(Json::as_str) == Some("Patient")
}

/// The rows each way; panics naming `what` when any differs from before.
fn check(what: &str, body: &str) -> usize {
    let Ok(root) = vellum_json::parse(body.as_bytes()) else {
        assert!(rows_for_body(body).is_empty(), "{what}: not JSON yet rows");
        return 0;
    };
    let before: Vec<IndexRow> = extract_before(&root).into_rows();
    assert_eq!(extract(&root).into_rows(), before, "{what}: owned tree");
    assert_eq!(rows_for_body(body), before, "{what}: tape");
    before.len()
}

#[test]
fn fixture_rows_equal_the_previous_extraction() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files = Vec::new();
    for sub in ["auditevents", "dicom"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    let mut rows = 0;
    for p in &files {
        let text = std::fs::read_to_string(p).unwrap();
        rows += check(&p.display().to_string(), &text);
        // The canonical form vellum stores.
        if let Ok(c) = vellum_json::canonicalize(text.as_bytes()) {
            rows += check(&p.display().to_string(), std::str::from_utf8(&c).unwrap());
        }
    }
    assert!(files.len() >= 40, "{} fixtures", files.len());
    assert!(rows > 500, "{rows} rows");
}

#[tokio::test]
async fn demo_event_rows_equal_the_previous_extraction() {
    let db = TestDb::new(Backend::Sqlite).await;
    vellum::demo::run_configured(&settings_for(&db.url), 400, 11)
        .await
        .unwrap();
    let store = AnyStore::connect(&vellum::config::DatabaseUrl::parse(&db.url).unwrap(), None)
        .await
        .unwrap();
    let (mut after, mut n, mut rows) = (0, 0, 0);
    loop {
        let page = store.entries_after(after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            rows += check(&format!("seq {}", e.seq), &e.body);
            n += 1;
        }
    }
    assert!(n >= 400, "{n} entries");
    assert!(rows > 10 * n, "{rows} rows");
}
