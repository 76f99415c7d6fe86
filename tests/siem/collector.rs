//! A JSON Lines collector over HTTPS, in the style of SIEM HTTP inputs
//! (Splunk HEC, Logstash http): actix-web with a certificate from the test
//! CA. It can refuse its first requests (an outage: 503) and hold one
//! request unanswered until released (to kill vellum mid-delivery).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::sync::Notify;
use vellum_testkit::tls::Pki;

use crate::Received;

#[derive(Default)]
pub struct State {
    /// Requests answered 503 before the collector "comes back".
    fail_first: usize,
    /// The request (1-based) held unanswered until [`Collector::release`].
    hold_at: usize,
    requests: AtomicUsize,
    /// Acknowledged (2xx) requests' records, one Vec per request, in order.
    acked: Mutex<Vec<Vec<Received>>>,
    /// The held request's records.
    held: Mutex<Option<Vec<Received>>>,
    held_arrived: Notify,
    release: Notify,
    /// The token header of every request.
    tokens: Mutex<Vec<Option<String>>>,
}

pub struct Collector {
    pub url: String,
    state: Arc<State>,
    server: actix_web::dev::ServerHandle,
}

/// `{"seq":N,"chain":"HEX","event":BODY}`: the body is cut out as sent.
fn parse_line(line: &str) -> Received {
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    let start = line.find(",\"event\":").expect("event key") + ",\"event\":".len();
    let body = line
        .get(start..line.len() - 1)
        .expect("event value")
        .to_string();
    assert!(line.ends_with('}'), "{line}");
    Received {
        seq: v["seq"].as_i64().expect("seq"),
        chain: v["chain"].as_str().expect("chain").to_string(),
        body,
    }
}

async fn collect(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    state.tokens.lock().unwrap().push(
        req.headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    );
    if n <= state.fail_first {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let text = std::str::from_utf8(&body).expect("UTF-8 body");
    assert_eq!(
        req.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let records: Vec<Received> = text.lines().map(parse_line).collect();
    if n == state.hold_at {
        *state.held.lock().unwrap() = Some(records);
        state.held_arrived.notify_one();
        state.release.notified().await;
        return HttpResponse::InternalServerError().finish();
    }
    state.acked.lock().unwrap().push(records);
    HttpResponse::Ok().json(serde_json::json!({"text": "Success", "code": 0}))
}

impl Collector {
    pub async fn start(pki: &Pki, fail_first: usize, hold_at: usize) -> Collector {
        let state = Arc::new(State {
            fail_first,
            hold_at,
            ..State::default()
        });
        let data = web::Data::from(state.clone());
        let tls = vellum::tls::server_builder(
            "collector",
            pki.path("server.pem").as_ref(),
            pki.path("server.key").as_ref(),
            None,
        )
        .expect("collector TLS");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/services/collector", web::post().to(collect))
        })
        .workers(1)
        .disable_signals()
        .bind_openssl(("127.0.0.1", 0), tls)
        .expect("bind collector");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Collector {
            url: format!("https://localhost:{port}/services/collector"),
            state,
            server: handle,
        }
    }

    /// Every acknowledged record, in the order the requests were answered.
    pub fn acked(&self) -> Vec<Received> {
        self.state
            .acked
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Waits for the held request; returns its records.
    pub async fn held(&self) -> Vec<Received> {
        loop {
            if let Some(h) = self.state.held.lock().unwrap().clone() {
                return h;
            }
            self.state.held_arrived.notified().await;
        }
    }

    pub fn release(&self) {
        self.state.release.notify_one();
    }

    pub fn tokens(&self) -> Vec<Option<String>> {
        self.state.tokens.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.release();
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}
