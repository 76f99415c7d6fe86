//! `/reports` (JSON or CSV) and the QA page `/ui/`. The numbers come from
//! `crate::reports`, computed on each request over the reports' dataset
//! brought up to the ledger's head (`crate::reports::cache`).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::authn::{self, AccessRecord};
use super::AppState;
use crate::reports::cases::{self, CaseQuery};
use crate::reports::drift::{self, DriftRule};
use crate::reports::history::{self, StudyQuery};
use crate::reports::overrides::{self, ParamError, Query};
use crate::reports::patient_access::{self, PatientQuery};
use crate::reports::patients::PatientView;
use crate::reports::{confidence, events, quality, ui, versions};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/reports/overrides", web::get().to(get_overrides))
        .route("/reports/model-versions", web::get().to(get_versions))
        .route("/reports/cases", web::get().to(get_cases))
        .route("/reports/study-history", web::get().to(get_study_history))
        .route("/reports/patient-access", web::get().to(get_patient_access))
        .route("/reports/drift", web::get().to(get_drift))
        .route("/reports/quality", web::get().to(get_quality))
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
    csv_requested(req, q.format.as_deref())
}

fn csv_requested(req: &HttpRequest, format: Option<&str>) -> bool {
    match format {
        Some(f) => f == "csv",
        None => req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/csv")),
    }
}

/// Every AI event up to the current head, from the reports' in-memory
/// dataset (brought up to date first). Drop it before the next `.await`.
async fn current(
    state: &AppState,
) -> Result<std::sync::RwLockReadGuard<'_, events::Dataset>, HttpResponse> {
    state.report_cache.current().await.map_err(|e| {
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
    let report = match current(&state).await {
        Ok(data) => overrides::compute(&data, &q, state.reports.fast_accept_ms),
        Err(r) => return r,
    };
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
    let cmp = match current(&state).await {
        Ok(data) => versions::compute(&data, &model, &q.filters),
        Err(r) => return r,
    };
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
    let fast = state.reports.fast_accept_ms;
    let mut per_version = q.clone();
    per_version.group_by = vec!["model_version"];
    // The drift chart is over every event, whatever the filters.
    let rule = DriftRule::of(&state.reports);
    let (table, by_version, confidence, drift) = match current(&state).await {
        // The page's four computations are independent passes over the
        // same dataset: run side by side, the page costs about its
        // slowest part instead of their sum.
        Ok(data) => std::thread::scope(|s| {
            let data: &events::Dataset = &data;
            let by_version = (q.group_by != per_version.group_by)
                .then(|| s.spawn(|| overrides::compute(data, &per_version, fast)));
            let confidence = s.spawn(|| confidence::compute(data, &q));
            let drift = s.spawn(|| drift::compute(data, rule, time::OffsetDateTime::now_utc()));
            let table = overrides::compute(data, &q, fast);
            let by_version = by_version.map_or_else(|| table.clone(), joined);
            (table, by_version, joined(confidence), joined(drift))
        }),
        Err(r) => return r,
    };
    let auditor = authn::principal(&req).is_some_and(|p| !p.sees_pseudonyms_only());
    let alerts = super::detection_routes::recent_alerts_section(&state, auditor).await;
    let page = ui::page(&q, &table, &by_version, &confidence, &drift).replacen(
        "</main>",
        &(alerts + "</main>"),
        1,
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page)
}

/// A scoped computation's result; its panic goes on in the caller (the
/// server's panic handling answers 500, as for any handler).
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// How the caller sees patient identifiers: QA staff get pseudonyms under
/// the `[privacy]` key, or nothing without one.
fn patient_view<'a>(req: &HttpRequest, state: &'a AppState) -> PatientView<'a> {
    let qa_only = authn::principal(req).is_none_or(|p| p.sees_pseudonyms_only());
    let key = state
        .privacy
        .pseudonym_key
        .as_ref()
        .map(|k| k.expose().as_slice());
    PatientView::for_caller(qa_only, key)
}

fn unavailable(e: vellum_ledger::store::StoreError) -> HttpResponse {
    tracing::error!(error = %e, "reports: reading the ledger failed");
    problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
}

/// A list's answer (JSON or CSV) with the access record naming the
/// patients it showed.
fn list_response(
    req: &HttpRequest,
    format: Option<&str>,
    name: &str,
    json: String,
    csv_body: impl FnOnce() -> String,
    patients: Vec<serde_json::Value>,
) -> HttpResponse {
    let mut res = if csv_requested(req, format) {
        csv(csv_body(), name)
    } else {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(json)
    };
    res.extensions_mut().insert(AccessRecord {
        patients,
        ..AccessRecord::default()
    });
    res
}

async fn get_cases(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let pairs = pairs(&req);
    let q = match CaseQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // Select from the in-memory dataset, then read only the selected
    // inferences' patients (the dataset holds none) and list them.
    let seqs = match current(&state).await {
        Ok(data) => cases::selected_seqs(&data, &q),
        Err(r) => return r,
    };
    let patients = match state.ledger.summary_patients(&seqs).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    // The selection is made: no need to read the store again.
    let list = cases::compute(
        &state.report_cache.as_is(),
        &q,
        patient_view(&req, &state),
        &patients,
        &seqs,
    );
    let json = serde_json::to_string(&list).unwrap_or_default();
    list_response(
        &req,
        q.base.format.as_deref(),
        "cases",
        json,
        || cases::to_csv(&list),
        list.patients.clone(),
    )
}

async fn get_study_history(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let pairs = pairs(&req);
    let q = match StudyQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let h = match history::compute(&state.ledger, &q, patient_view(&req, &state)).await {
        Ok(h) => h,
        Err(e) => return unavailable(e),
    };
    let json = serde_json::to_string(&h).unwrap_or_default();
    list_response(
        &req,
        q.format.as_deref(),
        "study-history",
        json,
        || history::to_csv(&h),
        h.patients.clone(),
    )
}

/// Auditors only (the access policy): it names the patient in clear.
async fn get_patient_access(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let pairs = pairs(&req);
    let q = match PatientQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let key = state
        .privacy
        .pseudonym_key
        .as_ref()
        .map(|k| k.expose().as_slice());
    let r = match patient_access::compute(&state.ledger, &q, key).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let json = serde_json::to_string(&r).unwrap_or_default();
    list_response(
        &req,
        q.format.as_deref(),
        "patient-access",
        json,
        || patient_access::to_csv(&r),
        r.patients.clone(),
    )
}

/// The drift verdicts recomputed from the stored events (`format`: json or
/// csv; no other parameter).
async fn get_drift(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let pairs = pairs(&req);
    let mut format = None;
    for (k, v) in &pairs {
        match (k.as_str(), history::parse_format(v.trim())) {
            ("format", Ok(f)) => format = f,
            ("format", Err(e)) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
            (other, _) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    &ParamError::Unknown(other.to_string()).to_string(),
                )
            }
        }
    }
    let r = match current(&state).await {
        Ok(data) => drift::compute(
            &data,
            DriftRule::of(&state.reports),
            time::OffsetDateTime::now_utc(),
        ),
        Err(r) => return r,
    };
    if csv_requested(&req, format.as_deref()) {
        return csv(drift::to_csv(&r), "drift");
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_string(&r).unwrap_or_default())
}

/// Quality metrics per model version and period (`group_by` empty, `week`
/// or `month`; the report filters).
async fn get_quality(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let q = match parse(&req) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let period = match quality::period_of(&q) {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let r = match current(&state).await {
        Ok(data) => quality::compute(&data, &q, period),
        Err(r) => return r,
    };
    if wants_csv(&req, &q) {
        return csv(quality::to_csv(&r), "quality");
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_string(&r).unwrap_or_default())
}
