//! `GET /atna/messages/{id}`: the original audit message of an event that
//! arrived over ATNA syslog — the syslog MSG part (the DICOM audit message
//! XML, or for a parse-failure event whatever the sender sent), byte for
//! byte, when `store_content` kept it. Otherwise only its SHA-256 was kept:
//! 404 with an OperationOutcome giving that hash. Auditor role; every call
//! is recorded as an `audit-log-access` read of the event.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::authn::AccessRecord;
use super::response::error;
use super::AppState;
use crate::atna::{DETAIL_MESSAGE, DETAIL_MESSAGE_SHA256};
use crate::fhir::IssueType;
use crate::vocabulary::ATNA_SYSTEM;

/// Response header with the message's SHA-256 (hex), as recorded.
const SHA256_HEADER: &str = "X-Vellum-Message-Sha256";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/atna/messages/{id}", web::get().to(message));
}

/// What the received-message entity of an event holds.
#[derive(Debug, PartialEq, Eq)]
enum Kept {
    /// Not an event received over syslog.
    NotSyslog,
    /// Only the SHA-256 (base64 as recorded).
    HashOnly(String),
    /// The bytes and the recorded SHA-256.
    Bytes(Vec<u8>, String),
}

fn detail<'v>(entity: &'v Value, kind: &str) -> Option<&'v str> {
    entity["detail"]
        .as_array()?
        .iter()
        .find(|d| d["type"] == kind)?["valueBase64Binary"]
        .as_str()
}

fn kept(body: &str) -> Kept {
    let Ok(event) = serde_json::from_str::<Value>(body) else {
        return Kept::NotSyslog;
    };
    let Some(entity) = event["entity"].as_array().and_then(|es| {
        es.iter()
            .find(|e| e["what"]["identifier"]["system"] == ATNA_SYSTEM)
    }) else {
        return Kept::NotSyslog;
    };
    let Some(hash) = detail(entity, DETAIL_MESSAGE_SHA256) else {
        return Kept::NotSyslog;
    };
    match detail(entity, DETAIL_MESSAGE).and_then(|b| B64.decode(b).ok()) {
        Some(bytes) => Kept::Bytes(bytes, hash.to_string()),
        None => Kept::HashOnly(hash.to_string()),
    }
}

fn hex_of(b64: &str) -> String {
    B64.decode(b64).map(hex::encode).unwrap_or_default()
}

async fn message(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let id = path.into_inner();
    let not_found = |msg: String| error(StatusCode::NOT_FOUND, IssueType::NotFound, msg);
    if !crate::fhir::validate::is_id(&id) {
        return not_found(format!("AuditEvent/{id} is not stored"));
    }
    let entry = match state.ledger.read(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => return not_found(format!("AuditEvent/{id} is not stored")),
        Err(e) => {
            tracing::error!(error = %e, "atna message read failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the store is unavailable",
            );
        }
    };
    let record = AccessRecord {
        data: vec![entry.id.clone()],
        ..AccessRecord::of_bodies([entry.body.as_str()])
    };
    let mut res = match kept(&entry.body) {
        Kept::NotSyslog => not_found(format!(
            "AuditEvent/{id} was not received over ATNA syslog: there is no original message"
        )),
        Kept::HashOnly(hash) => not_found(format!(
            "the original message of AuditEvent/{id} was not kept (store_content is off); \
             only its SHA-256 was recorded: {}",
            hex_of(&hash)
        )),
        Kept::Bytes(bytes, hash) => {
            // The recorded hash covers these bytes; a mismatch is tampering
            // that `vellum verify` reports, so never serve them silently.
            if B64.encode(Sha256::digest(&bytes)) != hash {
                tracing::error!("atna message bytes do not match their recorded SHA-256");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueType::Exception,
                    "the stored message does not match its recorded SHA-256",
                );
            }
            HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header((SHA256_HEADER, hex_of(&hash)))
                .body(bytes)
        }
    };
    res.extensions_mut().insert(record);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_received_message_entity_is_read() {
        let digest = B64.encode(Sha256::digest(b"<AuditMessage/>"));
        let raw = B64.encode(b"<AuditMessage/>");
        let with = format!(
            r#"{{"entity":[{{"what":{{"identifier":{{"system":"{ATNA_SYSTEM}","value":"sha256:x"}}}},
              "detail":[{{"type":"atna-message-sha256","valueBase64Binary":"{digest}"}},
                        {{"type":"atna-message","valueBase64Binary":"{raw}"}}]}}]}}"#
        );
        assert_eq!(
            kept(&with),
            Kept::Bytes(b"<AuditMessage/>".to_vec(), digest.clone())
        );
        let without = with.replace(r#""atna-message","#, r#""other","#);
        assert_eq!(kept(&without), Kept::HashOnly(digest));
        assert_eq!(kept(r#"{"entity":[{"name":"x"}]}"#), Kept::NotSyslog);
    }
}
