//! Extraction of the R4 AuditEvent search parameters from a resource, done
//! once at append time so searches read index rows instead of scanning
//! bodies. One function per parameter type; the table below follows the R4
//! SearchParameter expressions for AuditEvent.

use std::borrow::Cow;

use vellum_json::tape::Node;
use vellum_json::JsonView;
use vellum_ledger::store::followups::FollowupKind;
use vellum_ledger::store::{IndexRow, RowRef};

/// One index row of a token parameter (`system|code`; `system` may be absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow<'a> {
    pub param: &'static str,
    pub system: Option<&'a str>,
    pub code: &'a str,
}

/// One index row of a string parameter: the value as stored and its
/// normalised form (lower case, accents and punctuation folded) for the
/// default "starts with, case-insensitive" match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringRow<'a> {
    pub param: &'static str,
    pub value: &'a str,
    pub normalized: Cow<'a, str>,
}

/// One index row of a reference parameter. `reference` is the literal
/// reference (`Patient/123`), split into type and id when it has that form;
/// `identifier` is the logical reference used by the `:identifier` modifier
/// and the ITI-81 `.identifier` chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceRow<'a> {
    pub param: RefParam,
    pub reference: Option<&'a str>,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub identifier_system: Option<&'a str>,
    pub identifier_value: Option<&'a str>,
}

/// A reference parameter's name and that of its `:identifier` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefParam {
    pub name: &'static str,
    pub identifier: &'static str,
}

const AGENT: RefParam = RefParam {
    name: "agent",
    identifier: "agent:identifier",
};
const PATIENT: RefParam = RefParam {
    name: "patient",
    identifier: "patient:identifier",
};
const SOURCE: RefParam = RefParam {
    name: "source",
    identifier: "source:identifier",
};
const ENTITY: RefParam = RefParam {
    name: "entity",
    identifier: "entity:identifier",
};

/// One index row of a date parameter: the instant range [`low`, `high`)
/// covered by the value's precision, as microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRow {
    pub param: &'static str,
    pub low: i64,
    pub high: i64,
}

/// The search parameter values of one event, borrowing from its parsed
/// body (only normalised strings that differ from the value are copied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchIndex<'a> {
    pub tokens: Vec<TokenRow<'a>>,
    pub strings: Vec<StringRow<'a>>,
    pub references: Vec<ReferenceRow<'a>>,
    pub dates: Vec<DateRow>,
    /// Study Instance UIDs whose pixel digest is pending in this event
    /// (internal [`PIXEL_PENDING`] rows, not a FHIR search parameter).
    pub pixel_pending: Vec<&'a str>,
}

/// Internal index parameter: one row (val = Study Instance UID) per study
/// entity stored with a `pixel-sha256-pending` detail. The digest worker
/// (src/dicom/worker.rs) finds its work here; it is not in `fhir::search`'s
/// parameter table, so clients cannot search it (a leading `_` and a name
/// no FHIR parameter has).
pub const PIXEL_PENDING: &str = "_pixel-pending";

/// Studies marked [`PIXEL_PENDING`] are completed by a `pixel-digest`
/// follow-up event stored under `pixel-digest:<event id>|<study uid>`.
pub const PIXEL_DIGEST_FOLLOWUP: FollowupKind = FollowupKind {
    param: PIXEL_PENDING,
    key_prefix: "pixel-digest:",
};

impl SearchIndex<'_> {
    /// Each row of the `search_index` table for these values (layout in
    /// migrations/sqlite/0004_search_index.sql), in table order: tokens,
    /// strings, references, dates, pending studies.
    pub fn each_row(&self, sink: &mut dyn FnMut(RowRef<'_>)) {
        for t in &self.tokens {
            sink(RowRef {
                param: t.param,
                sys: t.system,
                val: Some(t.code),
                ..Default::default()
            });
        }
        for s in &self.strings {
            sink(RowRef {
                param: s.param,
                val: Some(&s.normalized),
                exact: Some(s.value),
                ..Default::default()
            });
        }
        for r in &self.references {
            if let Some(reference) = r.reference {
                let (sys, val) = match (r.target_type, r.target_id) {
                    (Some(t), Some(id)) => (Some(t), id),
                    _ => (None, reference),
                };
                sink(RowRef {
                    param: r.param.name,
                    sys,
                    val: Some(val),
                    exact: Some(reference),
                    ..Default::default()
                });
            }
            if let Some(value) = r.identifier_value {
                sink(RowRef {
                    param: r.param.identifier,
                    sys: r.identifier_system,
                    val: Some(value),
                    ..Default::default()
                });
            }
        }
        for d in &self.dates {
            sink(RowRef {
                param: d.param,
                low: Some(d.low),
                high: Some(d.high),
                ..Default::default()
            });
        }
        for uid in &self.pixel_pending {
            sink(RowRef {
                param: PIXEL_PENDING,
                val: Some(uid),
                ..Default::default()
            });
        }
    }

    /// The rows of the `search_index` table, owned, in [`Self::each_row`]'s order.
    pub fn into_rows(self) -> Vec<IndexRow> {
        let mut rows = Vec::with_capacity(
            self.tokens.len() + self.strings.len() + 2 * self.references.len() + self.dates.len(),
        );
        self.each_row(&mut |r| rows.push(r.to_row()));
        rows
    }
}

/// The parameter rows of a stored body (the back-fill of entries stored
/// before the search index existed; the ledger adds `_lastUpdated`); none
/// when the body is not JSON.
pub fn rows_for_body(body: &str) -> Vec<IndexRow> {
    vellum_ledger::store::index_rows(derive_rows, body)
}

/// The ledger's [`vellum_ledger::store::IndexFn`]: each parameter row of a
/// parsed stored body, borrowed, in table order.
pub fn derive_rows(root: Node<'_>, sink: &mut dyn FnMut(RowRef<'_>)) {
    extract(root).each_row(sink);
}

/// Iterates a 0..* element (array) or a 0..1 element (single value).
fn each<'a, J: JsonView<'a>>(node: Option<J>) -> impl Iterator<Item = J> + use<'a, J> {
    let (items, single) = match node {
        Some(j) => match j.items() {
            Some(a) => (Some(a), None),
            None => (None, Some(j)),
        },
        None => (None, None),
    };
    items.into_iter().flatten().chain(single)
}

fn str_of<'a, J: JsonView<'a>>(node: Option<J>) -> Option<&'a str> {
    node.and_then(J::as_str)
}

impl<'a> SearchIndex<'a> {
    fn token(&mut self, param: &'static str, system: Option<&'a str>, code: Option<&'a str>) {
        if let Some(code) = code {
            self.tokens.push(TokenRow {
                param,
                system,
                code,
            });
        }
    }

    fn coding<J: JsonView<'a>>(&mut self, param: &'static str, coding: J) {
        self.token(
            param,
            str_of(coding.get("system")),
            str_of(coding.get("code")),
        );
    }

    fn codeable_concept<J: JsonView<'a>>(&mut self, param: &'static str, cc: J) {
        for c in each(cc.get("coding")) {
            self.coding(param, c);
        }
    }

    fn string<J: JsonView<'a>>(&mut self, param: &'static str, value: Option<J>) {
        if let Some(v) = str_of(value) {
            self.strings.push(StringRow {
                param,
                value: v,
                normalized: normalized(v),
            });
        }
    }

    fn reference<J: JsonView<'a>>(&mut self, param: RefParam, r: J) {
        let reference = str_of(r.get("reference"));
        let (target_type, target_id) = reference.map(split_ref).unwrap_or((None, None));
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

/// `Patient/123`, `http://x/fhir/Patient/123` or `Patient/123/_history/2` →
/// (`Patient`, `123`); anything else → (None, None).
pub fn split_reference(r: &str) -> (Option<String>, Option<String>) {
    let (ty, id) = split_ref(r);
    (ty.map(str::to_string), id.map(str::to_string))
}

/// [`split_reference`], borrowing from `r`.
fn split_ref(r: &str) -> (Option<&str>, Option<&str>) {
    let r = match r.find("/_history/") {
        Some(i) => &r[..i],
        None => r,
    };
    let mut parts = r.rsplit('/');
    match (parts.next(), parts.next()) {
        (Some(id), Some(ty))
            if !id.is_empty()
                && ty.starts_with(|c: char| c.is_ascii_uppercase())
                && ty.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            (Some(ty), Some(id))
        }
        _ => (None, None),
    }
}

/// FHIR string matching is case- and accent-insensitive: lower-case and
/// strip combining marks of Latin letters.
pub fn normalize_string(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'à'..='å' | 'À'..='Å' => 'a',
            'ç' | 'Ç' => 'c',
            'è'..='ë' | 'È'..='Ë' => 'e',
            'ì'..='ï' | 'Ì'..='Ï' => 'i',
            'ñ' | 'Ñ' => 'n',
            'ò'..='ö' | 'Ò'..='Ö' | 'ø' | 'Ø' => 'o',
            'ù'..='ü' | 'Ù'..='Ü' => 'u',
            'ý' | 'ÿ' | 'Ý' => 'y',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// [`normalize_string`], borrowing `s` when it is already normalised
/// (ASCII without capitals, the common case).
fn normalized(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(normalize_string(s))
    }
}

/// Extracts every R4 AuditEvent search parameter from `event` (the owned
/// tree at intake, the tape of a stored body in `verify`).
pub fn extract<'a, J: JsonView<'a>>(event: J) -> SearchIndex<'a> {
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
    if let Some(recorded) = str_of(event.get("recorded")) {
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
            ix.reference(AGENT, who);
            if is_patient_reference(who) {
                ix.reference(PATIENT, who);
            }
        }
        ix.string("agent-name", agent.get("name"));
        for role in each(agent.get("role")) {
            ix.codeable_concept("agent-role", role);
        }
        ix.token("altid", None, str_of(agent.get("altId")));
        for p in each(agent.get("policy")) {
            ix.token("policy", None, p.as_str());
        }
        if let Some(net) = agent.get("network") {
            ix.string("address", net.get("address"));
        }
    }
    if let Some(source) = event.get("source") {
        ix.token("site", None, str_of(source.get("site")));
        if let Some(obs) = source.get("observer") {
            ix.reference(SOURCE, obs);
        }
    }
    for entity in each(event.get("entity")) {
        if let Some(what) = entity.get("what") {
            ix.reference(ENTITY, what);
            if is_patient_reference(what) {
                ix.reference(PATIENT, what);
            }
        }
        ix.string("entity-name", entity.get("name"));
        if let Some(role) = entity.get("role") {
            ix.coding("entity-role", role);
        }
        if let Some(ty) = entity.get("type") {
            ix.coding("entity-type", ty);
        }
        if let Some(uid) = crate::dicom::enrich::pending_study(entity) {
            if !ix.pixel_pending.contains(&uid) {
                ix.pixel_pending.push(uid);
            }
        }
    }
    ix
}

/// The R4 `patient` parameter: references whose target is a Patient. Without
/// a resolvable literal reference, a `Reference.type` of Patient counts.
fn is_patient_reference<'a, J: JsonView<'a>>(r: J) -> bool {
    if let Some(reference) = str_of(r.get("reference")) {
        return split_ref(reference).0 == Some("Patient");
    }
    str_of(r.get("type")) == Some("Patient")
}

/// The [low, high) range, in µs since the epoch, that a FHIR date, dateTime
/// or instant covers at its precision. Values without a zone are taken as
/// UTC (FHIR leaves them to the server; vellum documents UTC).
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
    let year: i32 = s.get(0..4)?.parse().ok()?;
    let to_us = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1000) as i64;
    let day = |y: i32, m: u8, d: u8| -> Option<OffsetDateTime> {
        let date = Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()?;
        Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc())
    };
    match s.len() {
        4 => Some((to_us(day(year, 1, 1)?), to_us(day(year + 1, 1, 1)?))),
        7 => {
            let m: u8 = s.get(5..7)?.parse().ok()?;
            let next = if m == 12 {
                day(year + 1, 1, 1)?
            } else {
                day(year, m + 1, 1)?
            };
            Some((to_us(day(year, m, 1)?), to_us(next)))
        }
        10 => {
            let m: u8 = s.get(5..7)?.parse().ok()?;
            let d: u8 = s.get(8..10)?.parse().ok()?;
            let start = day(year, m, d)?;
            Some((to_us(start), to_us(start + time::Duration::days(1))))
        }
        _ => {
            let date = day(
                year,
                s.get(5..7)?.parse().ok()?,
                s.get(8..10)?.parse().ok()?,
            )?;
            let rest = s.get(11..)?;
            let (clock, zone) = match rest.find(['Z', '+', '-']) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "Z"),
            };
            // Exactly two digits each, in range (hour 00–23, minute 00–59,
            // second 00–60 for a leap second): an out-of-range component
            // must be refused, not wrapped into the next day.
            let two_digits = |t: &str| -> Option<i64> {
                (t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| t.parse().ok())
                    .flatten()
            };
            let mut parts = clock.split(':');
            let h = two_digits(parts.next()?).filter(|h| *h < 24)?;
            let mi = two_digits(parts.next()?).filter(|m| *m < 60)?;
            // Without seconds the value has minute precision.
            let (sec_text, minute_precision) = match parts.next() {
                Some(t) => (t, false),
                None => ("0", true),
            };
            let (secs, frac) = match sec_text.split_once('.') {
                Some((a, b)) => (a, b),
                None => (sec_text, ""),
            };
            let sec = if minute_precision {
                0
            } else {
                two_digits(secs).filter(|s| *s <= 60)?
            };
            // Precision of the value: whole seconds, or the fraction given
            // (digits only; beyond microseconds they are ignored).
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let frac_us = frac
                .bytes()
                .chain(std::iter::repeat(b'0'))
                .take(6)
                .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
            let width_us = if minute_precision {
                60_000_000
            } else if frac.is_empty() {
                1_000_000
            } else {
                10i64.pow(6 - frac.len().min(6) as u32)
            };
            let offset = if zone == "Z" {
                UtcOffset::UTC
            } else {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let oh = i8::try_from(two_digits(zone.get(1..3)?).filter(|h| *h <= 14)?).ok()?;
                let om = i8::try_from(two_digits(zone.get(4..6)?).filter(|m| *m < 60)?).ok()?;
                UtcOffset::from_hms(sign * oh, sign * om, 0).ok()?
            };
            let local = to_us(date) + ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac_us;
            let low = local - i64::from(offset.whole_seconds()) * 1_000_000;
            Some((low, low + width_us))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vellum_json::parse;

    #[test]
    fn extracts_the_r4_parameters() {
        let ev = parse(
            r#"{"resourceType":"AuditEvent","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110112"},
            "subtype":[{"system":"urn:s","code":"search"}],"action":"E","outcome":"0","recorded":"2026-03-14T09:26:53Z",
            "agent":[{"who":{"reference":"Practitioner/dr1","identifier":{"system":"urn:oid:1.2","value":"rad-7"}},
                      "name":"Dr. Zoë Müller","altId":"zm","requestor":true,"role":[{"coding":[{"system":"urn:r","code":"RAD"}]}],
                      "policy":["urn:policy:1"],"network":{"address":"10.0.0.5","type":"2"}}],
            "source":{"site":"Radiology","observer":{"identifier":{"value":"pacs-01"}}},
            "entity":[{"what":{"reference":"Patient/p1"},"role":{"code":"1"},"type":{"system":"urn:t","code":"1"},"name":"Chest"},
                      {"what":{"identifier":{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}}}]}"#
                .as_bytes(),
        )
        .unwrap();
        let ix = extract(&ev);
        let tok = |p: &str| {
            ix.tokens
                .iter()
                .filter(|t| t.param == p)
                .map(|t| t.code)
                .collect::<Vec<_>>()
        };
        assert_eq!(tok("action"), ["E"]);
        assert_eq!(tok("outcome"), ["0"]);
        assert_eq!(tok("type"), ["110112"]);
        assert_eq!(tok("subtype"), ["search"]);
        assert_eq!(tok("agent-role"), ["RAD"]);
        assert_eq!(tok("altid"), ["zm"]);
        assert_eq!(tok("policy"), ["urn:policy:1"]);
        assert_eq!(tok("site"), ["Radiology"]);
        assert_eq!(tok("entity-role"), ["1"]);
        assert_eq!(tok("entity-type"), ["1"]);
        let names: Vec<_> = ix
            .strings
            .iter()
            .map(|s| (s.param, s.normalized.as_ref()))
            .collect();
        assert!(names.contains(&("agent-name", "dr. zoe muller")));
        assert!(names.contains(&("address", "10.0.0.5")));
        assert!(names.contains(&("entity-name", "chest")));
        let refs: Vec<_> = ix
            .references
            .iter()
            .map(|r| (r.param.name, r.target_id, r.identifier_value))
            .collect();
        assert!(refs.contains(&("agent", Some("dr1"), Some("rad-7"))));
        assert!(refs.contains(&("patient", Some("p1"), None)));
        assert!(refs.contains(&("entity", Some("p1"), None)));
        assert!(refs.contains(&("entity", None, Some("urn:oid:1.2.3"))));
        assert!(refs.contains(&("source", None, Some("pacs-01"))));
        assert_eq!(ix.dates.len(), 1);
    }

    #[test]
    fn date_ranges_follow_precision_and_zone() {
        let utc = |s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
        };
        let us = |s| (utc(s).unix_timestamp_nanos() / 1000) as i64;
        assert_eq!(
            date_range("2026"),
            Some((us("2026-01-01T00:00:00Z"), us("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            date_range("2026-12"),
            Some((us("2026-12-01T00:00:00Z"), us("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            date_range("2024-02-29"),
            Some((us("2024-02-29T00:00:00Z"), us("2024-03-01T00:00:00Z")))
        );
        let (lo, hi) = date_range("2026-03-14T09:26:53+01:00").unwrap();
        assert_eq!((lo, hi - lo), (us("2026-03-14T08:26:53Z"), 1_000_000));
        let (lo, hi) = date_range("2026-03-14T09:26:53.12Z").unwrap();
        assert_eq!((lo, hi - lo), (us("2026-03-14T09:26:53.12Z"), 10_000));
        assert_eq!(date_range("nonsense"), None);
        // Components out of range are refused, never wrapped into the next
        // hour or day.
        for bad in [
            "2026-03-14T24:00:00Z",
            "2026-03-14T09:60:00Z",
            "2026-03-14T09:26:61Z",
            "2026-03-14T99:99:99Z",
            "2026-03-14T+9:26:00Z",
            "2026-03-14T09:26:00+15:00",
            "2026-03-14T09:26:00+01:60",
        ] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
        // A fraction that is not all digits (a multi-byte character where a
        // digit should be) is not a date, and never a panic.
        for bad in [
            "2026-03-14T09:26:00.12345\u{e9}Z",
            "2026-03-14T09:26:00.\u{e9}Z",
            "2026-03-14T09:26:00.1234\u{e9}\u{e9}",
            "2026-03-14T09:26:00.12x",
        ] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn references_split_into_type_and_id() {
        assert_eq!(
            split_reference("Patient/1"),
            (Some("Patient".into()), Some("1".into()))
        );
        assert_eq!(
            split_reference("https://x/fhir/Patient/1/_history/3"),
            (Some("Patient".into()), Some("1".into()))
        );
        assert_eq!(split_reference("urn:uuid:abc"), (None, None));
    }
}
