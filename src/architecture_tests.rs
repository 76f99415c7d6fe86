//! The module map as a test: layers point one way and no module circle
//! exists. Reads the sources and collects every `crate::<module>` path
//! outside comments and test code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module's layer (docs/architecture.md): a module may use
/// modules of a lower layer, or of its own layer without a circle.
const LAYERS: &[(&str, u8)] = &[
    ("vocabulary", 1),
    ("telemetry", 1),
    ("tls", 1),
    ("metrics", 1),
    ("peers", 1),
    ("auth", 1),
    ("config", 1),
    ("fhir", 2),
    ("hl7v2", 2),
    ("radiology", 2),
    ("dicom", 2),
    ("atna", 2),
    ("evidence", 2),
    ("witness", 2),
    ("time_seal", 2),
    ("bulk_export", 2),
    ("intake", 3),
    ("tls_refusals", 3),
    ("http", 4),
    ("mllp", 4),
    ("syslog", 4),
    ("digest_worker", 4),
    ("reports", 4),
    ("siem", 4),
    ("detection", 4),
    ("demo", 4),
    ("checkpoint_publisher", 4),
    ("startup", 5),
    ("evidence_cli", 5),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without line comments and without its test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .unwrap_or_default();
        if matches!(top.as_str(), "lib" | "main" | "architecture_tests") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        let code = code(&text);
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    for module in module_graph().keys() {
        assert!(
            layer(module).is_some(),
            "module {module} has no layer in LAYERS"
        );
    }
}

#[test]
fn layers_point_one_way() {
    for (from, deps) in module_graph() {
        for to in deps {
            let (Some(a), Some(b)) = (layer(&from), layer(&to)) else {
                continue;
            };
            assert!(a >= b, "{from} (layer {a}) uses {to} (layer {b})");
        }
    }
}

#[test]
fn no_module_circle() {
    let graph = module_graph();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("module circle: {}", path[i..].join(" -> ") + " -> " + m);
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}

/// Retention: no code path deletes or changes stored rows. The database
/// refuses it too (triggers; the `vellum_writer` role lacks the rights);
/// this keeps such SQL from being written at all, in the server and in the
/// ledger crate that holds the store.
#[test]
fn no_source_deletes_or_updates_stored_rows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("crates/vellum-ledger/src"), &mut files);
    for f in files {
        if f.ends_with("architecture_tests.rs") || f.ends_with("testing.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        // Taking rights away (`REVOKE UPDATE, DELETE, TRUNCATE …`) is the
        // opposite of using them.
        let code = code(&text)
            .to_ascii_uppercase()
            .replace("REVOKE UPDATE, DELETE, TRUNCATE", "REVOKE");
        for verb in [
            "DELETE FROM",
            "TRUNCATE ",
            "UPDATE ENTRY",
            "DROP TABLE",
            "DROP TRIGGER",
        ] {
            assert!(
                !code.contains(verb),
                "{} contains `{verb}`: stored rows are never deleted or changed",
                f.display()
            );
        }
        // Any `UPDATE <table> SET` in SQL text.
        for (i, _) in code.match_indices("UPDATE ") {
            let rest = &code[i + "UPDATE ".len()..];
            let table: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                !rest[table.len()..].trim_start().starts_with("SET "),
                "{} contains `UPDATE {table} SET`: stored rows are never changed",
                f.display()
            );
        }
    }
}
