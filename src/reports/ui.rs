//! The QA page at `/ui/`: a GET form of filters, the override table and two
//! server-drawn SVG charts. No script: it works by keyboard (a plain form),
//! and prints (a print style sheet drops the form).

use std::fmt::Write;

use super::confidence::Bin;
use super::drift::DriftReport;
use super::overrides::{Query, Report, Row, GROUP_KEYS};

/// HTML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1} %", x * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn ms(v: Option<i64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "–".into())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111}\
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}th,td{border:1px solid #999;padding:.25rem .5rem;text-align:right}\
th{background:#eee}td.k{text-align:left}form{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end}\
label{display:flex;flex-direction:column;font-size:.85rem}\
a:focus,input:focus,select:focus,button:focus{outline:3px solid #1a5fb4;outline-offset:2px}\
figure{margin:1rem 0}svg text{font-size:11px;fill:#111}\
@media print{form,.noprint{display:none}body{margin:0}th{background:none}}";

/// The page: `by_version` is the report grouped by model_version (chart 1),
/// `table` the report as requested (table and histogram), `confidence` the
/// confidence-against-override bins.
pub fn page(
    q: &Query,
    table: &Report,
    by_version: &Report,
    confidence: &[Bin],
    drift: &DriftReport,
) -> String {
    let f = &q.filters;
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    let _ = write!(
        h,
        "<title>vellum — AI override report</title><style>{STYLE}</style></head><body>"
    );
    h.push_str("<header><h1>AI override report</h1><p>Computed from the chained audit events at request time.</p></header><main>");
    h.push_str("<form method=\"get\" action=\"/ui/\" aria-label=\"Filters\">");
    let date = |t: Option<time::OffsetDateTime>| {
        t.map(|t| format!("{}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
            .unwrap_or_default()
    };
    for (name, label, value, kind) in [
        (
            "model",
            "Model",
            f.model.clone().unwrap_or_default(),
            "text",
        ),
        (
            "model_version",
            "Version",
            f.model_version.clone().unwrap_or_default(),
            "text",
        ),
        (
            "finding",
            "Finding code",
            f.finding.clone().unwrap_or_default(),
            "text",
        ),
        (
            "radiologist",
            "Radiologist",
            f.radiologist.clone().unwrap_or_default(),
            "text",
        ),
        ("site", "Site", f.site.clone().unwrap_or_default(), "text"),
        ("from", "From", date(f.from), "date"),
        ("to", "To (exclusive)", date(f.to), "date"),
    ] {
        let _ = write!(
            h,
            "<label for=\"f-{name}\">{label}<input id=\"f-{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\"></label>",
            esc(&value)
        );
    }
    let current = q.group_by.first().copied().unwrap_or("");
    h.push_str("<label for=\"f-group\">Group by<select id=\"f-group\" name=\"group_by\"><option value=\"\">(none)</option>");
    for g in GROUP_KEYS {
        let sel = if g == current { " selected" } else { "" };
        let _ = write!(h, "<option value=\"{g}\"{sel}>{g}</option>");
    }
    h.push_str("</select></label><button type=\"submit\">Show</button></form>");
    let _ = write!(
        h,
        "<p class=\"noprint\"><a href=\"/reports/overrides?{}&amp;format=csv\">Download CSV</a></p>",
        esc(&query_string(q))
    );
    table_html(&mut h, table);
    h.push_str("<h2 id=\"chart-rate\">Override rate per model version</h2>");
    rate_chart(&mut h, &by_version.rows);
    h.push_str("<h2 id=\"chart-tta\">Time to action</h2>");
    let mut times: Vec<i64> = table
        .rows
        .iter()
        .flat_map(|r| r.times.iter().copied())
        .collect();
    times.sort_unstable();
    histogram(&mut h, &times, table.fast_accept_ms);
    h.push_str("<h2 id=\"chart-confidence\">Confidence vs override</h2>");
    confidence_chart(&mut h, confidence);
    drift_table(&mut h, drift);
    forensic_lists(&mut h, q);
    h.push_str("</main></body></html>");
    h
}

/// The windows in drift (all filters aside: drift is per version and site).
fn drift_table(h: &mut String, d: &DriftReport) {
    h.push_str("<h2 id=\"drift\">Drift alerts</h2>");
    let _ = write!(
        h,
        "<p>Override rate of each completed {}-day window against the version's first {} acted-on cases at the site \
         (one-sided two-proportion z-test, alert at z ≥ {}): {} of {} windows tested. \
         <a class=\"noprint\" href=\"/reports/drift?format=csv\">CSV</a></p>",
        d.rule.window_days,
        d.rule.baseline_cases,
        d.rule.z_threshold,
        d.alerts,
        d.windows.len()
    );
    if d.alerts == 0 {
        return;
    }
    h.push_str("<table id=\"drift-alerts\"><caption>Windows in drift</caption><thead><tr>\
        <th scope=\"col\">Model version</th><th scope=\"col\">Site</th><th scope=\"col\">Window</th>\
        <th scope=\"col\">Baseline rate</th><th scope=\"col\">Window rate</th><th scope=\"col\">Cases</th>\
        <th scope=\"col\">z</th></tr></thead><tbody>");
    for w in d.windows.iter().filter(|w| w.alert) {
        let _ = write!(
            h,
            "<tr><td class=\"k\">{}|{}</td><td class=\"k\">{}</td><td class=\"k\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            esc(&w.model),
            esc(&w.version),
            esc(&w.site),
            esc(w.window_start.get(..10).unwrap_or(&w.window_start)),
            pct(Some(w.baseline_rate)),
            pct(Some(w.rate)),
            w.cases,
            w.z
        );
    }
    h.push_str("</tbody></table>");
}

/// Links to the case lists for the current filters, and the study history
/// and patient access forms.
fn forensic_lists(h: &mut String, q: &Query) {
    let mut filters = q.clone();
    filters.group_by.clear();
    let qs = query_string(&filters);
    let link = |extra: &[&str]| {
        let parts: Vec<&str> = std::iter::once(qs.as_str())
            .chain(extra.iter().copied())
            .filter(|p| !p.is_empty())
            .collect();
        esc(&format!("/reports/cases?{}", parts.join("&")))
    };
    h.push_str("<section id=\"forensic\" class=\"noprint\"><h2>Forensic lists</h2><ul>");
    for (label, extra) in [
        ("Cases matching the filters", ""),
        (
            "Cases the radiologist rejected or edited",
            "action=override",
        ),
    ] {
        let _ = write!(
            h,
            "<li>{label}: <a href=\"{}\">JSON</a>, <a href=\"{}\">CSV</a></li>",
            link(&[extra]),
            link(&[extra, "format=csv"])
        );
    }
    h.push_str("</ul>");
    h.push_str(
        "<form method=\"get\" action=\"/reports/study-history\" aria-label=\"Study history\">\
         <label for=\"f-study\">Study Instance UID<input id=\"f-study\" name=\"study\" type=\"text\" required></label>\
         <label for=\"f-study-format\">Format<select id=\"f-study-format\" name=\"format\">\
         <option value=\"json\">JSON</option><option value=\"csv\">CSV</option></select></label>\
         <button type=\"submit\">Study history</button></form>",
    );
    h.push_str(
        "<form method=\"get\" action=\"/reports/patient-access\" aria-label=\"Patient access report\">\
         <label for=\"f-patient\">Patient (system|value; auditors only)<input id=\"f-patient\" name=\"patient\" type=\"text\" required></label>\
         <label for=\"f-pa-from\">From<input id=\"f-pa-from\" name=\"from\" type=\"date\"></label>\
         <label for=\"f-pa-to\">To (exclusive)<input id=\"f-pa-to\" name=\"to\" type=\"date\"></label>\
         <label for=\"f-pa-format\">Format<select id=\"f-pa-format\" name=\"format\">\
         <option value=\"json\">JSON</option><option value=\"csv\">CSV</option></select></label>\
         <button type=\"submit\">Patient access report</button></form></section>",
    );
}

/// The filters and grouping as a query string (for the CSV link).
fn query_string(q: &Query) -> String {
    let f = &q.filters;
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("model", &f.model),
        ("model_version", &f.model_version),
        ("finding", &f.finding),
        ("radiologist", &f.radiologist),
        ("site", &f.site),
    ] {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    for (k, t) in [("from", f.from), ("to", f.to)] {
        if let Some(t) = t.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        }) {
            s.append_pair(k, &t);
        }
    }
    if !q.group_by.is_empty() {
        s.append_pair("group_by", &q.group_by.join(","));
    }
    s.finish()
}

fn table_html(h: &mut String, r: &Report) {
    h.push_str("<table id=\"overrides\"><caption>Overrides");
    if !r.group_by.is_empty() {
        let _ = write!(h, " by {}", esc(&r.group_by.join(", ")));
    }
    h.push_str("</caption><thead><tr>");
    for g in &r.group_by {
        let _ = write!(h, "<th scope=\"col\">{g}</th>");
    }
    for c in [
        "inferences",
        "acted on",
        "accept",
        "accept with edit",
        "reject",
        "escalate",
        "ignore",
        "override rate",
        "95 % interval",
        "median ms",
        "p90 ms",
    ] {
        let _ = write!(h, "<th scope=\"col\">{c}</th>");
    }
    let _ = write!(
        h,
        "<th scope=\"col\">fast accepts (&lt; {} ms)</th><th scope=\"col\">never rendered</th><th scope=\"col\">never acted on</th></tr></thead><tbody>",
        r.fast_accept_ms
    );
    for row in &r.rows {
        h.push_str("<tr>");
        for g in &r.group_by {
            let v = row.group.get(*g).map(String::as_str).unwrap_or("");
            let _ = write!(
                h,
                "<td class=\"k\">{}</td>",
                esc(if v.is_empty() { "(none)" } else { v })
            );
        }
        let interval = match (row.override_rate_low, row.override_rate_high) {
            (Some(lo), Some(hi)) => format!("{:.1}–{:.1} %", lo * 100.0, hi * 100.0),
            _ => "–".into(),
        };
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.inferences, row.acted_on, row.accept, row.accept_with_edit, row.reject,
            row.escalate, row.ignore, pct(row.override_rate), interval,
            ms(row.median_time_to_action_ms), ms(row.p90_time_to_action_ms),
            row.fast_accepts, row.never_rendered, row.never_acted_on
        );
    }
    if r.rows.is_empty() {
        h.push_str("<tr><td class=\"k\" colspan=\"20\">No inferences match.</td></tr>");
    }
    h.push_str("</tbody></table>");
}

/// One point per version with its Wilson interval as a band (error bar).
fn rate_chart(h: &mut String, rows: &[Row]) {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.override_rate.is_some()).collect();
    if rows.is_empty() {
        h.push_str("<p>No acted-on inferences.</p>");
        return;
    }
    let (w, ht, left, bottom, top) = (720.0, 260.0, 50.0, 60.0, 10.0);
    let plot_h = ht - bottom - top;
    let step = (w - left - 10.0) / rows.len() as f64;
    let y = |v: f64| top + plot_h * (1.0 - v);
    let mut desc = String::new();
    let _ = write!(
        h,
        "<figure><svg role=\"img\" aria-labelledby=\"chart-rate\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            h,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#ccc\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>",
            w - 10.0, left - 4.0, y(t) + 4.0, (t * 100.0) as i64, y0 = y(t)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let x = left + step * (i as f64 + 0.5);
        let (p, lo, hi) = (
            r.override_rate.unwrap_or(0.0),
            r.override_rate_low.unwrap_or(0.0),
            r.override_rate_high.unwrap_or(0.0),
        );
        let label = r.group.get("model_version").cloned().unwrap_or_default();
        let bw = (step * 0.4).min(40.0);
        let _ = write!(
            h,
            "<g class=\"version\"><title>{} {:.1} % ({:.1}–{:.1} %)</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"#9ec1ea\" stroke=\"#1a5fb4\"/><circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#111\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}%</text></g>",
            esc(&label), p * 100.0, lo * 100.0, hi * 100.0,
            x - bw / 2.0, y(hi), (y(lo) - y(hi)).max(1.0), y(p),
            ht - bottom + 16.0, esc(&label), ht - bottom + 30.0, p * 100.0
        );
        let _ = write!(
            desc,
            "{label}: {:.1} % ({:.1}–{:.1} %); ",
            p * 100.0,
            lo * 100.0,
            hi * 100.0
        );
    }
    let _ = write!(
        h,
        "</svg><figcaption>Dots: override rate (edits + rejections / acted-on inferences); bands: 95 % Wilson interval. {}</figcaption></figure>",
        esc(&desc)
    );
}

/// Time to action in bins; the fast-accept threshold is marked.
fn histogram(h: &mut String, sorted: &[i64], fast_ms: u64) {
    if sorted.is_empty() {
        h.push_str("<p>No times to action.</p>");
        return;
    }
    // Bins in seconds, upper bounds; the last is open.
    const EDGES: [i64; 9] = [
        1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000,
    ];
    let labels = [
        "<1s", "1–2s", "2–5s", "5–10s", "10–30s", "30–60s", "1–5m", "5–15m", "15–60m", "≥60m",
    ];
    let mut counts = [0u64; 10];
    for v in sorted {
        let i = EDGES.iter().position(|e| v < e).unwrap_or(9);
        counts[i] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (w, ht, left, bottom, top) = (720.0, 240.0, 50.0, 40.0, 10.0);
    let plot_h = ht - bottom - top;
    let step = (w - left - 10.0) / counts.len() as f64;
    let _ = write!(
        h,
        "<figure><svg role=\"img\" aria-labelledby=\"chart-tta\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let mut desc = String::new();
    for (i, c) in counts.iter().enumerate() {
        let bh = plot_h * (*c as f64 / max);
        let x = left + step * i as f64;
        let fast = EDGES.get(i).is_some_and(|e| (*e as u64) <= fast_ms);
        let fill = if fast { "#e66100" } else { "#5e81ac" };
        let _ = write!(
            h,
            "<g class=\"bin\"><title>{}: {c}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{c}</text></g>",
            labels[i], x + 2.0, top + plot_h - bh, step - 4.0,
            x + step / 2.0, ht - bottom + 16.0, labels[i],
            x + step / 2.0, (top + plot_h - bh - 3.0).max(10.0)
        );
        let _ = write!(desc, "{}: {c}; ", labels[i]);
    }
    let _ = write!(
        h,
        "</svg><figcaption>Acted-on inferences by time to action (orange: bins wholly under the fast-accept threshold of {fast_ms} ms). {}</figcaption></figure>",
        esc(&desc)
    );
}

/// Per confidence bin, the share of acted-on findings not simply accepted:
/// a bar per bin with its counts, and the same numbers as a table (for
/// screen readers and print).
fn confidence_chart(h: &mut String, bins: &[Bin]) {
    if bins.iter().all(|b| b.acted_on == 0) {
        h.push_str("<p>No acted-on findings with a confidence.</p>");
        return;
    }
    let label = |b: &Bin| format!("{:.1}–{:.1}", b.low, b.low + 0.1);
    let (w, ht, left, bottom, top) = (720.0, 260.0, 50.0, 50.0, 10.0);
    let plot_h = ht - bottom - top;
    let step = (w - left - 10.0) / bins.len().max(1) as f64;
    let y = |v: f64| top + plot_h * (1.0 - v);
    let mut desc = String::new();
    for b in bins {
        let _ = write!(
            desc,
            "{}: {} of {} not accepted ({}); ",
            label(b),
            b.not_accepted,
            b.acted_on,
            pct(b.rate)
        );
    }
    let _ = write!(
        h,
        "<figure><svg role=\"img\" aria-labelledby=\"confidence-title confidence-desc\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"confidence-title\">Override (not accepted) rate per confidence bin</title><desc id=\"confidence-desc\">{}</desc>",
        esc(&desc)
    );
    for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            h,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#ccc\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>",
            w - 10.0, left - 4.0, y(t) + 4.0, (t * 100.0) as i64, y0 = y(t)
        );
    }
    for (i, b) in bins.iter().enumerate() {
        let x = left + step * i as f64;
        let rate = b.rate.unwrap_or(0.0);
        let bh = plot_h * rate;
        let _ = write!(
            h,
            "<g class=\"confidence-bin\"><title>{}: {} of {} not accepted ({})</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#c061cb\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}/{}</text></g>",
            label(b), b.not_accepted, b.acted_on, pct(b.rate),
            x + 2.0, top + plot_h - bh, step - 4.0,
            x + step / 2.0, ht - bottom + 16.0, label(b),
            x + step / 2.0, ht - bottom + 30.0, b.not_accepted, b.acted_on
        );
    }
    h.push_str("</svg><figcaption>Bars: share of acted-on AI findings in each confidence bin whose inference was not simply accepted (edited, rejected, escalated or ignored); labels: not accepted / acted on.</figcaption></figure>");
    h.push_str("<table id=\"confidence-override\"><caption>Confidence vs override</caption><thead><tr>\
        <th scope=\"col\">confidence</th><th scope=\"col\">acted on</th><th scope=\"col\">not accepted</th>\
        <th scope=\"col\">rate</th></tr></thead><tbody>");
    for b in bins {
        let _ = write!(
            h,
            "<tr><td class=\"k\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            label(b),
            b.acted_on,
            b.not_accepted,
            pct(b.rate)
        );
    }
    h.push_str("</tbody></table>");
}
