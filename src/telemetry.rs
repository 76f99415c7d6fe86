//! Operational logging (tracing → stdout). Never log bodies, identifiers or
//! anything else from a message: only ids vellum assigned, counts and timings.

use tracing_subscriber::EnvFilter;

pub fn init(filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    // A second init (tests start several servers) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
