//! `GET /reports/detections?from=&to=`: the detection rules recomputed
//! from the stored events over a period (JSON, or CSV), and the recent
//! alerts table of the `/ui/` page.

use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use time::OffsetDateTime;

use super::AppState;
use crate::detection::{self, AlertRow};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/reports/detections", web::get().to(get_detections));
}

fn bad_request(message: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("application/json")
        .body(json!({"error": "400", "message": message}).to_string())
}

fn bound(name: &str, v: &str) -> Result<OffsetDateTime, String> {
    detection::parse_bound(v)
        .ok_or_else(|| format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 instant"))
}

struct Params {
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    csv: bool,
}

fn params(req: &HttpRequest) -> Result<Params, String> {
    let mut p = Params {
        from: None,
        to: None,
        csv: req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv")),
    };
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match k.as_ref() {
            "from" => p.from = Some(bound("from", &v)?),
            "to" => p.to = Some(bound("to", &v)?),
            "format" => match v.as_ref() {
                "csv" => p.csv = true,
                "json" => p.csv = false,
                _ => return Err("format must be json or csv".into()),
            },
            other => return Err(format!("unknown parameter `{other}` (from, to, format)")),
        }
    }
    if let (Some(f), Some(t)) = (p.from, p.to) {
        if f >= t {
            return Err("from must be before to".into());
        }
    }
    Ok(p)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn to_csv(rows: &[AlertRow]) -> String {
    let mut out = String::from(
        "rule,subject,window_start,window_end,threshold,count,tripped_at_seq,events\r\n",
    );
    for r in rows {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{}\r\n",
            r.rule,
            csv_field(&r.subject),
            r.window_start,
            r.window_end,
            r.threshold,
            r.count,
            r.tripped_at_seq,
            csv_field(&r.events.join(" "))
        );
    }
    out
}

async fn get_detections(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let p = match params(&req) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    let report = match detection::recompute(&state.ledger, state.detection.clone(), p.from, p.to)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "detections: reading the ledger failed");
            return HttpResponse::ServiceUnavailable()
                .content_type("application/json")
                .body(json!({"error": "503", "message": "the store is unavailable"}).to_string());
        }
    };
    if p.csv {
        return HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"detections.csv\"",
            ))
            .body(to_csv(&report.alerts));
    }
    let body = json!({
        "from": p.from.map(vellum_ledger::stamp),
        "to": p.to.map(vellum_ledger::stamp),
        "rules": state.detection.rules.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "entries_evaluated": report.entries,
        "alerts": report.alerts,
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `/ui/` section listing the most recent stored alerts. Subjects
/// (users, client addresses) are shown only to callers who see more than
/// pseudonyms.
pub async fn recent_alerts_section(state: &AppState, show_subjects: bool) -> String {
    let mut h = String::from("<h2 id=\"security-alerts\">Security alerts</h2>");
    let rows = match detection::recent_alerts(&state.ledger, 20).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "ui: reading security alerts failed");
            h.push_str("<p>The alerts could not be read.</p>");
            return h;
        }
    };
    if rows.is_empty() {
        h.push_str("<p>No detection rule has fired.</p>");
        return h;
    }
    h.push_str(
        "<table id=\"detection-alerts\"><caption>The 20 most recent alerts of the detection rules</caption>\
         <thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">Subject</th><th scope=\"col\">Window start</th>\
         <th scope=\"col\">Window end</th><th scope=\"col\">Count</th><th scope=\"col\">Threshold</th></tr></thead><tbody>",
    );
    for r in rows {
        let subject = if show_subjects {
            esc(&r.subject)
        } else {
            "(auditors only)".to_string()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.rule.as_str(),
            subject,
            esc(&r.window_start),
            esc(&r.window_end),
            r.count,
            r.threshold
        );
    }
    h.push_str("</tbody></table>");
    h
}
