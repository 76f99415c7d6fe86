//! The CapabilityStatement: exactly what this build of vellum supports.

use serde_json::{json, Value};

use super::search::{ParamType, PARAMS};

pub use crate::vocabulary::{BALP_ARR, VELLUM_PROFILES};

fn type_code(t: ParamType) -> &'static str {
    match t {
        ParamType::Token => "token",
        ParamType::String => "string",
        ParamType::Reference => "reference",
        ParamType::Date => "date",
        ParamType::Uri => "uri",
    }
}

fn modifiers(t: ParamType) -> &'static str {
    match t {
        ParamType::Token => "system|code, |code, code, system|; modifiers :not and :missing",
        ParamType::String => "starts-with, case- and accent-insensitive; modifiers :exact, :contains, :missing",
        ParamType::Reference => "Type/id, id or absolute URL; modifiers :identifier, :[type], :missing; ITI-81 chain .identifier",
        ParamType::Date => "prefixes eq ne gt lt ge le sa eb ap, any precision year..instant with time zone; :missing",
        ParamType::Uri => "exact match; :missing",
    }
}

fn search_params() -> Vec<Value> {
    let mut params: Vec<Value> = vec![
        json!({
            "name": "_id",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
            "type": "token",
            "documentation": "Logical id; comma-separated ids are OR-ed"
        }),
        json!({
            "name": "_lastUpdated",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
            "type": "date",
            "documentation": "Commit time in the ledger; same prefixes as date"
        }),
    ];
    params.extend(PARAMS.iter().map(|p| {
        json!({
            "name": p.name,
            "definition": p.definition(),
            "type": type_code(p.kind),
            "documentation": format!("{}. {}", p.description, modifiers(p.kind)),
        })
    }));
    params
}

pub fn capability_statement(base_url: &str, date: &str) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "vellum",
        "kind": "instance",
        "instantiates": [BALP_ARR],
        "software": { "name": "vellum", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": "vellum tamper-evident AuditEvent repository",
            "url": base_url
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "rest": [{
            "mode": "server",
            "documentation": "Insert-only, hash-chained AuditEvent store (an IHE ATNA Audit Record Repository). Update, patch and delete are refused (405). Search results page by cursor; paging links are pinned to the ledger head of the first page. _count (default 50, at most 1000), _sort (date, -date, _lastUpdated, -_lastUpdated), _summary=count, _total, _elements; unknown parameters are refused (400) unless the client sends Prefer: handling=lenient.",
            "resource": [{
                "type": "AuditEvent",
                "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
                "supportedProfile": VELLUM_PROFILES,
                "interaction": [
                    { "code": "create" },
                    { "code": "read" },
                    { "code": "vread" },
                    { "code": "search-type" }
                ],
                "versioning": "versioned",
                "readHistory": false,
                "updateCreate": false,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": search_params()
            }],
            "interaction": [
                { "code": "batch" },
                { "code": "transaction" }
            ],
            "operation": [{
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                "documentation": "FHIR Bulk Data (v2) system export of AuditEvent, also at AuditEvent/$export: Prefer: respond-async, _type=AuditEvent, _since, _outputFormat=application/fhir+ndjson; one NDJSON file of the stored bodies in ledger order. Auditor role."
            }]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_profiles_are_the_files_in_profiles() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");
        let mut urls: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let v: Value = serde_json::from_slice(&std::fs::read(e.ok()?.path()).ok()?).ok()?;
                (v["resourceType"] == "StructureDefinition")
                    .then(|| v["url"].as_str().map(String::from))?
            })
            .collect();
        urls.sort();
        let mut listed: Vec<String> = VELLUM_PROFILES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(urls, listed);
    }
}
