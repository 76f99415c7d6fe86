//! Validation against vellum's own profiles, driven by the
//! StructureDefinitions in `profiles/` (embedded: the binary is
//! self-contained). Applies to every event whose `meta.profile` names a
//! vellum profile, whichever way it arrives.
//!
//! What is checked, from each profile's differential: cardinality (min/max)
//! of elements and slices, fixed[x] / pattern[x] values, required bindings to
//! vellum's ValueSets, the type of `value[x]`, slicing by `value` / `pattern`
//! discriminators, and the invariants the profiles declare (implemented
//! here, keyed by their id). Base R4 rules are validate.rs's job.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde_json::Value;

use super::outcome::{Issue, IssueType};

/// Canonical prefix of vellum's StructureDefinitions.
pub use crate::vocabulary::PROFILE_PREFIX;
use crate::vocabulary::VALUESET_PREFIX;

const PROFILE_SOURCES: &[&str] = &[
    include_str!("../../profiles/hl7v2-message-receipt.json"),
    include_str!("../../profiles/radiology-ai-inference.json"),
    include_str!("../../profiles/radiology-ai-override.json"),
    include_str!("../../profiles/radiology-ai-rendering.json"),
    include_str!("../../profiles/ai-model-deployment.json"),
    include_str!("../../profiles/pixel-digest.json"),
    include_str!("../../profiles/audit-log-access.json"),
    include_str!("../../profiles/radiology-ai-drift-alert.json"),
    include_str!("../../profiles/security-alert.json"),
];

const TERMINOLOGY_SOURCES: &[&str] = &[
    include_str!("../../profiles/codesystem-radiology-ai-event.json"),
    include_str!("../../profiles/valueset-radiology-ai-event.json"),
    include_str!("../../profiles/codesystem-ai-override-action.json"),
    include_str!("../../profiles/valueset-ai-override-action.json"),
    include_str!("../../profiles/codesystem-ai-override-reason.json"),
    include_str!("../../profiles/valueset-ai-override-reason.json"),
    include_str!("../../profiles/codesystem-audit-log-operation.json"),
    include_str!("../../profiles/valueset-audit-log-operation.json"),
    include_str!("../../profiles/codesystem-detection-rule.json"),
    include_str!("../../profiles/valueset-detection-rule.json"),
];

/// One differential element, reduced to what is checked.
#[derive(Debug, Clone, Default)]
struct Element {
    min: Option<u64>,
    /// `None` = unbounded ("*").
    max: Option<Option<u64>>,
    fixed: Option<Value>,
    pattern: Option<Value>,
    /// ValueSet URL of a required binding.
    binding: Option<String>,
    /// Allowed types of a `value[x]`.
    types: Vec<String>,
    /// Discriminator paths when the element is sliced.
    discriminators: Vec<String>,
    /// Invariant keys and their human text.
    constraints: Vec<(String, String)>,
}

struct Profile {
    name: String,
    elements: HashMap<String, Element>,
    /// Element id → the names of its constrained children, sorted (computed
    /// once: scanning every element per visited node dominated the check).
    children: HashMap<String, Vec<String>>,
    /// Element id → its direct slices (`id:name`), sorted.
    slices: HashMap<String, Vec<String>>,
}

/// What an element without a differential entry is constrained by: nothing.
static UNCONSTRAINED: Element = Element {
    min: None,
    max: None,
    fixed: None,
    pattern: None,
    binding: None,
    types: Vec::new(),
    discriminators: Vec::new(),
    constraints: Vec::new(),
};

struct Registry {
    profiles: HashMap<String, Profile>,
    /// ValueSet URL → allowed (system, code).
    value_sets: HashMap<String, BTreeSet<(String, String)>>,
}

fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let mut profiles = HashMap::new();
        for src in PROFILE_SOURCES {
            // Embedded at build time and checked by the tests below: a
            // malformed file is a build defect, and is skipped, not fatal.
            let Ok(sd) = serde_json::from_str::<Value>(src) else {
                continue;
            };
            if let (Some(url), Some(p)) = (sd["url"].as_str(), parse_profile(&sd)) {
                profiles.insert(url.to_string(), p);
            }
        }
        let mut systems: HashMap<String, BTreeSet<String>> = HashMap::new();
        let docs: Vec<Value> = TERMINOLOGY_SOURCES
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        for cs in docs.iter().filter(|d| d["resourceType"] == "CodeSystem") {
            let codes = cs["concept"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["code"].as_str().map(str::to_string))
                .collect();
            if let Some(url) = cs["url"].as_str() {
                systems.insert(url.to_string(), codes);
            }
        }
        let mut value_sets = HashMap::new();
        for vs in docs.iter().filter(|d| d["resourceType"] == "ValueSet") {
            let mut allowed = BTreeSet::new();
            for inc in vs["compose"]["include"].as_array().into_iter().flatten() {
                if let Some(sys) = inc["system"].as_str() {
                    for code in systems.get(sys).into_iter().flatten() {
                        allowed.insert((sys.to_string(), code.clone()));
                    }
                }
            }
            if let Some(url) = vs["url"].as_str() {
                value_sets.insert(url.to_string(), allowed);
            }
        }
        Registry {
            profiles,
            value_sets,
        }
    })
}

fn parse_profile(sd: &Value) -> Option<Profile> {
    let mut elements = HashMap::new();
    for e in sd["differential"]["element"].as_array()? {
        let Some(id) = e["id"].as_str() else {
            continue;
        };
        let mut el = Element {
            min: e["min"].as_u64(),
            max: e["max"].as_str().map(|m| m.parse().ok()),
            ..Element::default()
        };
        if let Some(obj) = e.as_object() {
            for (k, v) in obj {
                if k.starts_with("fixed") {
                    el.fixed = Some(v.clone());
                } else if k.starts_with("pattern") {
                    el.pattern = Some(v.clone());
                }
            }
        }
        if e["binding"]["strength"] == "required" {
            el.binding = e["binding"]["valueSet"].as_str().map(str::to_string);
        }
        el.types = e["type"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["code"].as_str().map(str::to_string))
            .collect();
        el.discriminators = e["slicing"]["discriminator"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["path"].as_str().map(str::to_string))
            .collect();
        el.constraints = e["constraint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["key"].as_str()?.to_string(),
                    c["human"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect();
        elements.insert(id.to_string(), el);
    }
    let mut children: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut slices: HashMap<String, Vec<String>> = HashMap::new();
    for id in elements.keys() {
        // Every prefix ending before a '.' is a context this id constrains a child of.
        for (dot, _) in id.match_indices('.') {
            let (ctx, rest) = (&id[..dot], &id[dot + 1..]);
            let seg = rest.split('.').next().unwrap_or(rest);
            let name = seg.split(':').next().unwrap_or(seg);
            children
                .entry(ctx.to_string())
                .or_default()
                .insert(name.to_string());
        }
        // `id` is a direct slice of every prefix that ends before a ':' with no '.' after it.
        for (colon, _) in id.match_indices(':') {
            if !id[colon..].contains('.') {
                slices
                    .entry(id[..colon].to_string())
                    .or_default()
                    .push(id.clone());
            }
        }
    }
    for s in slices.values_mut() {
        s.sort();
    }
    Some(Profile {
        name: sd["name"].as_str().unwrap_or("profile").to_string(),
        elements,
        children: children
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect(),
        slices,
    })
}

/// The vellum profiles `meta.profile` names, with their index.
fn named_profiles(root: &Value) -> Vec<(usize, &str)> {
    root["meta"]["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, p)| p.as_str().map(|s| (i, s)))
        .filter(|(_, s)| s.starts_with(PROFILE_PREFIX))
        .collect()
}

/// Cheap pre-check on the raw body: could it name a vellum profile?
pub fn may_name_vellum_profile(body: &[u8]) -> bool {
    body.windows(PROFILE_PREFIX.len())
        .any(|w| w == PROFILE_PREFIX.as_bytes())
}

/// Every violation of the vellum profiles `root` claims.
pub fn validate_profiles(root: &Value) -> Vec<Issue> {
    let reg = registry();
    let mut issues = Vec::new();
    for (i, url) in named_profiles(root) {
        // Ignore a version suffix (`url|0.1.0`).
        let bare = url.split('|').next().unwrap_or(url);
        match reg.profiles.get(bare) {
            Some(p) => {
                let mut v = Checker {
                    profile: p,
                    reg,
                    root,
                    issues: Vec::new(),
                };
                v.check("AuditEvent", root, "AuditEvent");
                issues.extend(v.issues);
            }
            None => issues.push(
                Issue::error(
                    IssueType::NotSupported,
                    format!("meta.profile names {url}, which is not one of vellum's profiles"),
                )
                .at(format!("AuditEvent.meta.profile[{i}]")),
            ),
        }
    }
    issues
}

struct Checker<'a> {
    profile: &'a Profile,
    reg: &'a Registry,
    root: &'a Value,
    issues: Vec<Issue>,
}

static NONE: Vec<String> = Vec::new();

/// `pattern` is contained in `v` (FHIR pattern semantics).
fn contains(v: &Value, pattern: &Value) -> bool {
    match (v, pattern) {
        (Value::Object(vo), Value::Object(po)) => po
            .iter()
            .all(|(k, pv)| vo.get(k).is_some_and(|x| contains(x, pv))),
        (Value::Array(va), Value::Array(pa)) => {
            pa.iter().all(|p| va.iter().any(|x| contains(x, p)))
        }
        _ => v == pattern,
    }
}

/// Values at a dotted `path` below `v` (arrays flattened).
fn values_at<'v>(v: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut cur = vec![v];
    if path == "$this" {
        return cur;
    }
    for seg in path.split('.') {
        cur = cur
            .into_iter()
            .flat_map(|x| match x.get(seg) {
                Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
                Some(other) => vec![other],
                None => vec![],
            })
            .collect();
    }
    cur
}

fn type_suffix(t: &str) -> String {
    let mut c = t.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

impl<'a> Checker<'a> {
    fn el(&self, id: &str) -> Option<&'a Element> {
        self.profile.elements.get(id)
    }

    fn issue(&mut self, code: IssueType, at: &str, msg: String) {
        self.issues
            .push(Issue::error(code, format!("{} ({}): {msg}", at, self.profile.name)).at(at));
    }

    /// Names of the children of `ctx` that the differential constrains.
    fn children(&self, ctx: &str) -> &'a [String] {
        let profile: &'a Profile = self.profile;
        profile.children.get(ctx).unwrap_or(&NONE)
    }

    /// Direct slices of element `id` (`id:name`).
    fn slices(&self, id: &str) -> &'a [String] {
        let profile: &'a Profile = self.profile;
        profile.slices.get(id).unwrap_or(&NONE)
    }

    fn check(&mut self, ctx: &str, node: &Value, at: &str) {
        if let Some(el) = self.el(ctx) {
            for (key, human) in &el.constraints {
                for bad in invariant(key, self.root, node, at) {
                    self.issue(IssueType::Invariant, &bad, format!("{key}: {human}"));
                }
            }
        }
        for name in self.children(ctx) {
            let id = format!("{ctx}.{name}");
            let values: Vec<(String, &Value)> = if let Some(prefix) = name.strip_suffix("[x]") {
                let allowed: &[String] = self.el(&id).map_or(&[], |e| &e.types);
                let found: Vec<(&String, &Value)> = node
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| {
                        k.strip_prefix(prefix)
                            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_uppercase()))
                    })
                    .collect();
                let path = format!("{at}.{prefix}");
                for (k, _) in &found {
                    let ok = allowed.is_empty()
                        || allowed
                            .iter()
                            .any(|t| **k == format!("{prefix}{}", type_suffix(t)));
                    if !ok {
                        self.issue(
                            IssueType::Value,
                            &path,
                            format!(
                                "{k} is not allowed here; use {prefix}{}",
                                allowed
                                    .iter()
                                    .map(|t| type_suffix(t))
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            ),
                        );
                    }
                }
                found.into_iter().map(|(_, v)| (path.clone(), v)).collect()
            } else {
                match node.get(name) {
                    Some(Value::Array(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (format!("{at}.{name}[{i}]"), v))
                        .collect(),
                    Some(v) => vec![(format!("{at}.{name}"), v)],
                    None => vec![],
                }
            };
            let here = format!("{at}.{name}");
            let el = self.el(&id).unwrap_or(&UNCONSTRAINED);
            self.cardinality(el, values.len(), &here, None);
            for (p, v) in &values {
                self.values(el, p, v);
                if v.is_object() {
                    self.check(&id, v, p);
                }
            }
            let slices = self.slices(&id);
            for slice in slices {
                let matching: Vec<&(String, &Value)> = values
                    .iter()
                    .filter(|(_, v)| self.in_slice(slice, &el.discriminators, v))
                    .collect();
                let sel = self.el(slice).unwrap_or(&UNCONSTRAINED);
                let slice_name = slice.rsplit(':').next().unwrap_or(slice);
                self.cardinality(sel, matching.len(), &here, Some(slice_name));
                for (p, v) in matching {
                    self.values(sel, p, v);
                    if v.is_object() {
                        self.check(slice, v, p);
                    }
                }
            }
        }
    }

    fn cardinality(&mut self, el: &Element, n: usize, at: &str, slice: Option<&str>) {
        let what = match slice {
            Some(s) => format!("slice '{s}' of {at}"),
            None => at.to_string(),
        };
        let n = n as u64;
        if let Some(min) = el.min {
            if n < min {
                self.issue(
                    IssueType::Required,
                    at,
                    format!("{what} needs at least {min} value(s), found {n}"),
                );
            }
        }
        if let Some(Some(max)) = el.max {
            if n > max {
                self.issue(
                    IssueType::Structure,
                    at,
                    format!("{what} allows at most {max} value(s), found {n}"),
                );
            }
        }
    }

    fn values(&mut self, el: &Element, at: &str, v: &Value) {
        if let Some(f) = &el.fixed {
            if v != f {
                self.issue(IssueType::Value, at, format!("must be exactly {f}"));
            }
        }
        if let Some(p) = &el.pattern {
            if !contains(v, p) {
                self.issue(IssueType::Value, at, format!("must match the pattern {p}"));
            }
        }
        if let Some(vs) = &el.binding {
            if let Some(msg) = self.binding(vs, v) {
                self.issue(IssueType::CodeInvalid, at, msg);
            }
        }
    }

    /// `None` when `v` is in the required ValueSet `vs` (vellum's own; other
    /// value sets cannot be expanded here and are not checked).
    fn binding(&self, vs: &str, v: &Value) -> Option<String> {
        if !vs.starts_with(VALUESET_PREFIX) {
            return None;
        }
        let allowed = self.reg.value_sets.get(vs)?;
        let codings: Vec<&Value> = match v {
            Value::Object(o) if o.contains_key("coding") => {
                v["coding"].as_array().into_iter().flatten().collect()
            }
            Value::Object(_) => vec![v],
            Value::String(code) => {
                return (!allowed.iter().any(|(_, c)| c == code))
                    .then(|| format!("code {code} is not in {vs}"));
            }
            _ => vec![],
        };
        let ok = codings.iter().any(|c| {
            let sys = c["system"].as_str().unwrap_or("");
            let code = c["code"].as_str().unwrap_or("");
            allowed.contains(&(sys.to_string(), code.to_string()))
        });
        (!ok).then(|| format!("not a code of the required value set {vs}"))
    }

    /// Does `v` belong to `slice`, per the discriminator paths?
    fn in_slice(&self, slice: &str, discriminators: &[String], v: &Value) -> bool {
        if discriminators.is_empty() {
            return false;
        }
        discriminators.iter().all(|path| {
            let expected: Option<&Value> = self
                .el(&format!("{slice}.{path}"))
                .and_then(|e| e.fixed.as_ref().or(e.pattern.as_ref()))
                .or_else(|| {
                    let own = self.el(slice)?;
                    let p = own.fixed.as_ref().or(own.pattern.as_ref())?;
                    if path == "$this" {
                        return Some(p);
                    }
                    values_at(p, path).first().copied()
                });
            match expected {
                Some(exp) => values_at(v, path).iter().any(|x| contains(x, exp)),
                None => false,
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Invariants declared by the profiles (constraint keys), implemented here.
// Each returns the locations that break it (empty = holds).

use crate::vocabulary::{
    MODEL_VERSION_SYSTEM, OVERRIDE_ACTION_SYSTEM as ACTION_SYSTEM, SECURITY_SYSTEM as AIAST_SYSTEM,
};

fn entities(root: &Value) -> impl Iterator<Item = (usize, &Value)> {
    root["entity"].as_array().into_iter().flatten().enumerate()
}

fn details(e: &Value) -> impl Iterator<Item = (usize, &Value)> {
    e["detail"].as_array().into_iter().flatten().enumerate()
}

fn detail_values<'v>(e: &'v Value, kind: &str) -> Vec<&'v str> {
    details(e)
        .filter(|(_, d)| d["type"] == kind)
        .filter_map(|(_, d)| d["valueString"].as_str())
        .collect()
}

fn inference_refs(root: &Value) -> Vec<(usize, &Value)> {
    entities(root)
        .filter(|(_, e)| {
            e["what"]["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("AuditEvent/"))
        })
        .collect()
}

fn is_finding_json(s: &str) -> bool {
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(s) else {
        return false;
    };
    let code_ok = o
        .get("code")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.trim().is_empty());
    let conf_ok = match o.get("confidence") {
        None => true,
        Some(Value::String(c)) => crate::radiology::types::Confidence::parse(c).is_ok(),
        Some(_) => false,
    };
    code_ok && conf_ok
}

fn is_date(s: &str) -> bool {
    crate::radiology::types::Date::try_from(s.to_string()).is_ok()
}

fn invariant(key: &str, root: &Value, _node: &Value, at: &str) -> Vec<String> {
    let fail = |ok: bool, path: String| if ok { vec![] } else { vec![path] };
    match key {
        "vai-1" => fail(
            root["meta"]["security"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["system"] == AIAST_SYSTEM && c["code"] == "AIAST"),
            format!("{at}.meta.security"),
        ),
        "vai-2" => entities(root)
            .flat_map(|(i, e)| {
                details(e)
                    .filter(|(_, d)| d["type"] == "finding")
                    .filter(|(_, d)| !d["valueString"].as_str().is_some_and(is_finding_json))
                    .map(move |(j, _)| format!("{at}.entity[{i}].detail[{j}].value"))
                    .collect::<Vec<_>>()
            })
            .collect(),
        "vai-3" => fail(inference_refs(root).len() == 1, format!("{at}.entity")),
        "vai-4" => {
            let coded: Vec<&str> = root["subtype"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["system"] == ACTION_SYSTEM)
                .filter_map(|c| c["code"].as_str())
                .collect();
            inference_refs(root)
                .into_iter()
                .filter(|(_, e)| detail_values(e, "action") != coded || coded.len() != 1)
                .map(|(i, _)| format!("{at}.entity[{i}].detail"))
                .collect()
        }
        "vai-5" => inference_refs(root)
            .into_iter()
            .filter(|(_, e)| {
                let viewed = detail_values(e, "viewed");
                detail_values(e, "destination").is_empty()
                    || detail_values(e, "format").is_empty()
                    || viewed.is_empty()
                    || viewed.iter().any(|v| *v != "true" && *v != "false")
            })
            .map(|(i, _)| format!("{at}.entity[{i}].detail"))
            .collect(),
        "vai-6" => entities(root)
            .filter(|(_, e)| e["what"]["identifier"]["system"] == MODEL_VERSION_SYSTEM)
            .filter(|(_, e)| {
                let dates = detail_values(e, "training-date");
                dates.is_empty() || !dates.iter().all(|d| is_date(d))
            })
            .map(|(i, _)| format!("{at}.entity[{i}].detail"))
            .collect(),
        "vai-7" => entities(root)
            .flat_map(|(i, e)| {
                details(e)
                    .filter(|(_, d)| d["type"] == "time-to-action-ms")
                    .filter(|(_, d)| {
                        !d["valueString"]
                            .as_str()
                            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .map(move |(j, _)| format!("{at}.entity[{i}].detail[{j}].value"))
                    .collect::<Vec<_>>()
            })
            .collect(),
        "vai-8" => entities(root)
            .filter(|(_, e)| e["what"]["identifier"]["system"] == MODEL_VERSION_SYSTEM)
            .filter(|(_, e)| {
                let names = detail_values(e, "model-name");
                let versions = detail_values(e, "model-version");
                names.len() != 1
                    || versions.len() != 1
                    || e["what"]["identifier"]["value"].as_str()
                        != Some(&format!("{}|{}", names[0], versions[0]))
            })
            .map(|(i, _)| format!("{at}.entity[{i}]"))
            .collect(),
        "vai-9" => entities(root)
            .filter(|(_, e)| e["what"]["identifier"]["system"] == "urn:dicom:uid")
            .filter(|(_, e)| {
                let has = |t: &str| details(e).any(|(_, d)| d["type"] == t);
                let counted = e["extension"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["url"] == crate::vocabulary::EXT_NUMBER_OF_INSTANCES);
                !((has("pixel-sha256") && counted) || has("pixel-sha256-unavailable"))
            })
            .map(|(i, _)| format!("{at}.entity[{i}]"))
            .collect(),
        "vai-10" => entities(root)
            .filter(|(_, e)| e["what"]["identifier"]["system"] == MODEL_VERSION_SYSTEM)
            .filter(|(_, e)| {
                [
                    "window-start",
                    "window-end",
                    "baseline-cases",
                    "window-cases",
                    "z",
                ]
                .iter()
                .any(|t| detail_values(e, t).is_empty())
            })
            .map(|(i, _)| format!("{at}.entity[{i}].detail"))
            .collect(),
        "vla-1" => {
            let ok = match root["action"].as_str() {
                Some("R") => entities(root).any(|(_, e)| {
                    e["what"]["reference"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("AuditEvent/"))
                }),
                Some("E") => {
                    entities(root).any(|(_, e)| e["role"]["code"] == "24" && e["query"].is_string())
                }
                _ => false,
            };
            fail(ok, format!("{at}.entity"))
        }
        "vla-2" => fail(
            entities(root)
                .filter(|(_, e)| e["type"]["code"] == "1" && e["role"]["code"] == "1")
                .count()
                <= 1,
            format!("{at}.entity"),
        ),
        // An invariant vellum does not implement is not silently "held":
        // the profiles' tests make sure every declared key is known.
        _ => vec![],
    }
}

/// Invariant keys this module implements.
pub const IMPLEMENTED_INVARIANTS: &[&str] = &[
    "vai-1", "vai-2", "vai-3", "vai-4", "vai-5", "vai-6", "vai-7", "vai-8", "vai-9", "vai-10",
    "vla-1", "vla-2",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_profile_parses_and_every_invariant_is_implemented() {
        let reg = registry();
        assert_eq!(reg.profiles.len(), PROFILE_SOURCES.len());
        for p in reg.profiles.values() {
            for e in p.elements.values() {
                for (key, _) in &e.constraints {
                    assert!(IMPLEMENTED_INVARIANTS.contains(&key.as_str()), "{key}");
                }
            }
        }
        assert_eq!(reg.value_sets.len(), 5);
    }

    #[test]
    fn unknown_vellum_profiles_are_refused() {
        let v: Value = serde_json::json!({"meta": {"profile": [
            "http://example.org/x", format!("{PROFILE_PREFIX}nope")]}});
        let i = validate_profiles(&v);
        assert_eq!(i.len(), 1);
        assert_eq!(
            i[0].expression.as_deref(),
            Some("AuditEvent.meta.profile[1]")
        );
    }
}
