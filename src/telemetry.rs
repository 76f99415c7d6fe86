//! Operational logging (tracing → stdout). Never log bodies, identifiers or
//! anything else from a message: only ids vellum assigned, counts and timings.

use tracing_subscriber::EnvFilter;

/// Logs to stdout: `json` writes one JSON object per line (fields at the
/// top level, the request span's fields under `span`) for log shippers.
pub fn init(filter: &str, format: crate::config::LogFormat) {
    // PostgreSQL answers every repeated `CREATE … IF NOT EXISTS` of the
    // migrator with a NOTICE that sqlx logs at INFO on each start: noise.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{filter},sqlx::postgres::notice=warn")));
    // Colour codes only on a terminal, never into files or log shippers.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    // A second init (tests start several servers) is harmless.
    let _ = match format {
        crate::config::LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(ansi)
            .try_init(),
        crate::config::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_target(true)
            .try_init(),
    };
}

/// Replaces the default panic hook, which prints the panic message — and a
/// message built from input (a date, a namespace, a slice of the body) can
/// carry PHI. This one logs only where the panic happened and on which
/// thread, through tracing and on stderr (in case tracing is not set up).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown location".into());
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        tracing::error!(%location, thread, "panic (message withheld: it may carry input)");
        eprintln!("vellum: panic at {location} on thread {thread} (message withheld)");
    }));
}
