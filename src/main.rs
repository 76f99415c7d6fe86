//! The `vellum` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod evidence_cli;

use vellum::config::{DatabaseUrl, Settings};
use vellum::startup::Application;
use vellum::store::{AnyStore, Store};

// Allocation is the largest single item of the request path (one String per
// JSON key and value, per HL7 field); mimalloc's thread-local free lists
// make it cheaper. Only the binary: the library leaves the choice to its users.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vellum",
    version,
    about = "Tamper-evident FHIR AuditEvent repository"
)]
struct Cli {
    /// TOML configuration file (VELLUM_* environment variables win over it).
    #[arg(long, global = true, env = "VELLUM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP (FHIR) server.
    Serve,
    /// Recompute every hash, chain link, Merkle root and checkpoint
    /// signature; exit 0 when all hold, 1 on tampering.
    Verify {
        #[arg(long)]
        database_url: Option<String>,
        /// Print a machine-readable verdict.
        #[arg(long)]
        json: bool,
        /// Verify an export directory offline instead of the database.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
        /// The log's verifier key (default: the configured signing key's;
        /// for --export, DIR/log.vkey).
        #[arg(long, value_name = "FILE")]
        vkey: Option<PathBuf>,
    },
    /// Create a checkpoint signing key: DIR/log.key (0600) and DIR/log.vkey.
    Keygen {
        #[arg(long)]
        origin: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign and store a checkpoint of the current head; print it.
    Checkpoint {
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Write entries.jsonl, checkpoint and log.vkey for offline verification.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        from: Option<i64>,
        #[arg(long)]
        to: Option<i64>,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Write an offline inclusion-proof bundle for one event.
    Proof {
        #[arg(long, value_name = "EVENT_ID")]
        id: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Check a proof bundle offline: exit 0 proven, 1 not.
    VerifyProof {
        file: PathBuf,
        #[arg(long)]
        vkey: PathBuf,
    },
    /// Pixel-data digests (DESIGN §3) of DICOM files and folders: instance
    /// digests, skipped files with reasons, study digests.
    Hash {
        /// Files and folders (searched recursively).
        #[arg(required_unless_present = "verify")]
        paths: Vec<PathBuf>,
        /// Re-hash the studies a stored event recorded digests for (from the
        /// configured `[dicom]` sources) and compare: exit 0 when all match,
        /// 1 when any differs, 2 when one cannot be checked.
        #[arg(long, value_name = "EVENT_ID", conflicts_with = "paths")]
        verify: Option<String>,
        #[arg(long)]
        database_url: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Files hashed at once (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Fill the configured store with reproducible demo AI traffic
    /// (inferences, renderings, overrides) through the normal intake.
    Demo {
        /// Events to store (at least; whole cases).
        #[arg(long, default_value_t = 2000)]
        events: u64,
        /// The same seed gives the same events (and a rerun adds nothing).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long)]
        database_url: Option<String>,
    },
}

fn settings(config: Option<&PathBuf>, database_url: Option<&String>) -> Result<Settings, String> {
    let mut s = Settings::load(config.map(|p| p.as_path())).map_err(|e| e.to_string())?;
    if let Some(url) = database_url {
        s.database_url = DatabaseUrl::parse(url).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

fn main() -> ExitCode {
    vellum::telemetry::install_panic_hook();
    let cli = Cli::parse();
    match &cli.command {
        Command::Keygen { origin, out } => return evidence_cli::keygen(origin, out),
        Command::VerifyProof { file, vkey } => return evidence_cli::verify_proof(file, vkey),
        Command::Verify {
            export: Some(dir),
            vkey,
            json,
            ..
        } => return evidence_cli::verify_export(dir, vkey.as_ref(), *json),
        _ => {}
    }
    if let Command::Hash {
        paths,
        json,
        workers,
        verify: None,
        ..
    } = &cli.command
    {
        // Pure CPU and file work: no runtime, no configuration needed.
        return hash(paths, *json, *workers);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vellum: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        match cli.command {
            Command::Serve => serve(cli.config.as_ref()).await,
            Command::Verify {
                database_url,
                json,
                vkey,
                ..
            } => match settings(cli.config.as_ref(), database_url.as_ref()) {
                Ok(s) => evidence_cli::verify(&s, vkey.as_ref(), json).await,
                Err(e) => {
                    eprintln!("vellum: {e}");
                    ExitCode::from(2)
                }
            },
            Command::Checkpoint { database_url } => {
                match settings(cli.config.as_ref(), database_url.as_ref()) {
                    Ok(s) => evidence_cli::checkpoint(&s).await,
                    Err(e) => {
                        eprintln!("vellum: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Export {
                out,
                from,
                to,
                database_url,
            } => match settings(cli.config.as_ref(), database_url.as_ref()) {
                Ok(s) => evidence_cli::export(&s, &out, from, to).await,
                Err(e) => {
                    eprintln!("vellum: {e}");
                    ExitCode::from(2)
                }
            },
            Command::Proof {
                id,
                out,
                database_url,
            } => match settings(cli.config.as_ref(), database_url.as_ref()) {
                Ok(s) => evidence_cli::proof(&s, &id, &out).await,
                Err(e) => {
                    eprintln!("vellum: {e}");
                    ExitCode::from(2)
                }
            },
            Command::Keygen { .. } | Command::VerifyProof { .. } => ExitCode::from(2), // handled above
            Command::Migrate { database_url } => {
                migrate(cli.config.as_ref(), database_url.as_ref()).await
            }
            Command::Hash {
                verify: Some(id),
                database_url,
                json,
                ..
            } => verify_event(cli.config.as_ref(), database_url.as_ref(), &id, json).await,
            Command::Demo {
                events,
                seed,
                database_url,
            } => demo(cli.config.as_ref(), database_url.as_ref(), events, seed).await,
            Command::Hash { .. } => ExitCode::from(2), // handled above
        }
    })
}

async fn serve(config: Option<&PathBuf>) -> ExitCode {
    let s = match settings(config, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    vellum::telemetry::init(&s.log);
    let app = match Application::build(&s).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        port = app.port(),
        mllp_ports = ?app.mllp_ports(),
        backend = app.ledger().backend_name(),
        "vellum listening"
    );
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vellum: {e}");
            ExitCode::from(1)
        }
    }
}

async fn open_store(
    config: Option<&PathBuf>,
    database_url: Option<&String>,
) -> Result<AnyStore, ExitCode> {
    let s = settings(config, database_url).map_err(|e| {
        eprintln!("vellum: {e}");
        ExitCode::from(2)
    })?;
    AnyStore::connect(&s.database_url, s.database_role.as_deref())
        .await
        .map_err(|e| {
            eprintln!("vellum: cannot open the store: {e}");
            ExitCode::from(2)
        })
        .map(|s| s.with_indexer(vellum::fhir::search_index::rows_for_body))
}

async fn demo(
    config: Option<&PathBuf>,
    database_url: Option<&String>,
    events: u64,
    seed: u64,
) -> ExitCode {
    let s = match settings(config, database_url) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    match vellum::demo::run_configured(&s, events, seed).await {
        Ok(sum) => {
            println!(
                "demo: {} events ({} new), {} inferences; see /ui/ and /reports/overrides",
                sum.events, sum.created, sum.inferences
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vellum: demo failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn migrate(config: Option<&PathBuf>, database_url: Option<&String>) -> ExitCode {
    let store = match open_store(config, database_url).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    match store.migrate().await {
        Ok(()) => {
            println!("migrated ({})", store.backend_name());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vellum: migration failed: {e}");
            ExitCode::from(2)
        }
    }
}

/// `vellum hash`: exit 0 when every input was read (skipped files are
/// reported, not failures), 2 on a missing path or an I/O error.
fn hash(paths: &[PathBuf], json: bool, workers: Option<usize>) -> ExitCode {
    use vellum::dicom::{digest, report};
    let files = match report::collect_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    let workers = workers.unwrap_or_else(digest::default_workers);
    // The CLI reads no configuration: the default header bounds apply.
    let limits = vellum::config::HeaderLimits::default();
    let outcomes = digest::hash_files(&files, workers, &limits);
    let report = report::Report::new(files.iter().map(|p| p.display().to_string()).zip(outcomes));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("vellum: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.to_text());
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        for e in &report.errors {
            eprintln!("vellum: {}", e.reason);
        }
        ExitCode::from(2)
    }
}

/// `vellum hash --verify <event id>`.
async fn verify_event(
    config: Option<&PathBuf>,
    database_url: Option<&String>,
    id: &str,
    json: bool,
) -> ExitCode {
    use vellum::dicom::verify::{verify_event, Verdict};
    let s = match settings(config, database_url) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    let service = match vellum::dicom::service::DicomService::new(&s.dicom) {
        Ok(d) if d.has_sources() => d,
        Ok(_) => {
            eprintln!("vellum: no [dicom] study source is configured");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match open_store(config, database_url).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    let entry = match store.get_by_id(id).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            eprintln!("vellum: AuditEvent/{id} is not stored");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("vellum: cannot read the store: {e}");
            return ExitCode::from(2);
        }
    };
    let checks = verify_event(&service, entry.body.as_bytes()).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        for c in &checks {
            println!(
                "{:?}  study {}  recorded={} ({:?} instances)  now={} ({:?} instances)  {}",
                c.verdict,
                c.study_instance_uid,
                c.recorded.as_deref().unwrap_or("-"),
                c.recorded_instances,
                c.now.as_deref().unwrap_or("-"),
                c.now_instances,
                c.detail
            );
        }
    }
    if checks.is_empty() {
        eprintln!("vellum: AuditEvent/{id} references no DICOM study");
        ExitCode::from(2)
    } else if checks.iter().any(|c| c.verdict == Verdict::Mismatch) {
        ExitCode::from(1)
    } else if checks.iter().all(|c| c.verdict == Verdict::Match) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
