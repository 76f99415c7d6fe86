//! FHIRPath locations of JSON nodes, for error `expression`s.

use vellum_json::{Json, Value};

/// The FHIRPath (`AuditEvent.agent[0].who`) of the deepest element whose
/// source span contains byte `offset`. Used to locate errors that fhirbolt
/// reports only as a line and column.
pub fn path_at(root: &Json, resource_type: &str, offset: usize) -> String {
    let mut path = resource_type.to_string();
    let mut node = root;
    loop {
        match &node.value {
            Value::Object(members) => {
                let Some(m) = members
                    .iter()
                    .find(|m| m.key_start <= offset && offset <= m.value.end)
                else {
                    return path;
                };
                path.push('.');
                // `_x` carries the extensions of primitive `x`: same element.
                path.push_str(m.key.strip_prefix('_').unwrap_or(&m.key));
                node = &m.value;
            }
            Value::Array(items) => {
                let Some((i, item)) = items
                    .iter()
                    .enumerate()
                    .find(|(_, it)| it.start <= offset && offset <= it.end)
                else {
                    return path;
                };
                path.push_str(&format!("[{i}]"));
                node = item;
            }
            _ => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vellum_json::parse;

    #[test]
    fn finds_nested_elements() {
        let src = br#"{"resourceType":"AuditEvent","agent":[{"who":{"x":1}},{"who":{"bogus":2}}]}"#;
        let root = parse(src).unwrap();
        let at = src.windows(5).position(|w| w == b"bogus").unwrap();
        assert_eq!(
            path_at(&root, "AuditEvent", at),
            "AuditEvent.agent[1].who.bogus"
        );
    }
}
