//! Bounds on FHIR XML request bodies, checked before the XML → JSON
//! conversion reads them. That conversion (fhirbolt) recurses once per
//! nested element without a bound, so a few hundred nested elements would
//! exhaust the stack and abort the process; and it assumes namespaces are
//! valid UTF-8. This pre-scan is a flat loop over quick-xml's pull parser:
//! constant stack, no entity expansion, one pass.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What an XML request body may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Deepest element nesting (the root element is depth 1).
    pub max_depth: usize,
    /// Largest XML body, bytes.
    pub max_bytes: usize,
}

/// Why an XML body is refused before conversion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlRefusal {
    #[error("the XML request body is larger than {0} bytes (limit xml_max_bytes)")]
    TooLarge(usize),
    #[error("the XML request body nests elements deeper than {0} levels (limit xml_max_depth)")]
    TooDeep(usize),
    #[error("the XML request body is not valid UTF-8 (at byte {0}); FHIR XML is UTF-8")]
    NotUtf8(usize),
    #[error("the request body is not well-formed XML: {0}")]
    Malformed(String),
}

/// Checks size, encoding and nesting of `xml`; `Ok` means fhirbolt may
/// read it.
pub fn check(xml: &[u8], limits: XmlLimits) -> Result<(), XmlRefusal> {
    if xml.len() > limits.max_bytes {
        return Err(XmlRefusal::TooLarge(limits.max_bytes));
    }
    let text = std::str::from_utf8(xml).map_err(|e| XmlRefusal::NotUtf8(e.valid_up_to()))?;
    let mut reader = Reader::from_str(text);
    let mut depth: usize = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(XmlRefusal::TooDeep(limits.max_depth));
                }
            }
            Ok(Event::Empty(_)) => {
                if depth + 1 > limits.max_depth {
                    return Err(XmlRefusal::TooDeep(limits.max_depth));
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(XmlRefusal::Malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        let mut s = String::from(r#"<AuditEvent xmlns="http://hl7.org/fhir">"#);
        for _ in 1..levels {
            s.push_str(r#"<extension url="http://example.org/x">"#);
        }
        for _ in 1..levels {
            s.push_str("</extension>");
        }
        s.push_str("</AuditEvent>");
        s
    }

    #[test]
    fn nesting_up_to_the_limit_passes_and_beyond_is_refused() {
        let limits = XmlLimits {
            max_depth: 10,
            max_bytes: 1 << 20,
        };
        assert_eq!(check(nested(10).as_bytes(), limits), Ok(()));
        assert_eq!(
            check(nested(11).as_bytes(), limits),
            Err(XmlRefusal::TooDeep(10))
        );
        // An empty element one level too deep counts too.
        let empty = nested(10).replacen("</extension>", "<x/></extension>", 1);
        assert_eq!(
            check(empty.as_bytes(), limits),
            Err(XmlRefusal::TooDeep(10))
        );
        // 100,000 levels cost the scan no stack.
        assert_eq!(
            check(
                nested(100_000).as_bytes(),
                XmlLimits {
                    max_bytes: usize::MAX,
                    ..limits
                }
            ),
            Err(XmlRefusal::TooDeep(10))
        );
    }

    #[test]
    fn size_and_encoding_are_checked_first() {
        let limits = XmlLimits {
            max_depth: 10,
            max_bytes: 64,
        };
        assert_eq!(check(&[b'<'; 65], limits), Err(XmlRefusal::TooLarge(64)));
        let bad_ns = b"<AuditEvent xmlns=\"http://hl7.org/\xff\"/>";
        assert_eq!(check(bad_ns, limits), Err(XmlRefusal::NotUtf8(34)));
        let bad_prefix = b"<a\xfe:AuditEvent xmlns:a\xfe=\"x\"/>";
        assert_eq!(check(bad_prefix, limits), Err(XmlRefusal::NotUtf8(2)));
    }

    #[test]
    fn malformed_xml_is_refused() {
        let limits = XmlLimits {
            max_depth: 50,
            max_bytes: 1 << 20,
        };
        assert!(matches!(
            check(b"<a><b></a>", limits),
            Err(XmlRefusal::Malformed(_))
        ));
        assert_eq!(check(nested(3).as_bytes(), limits), Ok(()));
    }
}
