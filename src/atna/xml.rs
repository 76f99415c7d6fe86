//! A small element tree read with quick-xml's pull parser: a flat loop
//! (constant stack), bounded size, depth and element count, no DTD and no
//! entity expansion (only the five predefined entities and character
//! references are decoded; anything else is an error).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// What an audit message may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    pub max_bytes: usize,
    /// Deepest element nesting (the root is depth 1).
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        // PS3.15 A.5.1 nests at most six levels; dcm4chee-arc's largest
        // messages (a study with many SOP classes) stay far below these.
        XmlLimits {
            max_bytes: 1024 * 1024,
            max_depth: 16,
            max_elements: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the message is larger than {0} bytes")]
    TooLarge(usize),
    #[error("elements nest deeper than {0} levels")]
    TooDeep(usize),
    #[error("more than {0} elements")]
    TooManyElements(usize),
    #[error("the message is not UTF-8 (at byte {0})")]
    NotUtf8(usize),
    #[error("a document type declaration is not accepted")]
    Doctype,
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    #[error("no root element")]
    Empty,
}

/// One element: local name, attributes (local names), text, children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of child `name`, if not empty.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

fn element(start: &BytesStart) -> Result<Element, XmlError> {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(malformed)?;
        let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
        if key == "xmlns" || a.key.as_ref().starts_with(b"xmlns:") {
            continue;
        }
        let value = a.unescape_value().map_err(malformed)?.into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

/// Reads `xml` into its root element.
pub fn parse(xml: &[u8], limits: XmlLimits) -> Result<Element, XmlError> {
    if xml.len() > limits.max_bytes {
        return Err(XmlError::TooLarge(limits.max_bytes));
    }
    let text = std::str::from_utf8(xml).map_err(|e| XmlError::NotUtf8(e.valid_up_to()))?;
    // A UTF-8 byte order mark some senders put first.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    reader.check_end_names(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let el = element(s)?;
                if matches!(event, Event::Start(_)) {
                    stack.push(el);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| malformed("unexpected end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let t = t.unescape().map_err(malformed)?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&t),
                    None if t.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let raw = c.into_inner();
                let t = std::str::from_utf8(&raw).map_err(malformed)?;
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(t);
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed element"));
    }
    root.ok_or(XmlError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_tree() {
        let el = parse(
            br#"<?xml version="1.0"?><a x="1 &amp; 2"><b>t&lt;</b><c/></a>"#,
            XmlLimits::default(),
        )
        .unwrap();
        assert_eq!(el.attr("x"), Some("1 & 2"));
        assert_eq!(el.child_text("b"), Some("t<"));
        assert!(el.child("c").is_some());
    }

    #[test]
    fn refuses_entities_doctypes_and_deep_nesting() {
        let l = XmlLimits::default();
        let bomb = br#"<!DOCTYPE a [<!ENTITY x "xxxxxxxx">]><a>&x;</a>"#;
        assert_eq!(parse(bomb, l), Err(XmlError::Doctype));
        assert!(matches!(
            parse(b"<a>&x;</a>", l),
            Err(XmlError::Malformed(_))
        ));
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert_eq!(
            parse(
                deep.as_bytes(),
                XmlLimits {
                    max_bytes: usize::MAX,
                    ..l
                }
            ),
            Err(XmlError::TooDeep(16))
        );
        assert!(matches!(
            parse(b"<a><b></a>", l),
            Err(XmlError::Malformed(_))
        ));
        assert_eq!(parse(b"  ", l), Err(XmlError::Empty));
        assert_eq!(
            parse(&[b' '; 10], XmlLimits { max_bytes: 4, ..l }),
            Err(XmlError::TooLarge(4))
        );
    }
}
