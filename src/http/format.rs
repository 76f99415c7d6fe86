//! FHIR formats (R4 §3.1.0.1.6 and §3.1.0.1.7): `application/fhir+json` and
//! `application/fhir+xml`, chosen by `_format` first, then `Accept`; input by
//! `Content-Type`. JSON is what vellum stores and hashes; XML is derived from
//! it on the way out and converted to JSON on the way in.

// The error side is the finished response a handler returns at once; boxing
// it would only add an allocation on the refusal path.
#![allow(clippy::result_large_err)]

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::response::error;
use crate::config::LimitSettings;
use crate::fhir::xml_guard::{self, XmlLimits, XmlRefusal};
use crate::fhir::IssueType;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => FHIR_JSON,
            Format::Xml => FHIR_XML,
        }
    }
}

fn media_format(m: &str) -> Option<Format> {
    match m.trim().to_ascii_lowercase().as_str() {
        "json" | "application/fhir+json" | "application/json" | "application/json+fhir" => {
            Some(Format::Json)
        }
        "xml"
        | "application/fhir+xml"
        | "application/xml"
        | "text/xml"
        | "application/xml+fhir" => Some(Format::Xml),
        _ => None,
    }
}

/// A query parameter of the request, decoded.
pub fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The response format, or 406 when nothing acceptable can be produced.
pub fn response_format(req: &HttpRequest) -> Result<Format, HttpResponse> {
    if let Some(f) = query_param(req, "_format") {
        // `_format` may carry parameters (`application/fhir+json;fhirVersion=4.0`).
        let media = f.split(';').next().unwrap_or("");
        return media_format(media).ok_or_else(|| {
            error(
                StatusCode::NOT_ACCEPTABLE,
                IssueType::NotSupported,
                format!("_format={f} is not supported; use json or xml"),
            )
        });
    }
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Format::Json);
    };
    let mut best: Option<(f32, Format)> = None;
    let mut any = false;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let format = match media {
            "*/*" | "application/*" => {
                any = true;
                Some(Format::Json)
            }
            m => media_format(m),
        };
        if let Some(f) = format {
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, f));
            }
        }
    }
    match best {
        Some((_, f)) => Ok(f),
        None if any || accept.trim().is_empty() => Ok(Format::Json),
        None => Err(error(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            format!("cannot answer in {accept}; vellum speaks application/fhir+json and application/fhir+xml"),
        )),
    }
}

/// The request body's format; 415 for anything else. A missing
/// Content-Type is taken as JSON (some FHIR clients omit it).
pub fn request_format(req: &HttpRequest) -> Result<Format, HttpResponse> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(Format::Json);
    };
    let ct = ct.to_str().unwrap_or("");
    let media = ct.split(';').next().unwrap_or("");
    media_format(media).ok_or_else(|| {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!("Content-Type {media} is not supported; send application/fhir+json or application/fhir+xml"),
        )
    })
}

/// `_pretty=true`.
pub fn pretty(req: &HttpRequest) -> bool {
    query_param(req, "_pretty").as_deref() == Some("true")
}

/// Turns a JSON response body into the negotiated format. Headers set on
/// `resp` are kept; only the body and Content-Type change.
pub fn render(
    req: &HttpRequest,
    format: Format,
    mut resp: HttpResponse,
    json: String,
) -> HttpResponse {
    let body = match format {
        Format::Json if pretty(req) => serde_json::from_str::<serde_json::Value>(&json)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or(json),
        Format::Json => json,
        Format::Xml => match fhir_model::json_to_xml(json.as_bytes()) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "XML rendering failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueType::Exception,
                    "the resource could not be rendered as XML; ask for JSON",
                );
            }
        },
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(format.content_type()),
    );
    resp.set_body(actix_web::body::BoxBody::new(body))
}

/// The body of a request in `format`, as FHIR JSON bytes. XML is bounded
/// (size, nesting, UTF-8) before it is converted, and converted on the
/// blocking pool so a large body never holds an HTTP worker.
pub async fn to_json_body(
    format: Format,
    body: web::Bytes,
    limits: LimitSettings,
) -> Result<Vec<u8>, HttpResponse> {
    match format {
        Format::Json => Ok(body.to_vec()),
        Format::Xml => match web::block(move || xml_to_json(&body, limits)).await {
            Ok(r) => r.map_err(|e| e.response()),
            Err(_) => Err(busy()),
        },
    }
}

/// The answer when the blocking pool could not run a parse.
pub fn busy() -> HttpResponse {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Transient,
        "the server is busy; retry shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// A request body refused before or while it was parsed (a plain value, so
/// it can come back from the blocking pool).
#[derive(Debug, Clone)]
pub struct BodyRefusal {
    pub status: StatusCode,
    pub code: IssueType,
    pub message: String,
}

impl BodyRefusal {
    pub fn response(&self) -> HttpResponse {
        error(self.status, self.code, self.message.clone())
    }
}

fn xml_to_json(body: &[u8], limits: LimitSettings) -> Result<Vec<u8>, BodyRefusal> {
    let xml_limits = XmlLimits {
        max_depth: limits.xml_max_depth,
        max_bytes: limits.xml_max_bytes,
    };
    if let Err(e) = xml_guard::check(body, xml_limits) {
        let (status, code) = match e {
            XmlRefusal::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooLong),
            XmlRefusal::TooDeep(_) => (StatusCode::BAD_REQUEST, IssueType::TooLong),
            XmlRefusal::NotUtf8(_) | XmlRefusal::Malformed(_) => {
                (StatusCode::BAD_REQUEST, IssueType::Structure)
            }
        };
        return Err(BodyRefusal {
            status,
            code,
            message: e.to_string(),
        });
    }
    // The converter is third-party code: a panic in it refuses this body
    // (the panic hook logs where, never the input) instead of failing the
    // worker.
    let converted = std::panic::catch_unwind(|| fhir_model::xml_to_json(body));
    match converted {
        Ok(Ok(json)) => Ok(json),
        Ok(Err(e)) => Err(BodyRefusal {
            status: StatusCode::BAD_REQUEST,
            code: IssueType::Structure,
            message: format!("request body is not a valid FHIR R4 XML resource: {e}"),
        }),
        Err(_) => Err(BodyRefusal {
            status: StatusCode::BAD_REQUEST,
            code: IssueType::Structure,
            message: "request body is not a valid FHIR R4 XML resource".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn format_parameter_beats_accept() {
        let req = TestRequest::with_uri("/fhir/metadata?_format=xml")
            .insert_header((header::ACCEPT, "application/fhir+json"))
            .to_http_request();
        assert_eq!(response_format(&req).ok(), Some(Format::Xml));
    }

    #[test]
    fn accept_is_negotiated_with_quality() {
        let req = TestRequest::default()
            .insert_header((
                header::ACCEPT,
                "application/fhir+json;q=0.5, application/fhir+xml",
            ))
            .to_http_request();
        assert_eq!(response_format(&req).ok(), Some(Format::Xml));
        let browser = TestRequest::default()
            .insert_header((
                header::ACCEPT,
                "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
            ))
            .to_http_request();
        assert_eq!(response_format(&browser).ok(), Some(Format::Json));
        let pdf = TestRequest::default()
            .insert_header((header::ACCEPT, "application/pdf"))
            .to_http_request();
        assert_eq!(
            response_format(&pdf).err().map(|r| r.status()),
            Some(StatusCode::NOT_ACCEPTABLE)
        );
    }
}
