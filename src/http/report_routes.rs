//! `/reports` (JSON or CSV) and the QA page `/ui/`. The numbers come from
//! `crate::reports`, recomputed from the ledger on each request.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::reports::overrides::{self, ParamError, Query};
use crate::reports::{events, ui, versions};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/reports/overrides", web::get().to(get_overrides))
        .route("/reports/model-versions", web::get().to(get_versions))
        .route("/ui", web::get().to(redirect_ui))
        .route("/ui/", web::get().to(get_ui));
}

fn problem(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(json!({ "error": status.as_str(), "message": message }).to_string())
}

fn pairs(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

fn parse(req: &HttpRequest) -> Result<Query, ParamError> {
    let pairs = pairs(req);
    Query::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// CSV when `format=csv`, or when `Accept` names `text/csv` and no format
/// was given.
fn wants_csv(req: &HttpRequest, q: &Query) -> bool {
    match q.format.as_deref() {
        Some(f) => f == "csv",
        None => req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv")),
    }
}

async fn load(state: &AppState) -> Result<events::Dataset, HttpResponse> {
    events::load(&state.ledger).await.map_err(|e| {
        tracing::error!(error = %e, "reports: reading the ledger failed");
        problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
    })
}

fn csv(body: String, name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.csv\""),
        ))
        .body(body)
}

async fn get_overrides(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let q = match parse(&req) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let data = match load(&state).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let report = overrides::compute(&data, &q, state.reports.fast_accept_ms);
    if wants_csv(&req, &q) {
        return csv(overrides::to_csv(&report), "overrides");
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_string(&report).unwrap_or_default())
}

async fn get_versions(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let q = match parse(&req) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Some(model) = q.filters.model.clone() else {
        return problem(StatusCode::BAD_REQUEST, "`model` is required");
    };
    let data = match load(&state).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let cmp = versions::compute(&data, &model, &q.filters);
    if wants_csv(&req, &q) {
        return csv(versions::to_csv(&cmp), "model-versions");
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_string(&cmp).unwrap_or_default())
}

async fn redirect_ui() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

async fn get_ui(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let q = match parse(&req) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let data = match load(&state).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let fast = state.reports.fast_accept_ms;
    let table = overrides::compute(&data, &q, fast);
    let mut per_version = q.clone();
    per_version.group_by = vec!["model_version"];
    let by_version = overrides::compute(&data, &per_version, fast);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(ui::page(&q, &table, &by_version))
}
