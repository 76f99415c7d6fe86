//! Tests that run real `vellum serve` processes under load: killed, stopped,
//! or two writing to one database. Kept in their own binary, one scenario at
//! a time, so their load and timing do not overlap other tests.

mod durability;
mod mllp_crash;
mod syslog_sigterm;
mod two_writers;

use std::future::Future;
use std::sync::Mutex;

/// The scenarios start real servers and many clients each; on a small machine
/// they run one at a time so each one really runs under its own load.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `scenario` alone (see [`SERIAL`]) on a two-worker runtime of its own.
pub(crate) fn serially<F: Future>(scenario: F) -> F::Output {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(scenario)
}
