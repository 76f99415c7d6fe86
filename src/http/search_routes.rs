//! `GET /fhir/AuditEvent?…` and `POST /fhir/AuditEvent/_search`: searchset
//! Bundles with cursor paging pinned to the ledger head of the first page.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::authn::{principal, AccessRecord};
use super::format::{render, response_format};
use super::response::{error, fhir_base, outcome};
use super::visibility::own_events;
use super::AppState;
use crate::fhir::bundle::{self, Link, Match};
use crate::fhir::search::{self, format_cursor, SearchRequest, TotalMode};
use crate::fhir::{IssueType, OperationOutcome};
use vellum_ledger::store::search::{Cursor, SearchHit};

/// R4 §3.1.1.5.8 `Prefer: handling`. Strict unless the client asks `Prefer: handling=lenient`: for an audit
/// repository an unknown parameter silently ignored would return every
/// event, so it is refused unless the client opts in.
fn strict_handling(req: &HttpRequest) -> bool {
    !req.headers()
        .get_all("Prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("handling=lenient"))
}

fn decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub async fn search_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = decode_pairs(req.query_string().as_bytes());
    run(&req, params, &state).await
}

pub async fn search_post(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
        && !body.is_empty()
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "POST _search takes application/x-www-form-urlencoded parameters",
        );
    }
    let mut params = decode_pairs(req.query_string().as_bytes());
    params.extend(decode_pairs(&body));
    let mut res = run(&req, params, &state).await;
    // The access record carries the form body too: it is part of the query.
    if let Some(record) = res.extensions_mut().get_mut::<AccessRecord>() {
        let mut request = format!("{} {}\n\n", req.method(), req.uri()).into_bytes();
        request.extend_from_slice(&body);
        record.request = Some(request);
    }
    res
}

fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

async fn run(req: &HttpRequest, params: Vec<(String, String)>, state: &AppState) -> HttpResponse {
    let format = match response_format(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut sr =
        match search::parse_within(&params, strict_handling(req), now_us(), state.limits.search) {
            Ok(s) => s,
            Err(issues) => return outcome(StatusCode::BAD_REQUEST, &OperationOutcome::new(issues)),
        };
    if let Some(p) = principal(req).filter(|p| p.reads_only_own_events()) {
        sr.query.conditions.extend(own_events(&p.subject));
    }
    let store = &state.ledger;
    let started = std::time::Instant::now();
    if !sr.head_given {
        match store.head().await {
            Ok(h) => sr.query.head = h.seq,
            Err(e) => return unavailable(e),
        }
    }
    let count_only = sr.summary_count || sr.count == 0;
    let hits = if count_only {
        Vec::new()
    } else {
        match store.search(&sr.query).await {
            Ok(h) => h,
            Err(e) => return unavailable(e),
        }
    };
    let page = Page::cut(hits, &sr);
    let total = match sr.total {
        TotalMode::None => None,
        _ if count_only || sr.total == TotalMode::Accurate => match store.count(&sr.query).await {
            Ok(n) => Some(n),
            Err(e) => return unavailable(e),
        },
        // Known for free: the first page holds everything.
        _ if sr.query.cursor.is_none() && !page.has_next => Some(page.hits.len() as i64),
        _ => None,
    };
    crate::metrics::global()
        .search_duration
        .observe(started.elapsed().as_secs_f64());
    let base = fhir_base(req, state.public_base_url.as_deref());
    let links = page.links(&base, &sr);
    let matches: Vec<(String, String)> = page
        .hits
        .iter()
        .map(|h| {
            let body = match &sr.elements {
                Some(els) => bundle::subset(&h.entry.body, els),
                None => h.entry.body.clone(),
            };
            (format!("{base}/AuditEvent/{}", h.entry.id), body)
        })
        .collect();
    let matches: Vec<Match<'_>> = matches
        .iter()
        .map(|(u, b)| Match {
            full_url: u.clone(),
            body: b,
        })
        .collect();
    let ignored = (!sr.ignored.is_empty()).then(|| OperationOutcome::new(sr.ignored.clone()));
    let now = vellum_ledger::stamp(time::OffsetDateTime::now_utc());
    let json = bundle::searchset(
        &uuid::Uuid::new_v4().to_string(),
        &now,
        total,
        &links,
        &matches,
        ignored.as_ref(),
    );
    let record = AccessRecord::of_bodies(page.hits.iter().map(|h| h.entry.body.as_str()));
    let mut res = render(req, format, HttpResponse::Ok().finish(), json);
    res.extensions_mut().insert(record);
    res
}

fn unavailable(e: vellum_ledger::store::StoreError) -> HttpResponse {
    crate::metrics::global().store_error("search");
    tracing::error!(error = %e, "search failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Transient,
        "the store is unavailable",
    )
}

/// One page of hits and whether there are more on either side.
struct Page {
    hits: Vec<SearchHit>,
    has_next: bool,
    has_prev: bool,
}

impl Page {
    /// The store returns one row beyond the page (on the far side when
    /// walking backwards); it only says that there is more.
    fn cut(mut hits: Vec<SearchHit>, sr: &SearchRequest) -> Page {
        let n = sr.count.max(0) as usize;
        let more = hits.len() > n;
        match sr.query.cursor {
            Some(Cursor { forward: false, .. }) => {
                if more {
                    hits.drain(..hits.len() - n);
                }
                Page {
                    hits,
                    has_next: true,
                    has_prev: more,
                }
            }
            c => {
                hits.truncate(n);
                Page {
                    hits,
                    has_next: more,
                    has_prev: c.is_some(),
                }
            }
        }
    }

    fn links(&self, base: &str, sr: &SearchRequest) -> Vec<Link> {
        let url = |cursor: Option<Cursor>| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &sr.echo {
                q.append_pair(k, v);
            }
            q.append_pair("_head", &sr.query.head.to_string());
            if let Some(c) = cursor {
                q.append_pair("_cursor", &format_cursor(&c));
            }
            format!("{base}/AuditEvent?{}", q.finish())
        };
        let mut links = vec![Link {
            relation: "self",
            url: url(sr.query.cursor),
        }];
        links.push(Link {
            relation: "first",
            url: url(None),
        });
        if self.has_prev {
            if let Some(h) = self.hits.first() {
                links.push(Link {
                    relation: "previous",
                    url: url(Some(Cursor {
                        key: h.sort_key,
                        seq: h.entry.seq,
                        forward: false,
                    })),
                });
            }
        }
        if self.has_next {
            if let Some(h) = self.hits.last() {
                links.push(Link {
                    relation: "next",
                    url: url(Some(Cursor {
                        key: h.sort_key,
                        seq: h.entry.seq,
                        forward: true,
                    })),
                });
            }
        }
        links
    }
}
