//! `POST /dicom/digest`: pixel digests (docs/dicom.md) of uploaded instances,
//! `application/dicom` (one instance) or `multipart/related;
//! type="application/dicom"` (STOW-RS style, several). The images are
//! never stored: each part is spooled to a temporary file (removed when the
//! request ends), hashed like a file on disk, and the answer is the same
//! JSON report as `vellum hash --json`.

use std::path::PathBuf;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::response::error;
use crate::dicom::digest::{hash_files, Outcome, SkipReason};
use crate::dicom::multipart::{boundary_of, param_of, PartSink, Splitter};
use crate::dicom::report::Report;
use crate::dicom::service::DicomService;
use crate::dicom::spool::{Spool, Spooled};
use crate::fhir::IssueType;

/// Registers the route; the `DicomService` is app data of the whole app
/// (the create paths reach it through `AppState::dicom`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/dicom").route("/digest", web::post().to(digest)));
}

enum Body {
    Single,
    Multipart(String),
}

fn media_type(req: &HttpRequest) -> Result<Body, Box<HttpResponse>> {
    let raw = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let unsupported = |what: String| {
        Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!(
                "{what}; send application/dicom or multipart/related; type=\"application/dicom\""
            ),
        ))
    };
    match media.as_str() {
        "application/dicom" => Ok(Body::Single),
        "multipart/related" => {
            if let Some(t) = param_of(raw, "type") {
                if !t.eq_ignore_ascii_case("application/dicom") {
                    return Err(unsupported(format!("multipart/related of type {t}")));
                }
            }
            boundary_of(raw).map(Body::Multipart).ok_or_else(|| {
                Box::new(error(
                    StatusCode::BAD_REQUEST,
                    IssueType::Invalid,
                    "multipart/related without a boundary parameter",
                ))
            })
        }
        "" => Err(unsupported("no Content-Type".into())),
        other => Err(unsupported(format!(
            "Content-Type {other} is not supported"
        ))),
    }
}

async fn digest(
    req: HttpRequest,
    mut payload: web::Payload,
    service: web::Data<DicomService>,
) -> HttpResponse {
    let settings = service.settings();
    let body = match media_type(&req) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let limit = settings.max_upload_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("upload exceeds the limit of {limit} bytes"),
        )
    };
    let declared = super::response::declared_length(&req);
    if declared.is_some_and(|n| n > limit) {
        return too_large();
    }
    let mut spool = match Spool::new(limit) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot create an upload spool directory");
            return error(
                StatusCode::INSUFFICIENT_STORAGE,
                IssueType::Exception,
                "cannot spool the upload",
            );
        }
    };
    let mut splitter = match &body {
        Body::Single => {
            if let Err(e) = spool.start(1, Some("application/dicom")) {
                return error(StatusCode::INSUFFICIENT_STORAGE, IssueType::Exception, e);
            }
            None
        }
        Body::Multipart(boundary) => Some(Splitter::new(boundary)),
    };
    // The raw request bytes count against the limit too (boundaries and
    // part headers included): part bodies alone let thousands of empty
    // parts through.
    let mut raw = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    IssueType::Invalid,
                    format!("could not read the request body: {e}"),
                )
            }
        };
        raw += chunk.len();
        if raw > limit {
            return too_large();
        }
        let pushed = match splitter.as_mut() {
            Some(s) => s.push(&chunk, &mut spool).map_err(|e| e.to_string()),
            None => spool.data(&chunk),
        };
        if let Err(e) = pushed {
            if spool.bytes > limit {
                return too_large();
            }
            return error(StatusCode::BAD_REQUEST, IssueType::Invalid, e);
        }
    }
    match &splitter {
        Some(s) => {
            if let Err(e) = s.finish() {
                return error(StatusCode::BAD_REQUEST, IssueType::Invalid, e.to_string());
            }
            if s.parts() == 0 {
                return error(
                    StatusCode::BAD_REQUEST,
                    IssueType::Required,
                    "multipart body has no parts",
                );
            }
        }
        None => {
            if let Err(e) = spool.end() {
                return error(StatusCode::INSUFFICIENT_STORAGE, IssueType::Exception, e);
            }
        }
    }
    let workers = settings.workers;
    let limits = settings.header;
    // Hashing is CPU and file work: off the async workers.
    let report = web::block(move || {
        let spool = spool; // dropped (and its files removed) after hashing
        let files: Vec<PathBuf> = spool
            .parts
            .iter()
            .filter_map(|(_, p)| match p {
                Spooled::File(f) => Some(f.clone()),
                Spooled::Refused(_) => None,
            })
            .collect();
        let mut hashed = hash_files(&files, workers, &limits).into_iter();
        let outcomes: Vec<_> = spool
            .parts
            .iter()
            .map(|(name, p)| {
                let o = match p {
                    Spooled::File(_) => hashed.next().unwrap_or_else(|| {
                        Ok(Outcome::Skipped(SkipReason::Unreadable(
                            "not hashed".into(),
                        )))
                    }),
                    Spooled::Refused(why) => Ok(Outcome::Skipped(SkipReason::Refused(why.clone()))),
                };
                (name.clone(), o)
            })
            .collect();
        Report::new(outcomes)
    })
    .await;
    match report {
        Ok(r) => HttpResponse::Ok().json(&r),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            format!("hashing failed: {e}"),
        ),
    }
}
