//! RFC 4180 CSV lines.

/// Appends one record: cells quoted when they hold a comma, quote or line
/// break; a leading `=`, `+`, `-` or `@` is prefixed with `'` so spreadsheet
/// programs do not run stored text as a formula.
pub fn line(out: &mut String, cells: impl IntoIterator<Item = String>) {
    for (i, c) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let c = if c.starts_with(['=', '+', '@'])
            || (c.starts_with('-') && c.parse::<f64>().is_err())
        {
            format!("'{c}")
        } else {
            c
        };
        if c.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&c.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&c);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_and_formula_guard() {
        let mut s = String::new();
        super::line(
            &mut s,
            ["a,b".into(), "x\"y".into(), "=1+1".into(), "-3".into()],
        );
        assert_eq!(s, "\"a,b\",\"x\"\"y\",'=1+1,-3\r\n");
    }
}
