//! `limits.http_max_connections_per_peer`: one client address may hold at
//! most that many HTTP connections, so a single sender (or attacker) cannot
//! take every slot of `limits.http_max_connections`. The count is claimed
//! when a connection is accepted (`on_connect`) and released when it
//! closes; a request on a connection over the cap is answered 429 with an
//! OperationOutcome naming the setting, and that connection is closed.

use std::any::Any;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;

use super::response::error;
use crate::fhir::IssueType;
use crate::peers::{PeerCounts, PeerSlot};

/// Seconds a refused client is asked to wait.
const RETRY_AFTER_S: &str = "1";

/// Marks a connection accepted over its peer's cap.
#[derive(Clone, Copy)]
struct OverCap {
    max: usize,
}

/// Holds the connection's claim; dropped with the connection's data.
struct Claimed {
    _slot: PeerSlot,
}

/// The `on_connect` hook: claims a slot for the connection's peer.
pub fn on_connect(peers: &PeerCounts, max: usize, conn: &dyn Any, data: &mut Extensions) {
    let tcp = conn.downcast_ref::<actix_web::rt::net::TcpStream>().or_else(|| {
        conn.downcast_ref::<actix_tls::accept::openssl::TlsStream<actix_web::rt::net::TcpStream>>()
            .map(|tls| tls.get_ref())
    });
    let Some(ip) = tcp.and_then(|s| s.peer_addr().ok()).map(|a| a.ip()) else {
        return; // not TCP (never here): no per-peer bound to apply
    };
    match peers.claim(ip, max) {
        Some(slot) => {
            data.insert(Claimed { _slot: slot });
        }
        None => {
            tracing::warn!(
                limit = max,
                "http: connection over limits.http_max_connections_per_peer"
            );
            data.insert(OverCap { max });
        }
    }
}

/// Middleware: answers every request of an over-cap connection with 429.
pub async fn refuse_over_cap(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let over = req.conn_data::<OverCap>().copied();
    match over {
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
        Some(OverCap { max }) => {
            let mut res = error(
                StatusCode::TOO_MANY_REQUESTS,
                IssueType::Throttled,
                format!(
                    "this client address already holds {max} connections \
                     (limits.http_max_connections_per_peer); reuse one of them"
                ),
            );
            res.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_S),
            );
            res.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            Ok(req.into_response(res))
        }
    }
}
