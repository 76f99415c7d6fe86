//! Client certificates refused by the MLLP and syslog TLS listeners,
//! recorded in the ledger as refused logins: the event the HTTP gate
//! appends for a 401 (DCM 110114, or 110113 for a known certificate
//! without the `source` role, as for a 403), naming the listener and the
//! peer address, so the `auth-failures` detection rule counts them per
//! address. A flood of handshakes must not become a flood of writes: at
//! most [`PER_PEER_PER_MINUTE`] events per peer address and
//! [`PER_LISTENER_PER_MINUTE`] in all, per listener and clock minute; the
//! rest are counted in `/metrics` only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::client_cert::SenderRefusal;
use crate::fhir::access_event::{self, Denial};
use crate::intake::{Intake, Submission};

/// Refusals recorded per peer address, listener and minute.
pub const PER_PEER_PER_MINUTE: u32 = 10;
/// Refusals recorded per listener and minute, all peers together (also
/// bounds the per-peer table).
pub const PER_LISTENER_PER_MINUTE: u32 = 600;
const MINUTE: Duration = Duration::from_secs(60);

/// Why a certificate was refused.
#[derive(Debug, Clone, Copy)]
pub enum Refused<'a> {
    /// No certificate, one the client CA did not sign, or one not listed
    /// in `auth.clients`: a failed authentication.
    Unauthenticated(&'a str),
    /// A listed certificate whose principal (`subject`) may not send.
    NotASource { subject: &'a str, why: &'a str },
}

impl<'a> Refused<'a> {
    /// A listener's refusal of a verified certificate; `text` is `why`
    /// as written.
    pub fn of_sender(why: &'a SenderRefusal, text: &'a str) -> Self {
        match why {
            SenderRefusal::NotASource(subject) => Refused::NotASource { subject, why: text },
            SenderRefusal::NoCertificate | SenderRefusal::Unknown => Refused::Unauthenticated(text),
        }
    }
}

struct Window {
    started: Instant,
    per_peer: HashMap<IpAddr, u32>,
    total: u32,
}

impl Window {
    fn new() -> Self {
        Window {
            started: Instant::now(),
            per_peer: HashMap::new(),
            total: 0,
        }
    }
}

/// The per-minute limits of one listener.
struct Limiter(Mutex<Window>);

impl Limiter {
    fn allowed(&self, peer: IpAddr) -> bool {
        let Ok(mut w) = self.0.lock() else {
            return false;
        };
        if w.started.elapsed() >= MINUTE {
            *w = Window::new();
        }
        if w.total >= PER_LISTENER_PER_MINUTE {
            return false;
        }
        let n = w.per_peer.entry(peer).or_insert(0);
        if *n >= PER_PEER_PER_MINUTE {
            return false;
        }
        *n += 1;
        w.total += 1;
        true
    }
}

/// The recorder of one TLS listener.
pub struct RefusalLog {
    intake: Intake,
    /// `mllp` or `syslog` (the metrics' listener label).
    listener: &'static str,
    /// `source.site` of the events: the listener and its address.
    site: String,
    limiter: Limiter,
}

impl RefusalLog {
    pub fn new(intake: Intake, listener: &'static str, local: SocketAddr) -> Self {
        RefusalLog {
            intake,
            listener,
            site: format!("{listener} TLS listener {local}"),
            limiter: Limiter(Mutex::new(Window::new())),
        }
    }

    /// Counts the refusal and, within the limits, appends its event in the
    /// background (the connection does not wait for it).
    pub fn record(&self, peer: SocketAddr, refused: Refused<'_>) {
        crate::metrics::global().client_certificate_refused(self.listener);
        if !self.limiter.allowed(peer.ip()) {
            crate::metrics::global().tls_refusal_unrecorded(self.listener);
            return;
        }
        let (denial, subject, why) = match refused {
            Refused::Unauthenticated(why) => (Denial::Authentication, None, why),
            Refused::NotASource { subject, why } => (Denial::Authorization, Some(subject), why),
        };
        let line = format!("TLS handshake from {peer}: {why}");
        let body = access_event::security_alert(
            denial,
            subject,
            Some(&peer.ip().to_string()),
            &self.site,
            &line,
            &vellum_ledger::stamp(time::OffsetDateTime::now_utc()),
        );
        let intake = self.intake.clone();
        let listener = self.listener;
        tokio::spawn(async move {
            if let Err(e) = intake.submit(Submission::mapped(body)).await {
                tracing::warn!(error = ?e, listener, "refused client certificate not recorded");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_gets_its_own_share_and_the_listener_a_total() {
        let limiter = Limiter(Mutex::new(Window::new()));
        let allowed = |ip: IpAddr| (0..50).filter(|_| limiter.allowed(ip)).count() as u32;
        assert_eq!(allowed("10.0.0.1".parse().unwrap()), PER_PEER_PER_MINUTE);
        assert_eq!(allowed("10.0.0.2".parse().unwrap()), PER_PEER_PER_MINUTE);
        let mut total = 2 * PER_PEER_PER_MINUTE;
        for i in 0..=255u8 {
            total += allowed(IpAddr::from([10, 0, 1, i]));
        }
        assert_eq!(total, PER_LISTENER_PER_MINUTE);
    }
}
