//! `Narrative.div`: FHIR's rules for the XHTML a resource may carry (R4
//! §2.4 Narrative, invariants txt-1 and txt-2). vellum stores the text
//! verbatim and writes it into XML responses, so anything that is not
//! well-formed, limited XHTML is refused rather than spliced into another
//! document: no scripts, no event handlers, no `javascript:` links, no
//! unbalanced tags or bare `&`.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

const XHTML_NS: &[u8] = b"http://www.w3.org/1999/xhtml";

/// The elements of HTML 4.0 chapters 7–11 and 15 (and `a`, `img`) that
/// txt-1 permits.
const ALLOWED: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "b",
    "bdo",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "ul",
    "var",
];

/// Deepest element nesting accepted inside a narrative.
const MAX_DEPTH: usize = 64;

/// Why a `div` is refused (the message becomes the issue's diagnostics).
pub fn check_div(div: &str) -> Result<(), String> {
    let mut reader = Reader::from_str(div);
    let mut depth = 0usize;
    let mut root_seen = false;
    let mut has_text = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("the narrative is not well-formed XHTML: {e}"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if depth == 0 {
                    if root_seen {
                        return Err("the narrative must be a single <div> element".into());
                    }
                    root_seen = true;
                    if e.name().as_ref() != b"div" {
                        return Err("the narrative's root element must be <div>".into());
                    }
                    let ns = e
                        .try_get_attribute("xmlns")
                        .ok()
                        .flatten()
                        .map(|a| a.value.into_owned());
                    if ns.as_deref() != Some(XHTML_NS) {
                        return Err(
                            "the narrative's <div> must declare xmlns=\"http://www.w3.org/1999/xhtml\""
                                .into(),
                        );
                    }
                }
                check_element(e)?;
                if !empty {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!(
                            "the narrative nests deeper than {MAX_DEPTH} elements"
                        ));
                    }
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                // Unescaping fails on a bare `&` or an unknown entity.
                let text = t
                    .unescape()
                    .map_err(|e| format!("the narrative's text is not valid XHTML: {e}"))?;
                if depth == 0 && !text.trim().is_empty() {
                    return Err("the narrative has text outside its <div>".into());
                }
                has_text |= !text.trim().is_empty();
            }
            Event::CData(_) => has_text = true,
            Event::DocType(_) | Event::PI(_) | Event::Decl(_) => {
                return Err(
                    "the narrative may hold no declarations or processing instructions".into(),
                )
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !root_seen || depth != 0 {
        return Err("the narrative is not a complete <div> element".into());
    }
    if !has_text {
        return Err("txt-2: the narrative must have some non-whitespace content".into());
    }
    Ok(())
}

fn check_element(e: &BytesStart<'_>) -> Result<(), String> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    if !ALLOWED.contains(&name.as_str()) {
        return Err(format!("txt-1: <{name}> is not allowed in a narrative"));
    }
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("the narrative has a malformed attribute: {e}"))?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).to_ascii_lowercase();
        if key.starts_with("on") {
            return Err(format!(
                "txt-1: the event handler attribute {key} is not allowed"
            ));
        }
        let value = attr
            .unescape_value()
            .map_err(|e| format!("the narrative has a malformed attribute value: {e}"))?;
        let value = value.trim_start().to_ascii_lowercase();
        if matches!(key.as_str(), "href" | "src") && value.starts_with("javascript:") {
            return Err(format!("txt-1: a javascript: URL in {key} is not allowed"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_xhtml_is_accepted() {
        assert_eq!(
            check_div(
                r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Query by <b>Dr. X</b> &amp; team</p><br/></div>"#
            ),
            Ok(())
        );
    }

    #[test]
    fn hostile_or_broken_narratives_are_refused() {
        for bad in [
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">a</p></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:x()">a</a></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml">a & b</div>"#,
            r#"<div>no namespace</div>"#,
            r#"<p xmlns="http://www.w3.org/1999/xhtml">not a div</p>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml">a</div><div xmlns="http://www.w3.org/1999/xhtml">b</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml">   </div>"#,
            r#"text"#,
        ] {
            assert!(check_div(bad).is_err(), "{bad}");
        }
    }
}
