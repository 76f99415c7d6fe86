//! The `vellum` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

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
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BUILD_GIT_COMMIT"), ")"),
    about = "Tamper-evident FHIR AuditEvent repository",
    after_help = "Examples:\n  vellum serve --database-url sqlite://vellum.db --http-addr 127.0.0.1:8080\n  vellum verify --database-url postgres://vellum@db.example/vellum\n  vellum hash /data/studies/1.2.3\n\nEvery setting can also come from a TOML file (--config) or a VELLUM_* variable; see docs/configuration.md."
)]
struct Cli {
    /// TOML configuration file (VELLUM_* environment variables win over it).
    // hide_env_values: `--help` must never print what the environment holds.
    #[arg(
        long,
        global = true,
        env = "VELLUM_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `--database-url`, shared by every command that opens the store.
#[derive(Args, Clone, Default)]
struct Db {
    /// The store: sqlite://PATH or postgres://USER@HOST:PORT/DB. Wins over
    /// VELLUM_DATABASE_URL and the config file (default sqlite://vellum.db).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: FHIR/HTTP, MLLP and the configured listeners.
    #[command(
        after_help = "Examples:\n  vellum serve\n  vellum serve --database-url postgres://vellum@127.0.0.1/vellum --http-addr 0.0.0.0:8080 --mllp-addr ''\n  VELLUM_LOG_FORMAT=json vellum serve --config /etc/vellum/vellum.toml"
    )]
    Serve {
        #[command(flatten)]
        db: Db,
        /// HTTP listen address: host:port, localhost:port or a port
        /// (loopback). Wins over VELLUM_HTTP_ADDR (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        http_addr: Option<String>,
        /// Plain MLLP listen addresses, comma-separated; empty turns plain
        /// MLLP off. Wins over VELLUM_MLLP_ADDR (default 127.0.0.1:2575).
        #[arg(long, value_name = "ADDR[,ADDR…]")]
        mllp_addr: Option<String>,
    },
    /// Recompute every hash, chain link, Merkle root and checkpoint
    /// signature; exit 0 when all hold, 1 on tampering, 2 when it cannot
    /// check (no database, connection refused, bad usage).
    #[command(
        after_help = "Examples:\n  vellum verify --database-url sqlite://vellum.db\n  vellum verify --json --database-url postgres://vellum@db/vellum\n  vellum verify --export ./evidence --tsa-ca tsa-ca.pem"
    )]
    Verify {
        #[command(flatten)]
        db: Db,
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
        /// PEM certificates of the trusted time-stamping authorities: the
        /// RFC 3161 time seals are checked against them (default: the
        /// configured tsa_ca_file; for --export, required to check seals).
        #[arg(long, value_name = "FILE")]
        tsa_ca: Option<PathBuf>,
        /// A witness's cosigner key (witness.vkey) whose cosignature the
        /// export's checkpoint must carry (--export; repeatable).
        #[arg(long, value_name = "FILE")]
        witness_vkey: Vec<PathBuf>,
    },
    /// Create a checkpoint signing key: DIR/log.key (0600) and DIR/log.vkey;
    /// with --witness, a witness key: DIR/witness.key and DIR/witness.vkey.
    #[command(
        after_help = "Examples:\n  vellum keygen --origin vellum.example.org/log --out /etc/vellum/keys\n  vellum keygen --witness --origin witness.example.org/w1 --out /etc/vellum/keys"
    )]
    Keygen {
        /// The log's name, written into every checkpoint (with --witness:
        /// the witness's name, written into every cosignature).
        #[arg(long)]
        origin: String,
        /// Directory to write the key files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Make a witness (cosigner) key instead of a log key.
        #[arg(long)]
        witness: bool,
    },
    /// Sign and store a checkpoint of the current head; print it.
    #[command(
        after_help = "Example:\n  VELLUM_SIGNING_KEY_FILE=/etc/vellum/keys/log.key vellum checkpoint --database-url sqlite://vellum.db"
    )]
    Checkpoint {
        #[command(flatten)]
        db: Db,
    },
    /// Write entries.jsonl, checkpoint and log.vkey for offline verification.
    #[command(
        after_help = "Example:\n  vellum export --out ./evidence --database-url sqlite://vellum.db\n  vellum verify --export ./evidence"
    )]
    Export {
        /// Directory to write the export into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// First seq to include (default 1).
        #[arg(long, value_name = "SEQ")]
        from: Option<i64>,
        /// Last seq to include (default: the head).
        #[arg(long, value_name = "SEQ")]
        to: Option<i64>,
        #[command(flatten)]
        db: Db,
    },
    /// Write an offline inclusion-proof bundle for one event.
    #[command(
        after_help = "Example:\n  vellum proof --id 6f1c…e2 --out proof.json --database-url sqlite://vellum.db\n  vellum verify-proof proof.json --vkey log.vkey"
    )]
    Proof {
        /// The AuditEvent id.
        #[arg(long, value_name = "EVENT_ID")]
        id: String,
        /// File to write the proof bundle to.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        db: Db,
    },
    /// Check a proof bundle offline: exit 0 proven, 1 not.
    #[command(after_help = "Example:\n  vellum verify-proof proof.json --vkey log.vkey")]
    VerifyProof {
        /// The proof bundle (from `vellum proof`).
        file: PathBuf,
        /// The log's verifier key (log.vkey).
        #[arg(long, value_name = "FILE")]
        vkey: PathBuf,
        /// A witness's cosigner key (witness.vkey) whose cosignature the
        /// bundle's checkpoint must carry (repeatable).
        #[arg(long, value_name = "FILE")]
        witness_vkey: Vec<PathBuf>,
    },
    /// Pixel-data digests of DICOM files and folders (docs/dicom.md):
    /// instance digests, skipped files with reasons, study digests.
    #[command(
        after_help = "Examples:\n  vellum hash /data/studies/1.2.840.1\n  vellum hash --json a.dcm b.dcm | jq 'select(.type == \"study\")'\n  vellum hash --verify 6f1c…e2 --database-url sqlite://vellum.db\n\nWith --json the output is JSON Lines, streamed as files finish: one\n{\"type\":\"instance\"|\"skipped\"|\"error\",…} record per file (in completion\norder), then one {\"type\":\"study\",…} record per study. A progress bar is\ndrawn on stderr only when it is a terminal."
    )]
    Hash {
        /// Files and folders (searched recursively).
        #[arg(required_unless_present = "verify")]
        paths: Vec<PathBuf>,
        /// Re-hash the studies a stored event recorded digests for (from the
        /// configured `[dicom]` sources) and compare: exit 0 when all match,
        /// 1 when any differs, 2 when one cannot be checked.
        #[arg(long, value_name = "EVENT_ID", conflicts_with = "paths")]
        verify: Option<String>,
        #[command(flatten)]
        db: Db,
        /// Print JSON Lines (hashing) or a JSON document (--verify).
        #[arg(long)]
        json: bool,
        /// Files hashed at once (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Fill the configured store with reproducible demo AI traffic
    /// (inferences, renderings, overrides) through the normal intake.
    #[command(
        after_help = "Example:\n  vellum demo --events 2000 --database-url sqlite://demo.db"
    )]
    Demo {
        /// Events to store (at least; whole cases).
        #[arg(long, default_value_t = 2000)]
        events: u64,
        /// The same seed gives the same events (and a rerun adds nothing).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        db: Db,
    },
    /// Recompute the detection rules' alerts over a stored period (JSON Lines).
    #[command(
        after_help = "Example:\n  vellum detect --from 2026-03-01 --to 2026-04-01 --database-url sqlite://vellum.db\n\nOne JSON object per alert whose window starts in [from, to), as GET /reports/detections\nanswers; the [detection] settings of the configuration apply. See docs/siem.md."
    )]
    Detect {
        /// Alerts whose window starts at or after this (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Alerts whose window starts before this (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        #[command(flatten)]
        db: Db,
    },
    /// Bearer tokens for the HTTP API.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Apply database migrations and exit.
    #[command(
        after_help = "Examples:\n  vellum migrate --database-url sqlite://vellum.db\n  vellum migrate --database-url postgres://postgres@127.0.0.1/vellum"
    )]
    Migrate {
        #[command(flatten)]
        db: Db,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  vellum completions bash > /etc/bash_completion.d/vellum")]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  vellum man > /usr/local/share/man/man1/vellum.1")]
    Man,
}

#[derive(Subcommand, Debug)]
enum TokenAction {
    /// Make a new random token: print it once, and the grant line (its
    /// SHA-256, subject and roles) to add to `auth.tokens` or the token file.
    ///
    /// Example: vellum token create --subject pacs-01 --roles source
    Create {
        /// Who the token authenticates (a system or user name; for a
        /// clinician, the identifier they appear under as an event agent).
        #[arg(long)]
        subject: String,
        /// Comma-separated roles: source, auditor, qa, clinician, admin.
        #[arg(long)]
        roles: String,
        /// Also append the grant line to this token file (created 0600).
        #[arg(long, value_name = "FILE")]
        append_to: Option<PathBuf>,
    },
}

fn settings(config: Option<&PathBuf>, database_url: Option<&String>) -> Result<Settings, String> {
    let mut s = Settings::load(config.map(|p| p.as_path())).map_err(|e| e.to_string())?;
    if let Some(url) = database_url {
        s.database_url = DatabaseUrl::parse(url).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

/// [`settings`] for commands that read an existing store: a SQLite file
/// that does not exist is an error (opening it would create it).
fn existing_store_settings(
    config: Option<&PathBuf>,
    database_url: Option<&String>,
) -> Result<Settings, String> {
    let s = settings(config, database_url)?;
    if let DatabaseUrl::Sqlite(path) = &s.database_url {
        if !path.exists() {
            return Err(format!(
                "no SQLite database at {} (nothing was created; `vellum migrate` creates one)",
                path.display()
            ));
        }
    }
    Ok(s)
}

/// Warns about `VELLUM_*` variables that are not settings (a misspelt
/// name would otherwise be ignored without a word).
fn warn_unknown_variables() {
    for name in vellum::config::unknown_variables() {
        eprintln!(
            "vellum: warning: {name} is not a vellum setting and is ignored (see docs/configuration.md)"
        );
    }
}

fn main() -> ExitCode {
    vellum::telemetry::install_panic_hook();
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "vellum",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vellum: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    warn_unknown_variables();
    match &cli.command {
        Command::Keygen {
            origin,
            out,
            witness,
        } => return evidence_cli::keygen(origin, out, *witness),
        Command::Token {
            action:
                TokenAction::Create {
                    subject,
                    roles,
                    append_to,
                },
        } => return token_create(subject, roles, append_to.as_deref()),
        Command::VerifyProof {
            file,
            vkey,
            witness_vkey,
        } => return evidence_cli::verify_proof(file, vkey, witness_vkey),
        Command::Verify {
            export: Some(dir),
            vkey,
            json,
            tsa_ca,
            witness_vkey,
            ..
        } => {
            return evidence_cli::verify_export(
                dir,
                vkey.as_ref(),
                tsa_ca.as_deref(),
                witness_vkey,
                *json,
            )
        }
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
    let Cli {
        config: config_file,
        command,
    } = cli;
    let config = config_file.as_ref();
    let usage = |e: String| {
        eprintln!("vellum: {e}");
        ExitCode::from(2)
    };
    rt.block_on(async move {
        match command {
            Command::Serve {
                db,
                http_addr,
                mllp_addr,
            } => serve(config, &db, http_addr.as_deref(), mllp_addr.as_deref()).await,
            Command::Verify {
                db,
                json,
                vkey,
                tsa_ca,
                ..
            } => match existing_store_settings(config, db.database_url.as_ref()) {
                Ok(s) => evidence_cli::verify(&s, vkey.as_ref(), tsa_ca.as_deref(), json).await,
                Err(e) => usage(e),
            },
            Command::Checkpoint { db } => {
                match existing_store_settings(config, db.database_url.as_ref()) {
                    Ok(s) => evidence_cli::checkpoint(&s).await,
                    Err(e) => usage(e),
                }
            }
            Command::Export { out, from, to, db } => {
                match existing_store_settings(config, db.database_url.as_ref()) {
                    Ok(s) => evidence_cli::export(&s, &out, from, to).await,
                    Err(e) => usage(e),
                }
            }
            Command::Proof { id, out, db } => {
                match existing_store_settings(config, db.database_url.as_ref()) {
                    Ok(s) => evidence_cli::proof(&s, &id, &out).await,
                    Err(e) => usage(e),
                }
            }
            Command::Migrate { db } => migrate(config, db.database_url.as_ref()).await,
            Command::Hash {
                verify: Some(id),
                db,
                json,
                ..
            } => verify_event(config, db.database_url.as_ref(), &id, json).await,
            Command::Demo { events, seed, db } => {
                demo(config, db.database_url.as_ref(), events, seed).await
            }
            Command::Detect { from, to, db } => {
                match existing_store_settings(config, db.database_url.as_ref()) {
                    Ok(s) => detect(&s, from.as_deref(), to.as_deref()).await,
                    Err(e) => usage(e),
                }
            }
            // Handled above, before the runtime.
            Command::Keygen { .. }
            | Command::VerifyProof { .. }
            | Command::Token { .. }
            | Command::Hash { .. }
            | Command::Completions { .. }
            | Command::Man => ExitCode::from(2),
        }
    })
}

/// The settings of `serve`: file, environment, then the flags (which are
/// validated like the settings they replace).
fn serve_settings(
    config: Option<&PathBuf>,
    db: &Db,
    http_addr: Option<&str>,
    mllp_addr: Option<&str>,
) -> Result<Settings, String> {
    let overrides: Vec<(&'static str, String)> = [
        ("database_url", db.database_url.as_deref()),
        ("http_addr", http_addr),
        ("mllp_addr", mllp_addr),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?.to_string())))
    .collect();
    Settings::load_with(config.map(|p| p.as_path()), &overrides).map_err(|e| e.to_string())
}

async fn serve(
    config: Option<&PathBuf>,
    db: &Db,
    http_addr: Option<&str>,
    mllp_addr: Option<&str>,
) -> ExitCode {
    let s = match serve_settings(config, db, http_addr, mllp_addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    vellum::telemetry::init(&s.log, s.log_format);
    let app = match Application::build(&s).await {
        Ok(a) => a,
        Err(e) => {
            // Once, on stderr: the reason start-up stopped.
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        port = app.port(),
        mllp_ports = ?app.mllp_ports(),
        backend = app.ledger().backend_name(),
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("BUILD_GIT_COMMIT"),
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
        .map(|s| {
            s.with_indexer(vellum::fhir::search_index::derive_rows)
                .with_keyer(vellum::intake::keys::expected_key)
                .with_summarizer(vellum::radiology::summary::of_tape)
        })
}

/// `vellum detect`: the alerts of a period, recomputed from the store.
async fn detect(s: &Settings, from: Option<&str>, to: Option<&str>) -> ExitCode {
    let bound = |name: &str, v: Option<&str>| match v {
        None => Ok(None),
        Some(v) => vellum::detection::parse_bound(v)
            .map(Some)
            .ok_or_else(|| format!("--{name} must be a date (YYYY-MM-DD) or an RFC 3339 instant")),
    };
    let (from, to) = match (bound("from", from), bound("to", to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match AnyStore::connect(&s.database_url, s.database_role.as_deref()).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("vellum: cannot open the store: {e}");
            return ExitCode::from(2);
        }
    };
    let ledger = vellum::ledger::Ledger::start(store, vellum::ledger::WriterSettings::default());
    let settings = std::sync::Arc::new(s.detection.clone());
    match vellum::detection::recompute(&ledger, settings, from, to).await {
        Ok(r) => {
            for a in &r.alerts {
                match serde_json::to_string(a) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("vellum: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            eprintln!(
                "detect: {} alerts from {} entries evaluated",
                r.alerts.len(),
                r.entries
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vellum: reading the store failed: {e}");
            ExitCode::from(2)
        }
    }
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
    let writer_role = match settings(config, database_url) {
        Ok(s) => s.database_writer_role,
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match open_store(config, database_url).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    let migrated = match store.migrate().await {
        Ok(()) => store.grant_writer_role(&writer_role).await,
        Err(e) => Err(e),
    };
    match migrated {
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
/// reported, not failures), 2 on a missing path or an I/O error. Results
/// are printed as each file finishes; study digests at the end.
fn hash(paths: &[PathBuf], json: bool, workers: Option<usize>) -> ExitCode {
    use std::io::Write as _;
    use vellum::dicom::{digest, report};
    let files = match report::collect_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vellum: {e}");
            return ExitCode::from(2);
        }
    };
    let workers = workers.unwrap_or_else(digest::default_workers);
    let sizes: Vec<u64> = files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
    let progress = hash_progress(sizes.iter().sum(), files.len());
    let mut out = std::io::stdout().lock();
    let mut report = report::Report::default();
    let mut done = 0usize;
    // The CLI reads no configuration: the default header bounds apply.
    let limits = vellum::config::HeaderLimits::default();
    digest::hash_files_each(&files, workers, &limits, |i, outcome| {
        let kind = report.push(files[i].display().to_string(), outcome);
        let line = if json {
            report.last_line(kind).to_string()
        } else {
            report.last_text(kind)
        };
        // The bar is cleared around the line, so the two never interleave.
        progress.suspend(|| {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        });
        done += 1;
        progress.inc(sizes[i]);
        progress.set_message(format!("{done}/{} files", files.len()));
    });
    progress.finish_and_clear();
    report.finish();
    for study in report.study_lines() {
        let line = if json {
            study.to_string()
        } else {
            format!(
                "study {}  instances={}  {}  {}",
                study["study_instance_uid"].as_str().unwrap_or_default(),
                study["instances"],
                study["sha256_hex"].as_str().unwrap_or_default(),
                study["sha256_base64"].as_str().unwrap_or_default()
            )
        };
        let _ = writeln!(out, "{line}");
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

/// A byte progress bar on stderr, drawn only when stderr is a terminal
/// (indicatif hides it otherwise), so pipes and files get nothing extra.
fn hash_progress(total_bytes: u64, files: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total_bytes),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(format!("0/{files} files"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// `vellum hash --verify <event id>`.
async fn verify_event(
    config: Option<&PathBuf>,
    database_url: Option<&String>,
    id: &str,
    json: bool,
) -> ExitCode {
    use vellum::dicom::verify::{verify_event, StudyCheck, Verdict};
    use vellum::fhir::search_index::PIXEL_DIGEST_FOLLOWUP;
    let s = match existing_store_settings(config, database_url) {
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
    let mut checks = verify_event(&service, entry.body.as_bytes()).await;
    // A digest that was pending when the event was stored is recorded in
    // its follow-up event: check that one instead of saying "not recorded".
    for c in checks
        .iter_mut()
        .filter(|c| c.verdict == Verdict::NotRecorded)
    {
        let key = PIXEL_DIGEST_FOLLOWUP.key(id, &c.study_instance_uid);
        let Ok(Some(followup)) = store.entry_by_key(&key).await else {
            continue;
        };
        let recorded = verify_event(&service, followup.body.as_bytes())
            .await
            .into_iter()
            .find(|f| f.study_instance_uid == c.study_instance_uid && f.recorded.is_some());
        if let Some(f) = recorded {
            *c = StudyCheck {
                detail: format!(
                    "{}; digest recorded in follow-up AuditEvent/{}",
                    f.detail, followup.id
                ),
                ..f
            };
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        let instances =
            |n: Option<String>| n.map_or_else(|| "-".into(), |n| format!("{n} instances"));
        for c in &checks {
            println!(
                "{}: study {}\n  recorded {} ({})\n  now      {} ({})\n  {}",
                c.verdict.words(),
                c.study_instance_uid,
                c.recorded.as_deref().unwrap_or("-"),
                instances(c.recorded_instances.map(|n| n.to_string())),
                c.now.as_deref().unwrap_or("-"),
                instances(c.now_instances.map(|n| n.to_string())),
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

/// `vellum token create`: the token on stdout's first line, then the grant
/// line. Nothing else keeps the token.
fn token_create(subject: &str, roles: &str, append_to: Option<&std::path::Path>) -> ExitCode {
    use vellum::auth::{token, Grant, RoleSet};
    let roles = match RoleSet::parse_list(roles) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            eprintln!("error: --roles names no role (source, auditor, qa, clinician, admin)");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if subject.is_empty() || subject.chars().any(char::is_whitespace) {
        eprintln!("error: --subject must be non-empty and without spaces");
        return ExitCode::from(2);
    }
    let token = match token::generate() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: no random source: {e}");
            return ExitCode::from(2);
        }
    };
    let line = Grant::line_for(&token, subject, roles);
    if let Some(path) = append_to {
        if let Err(e) = vellum::auth::token_file::append(path, &line) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    println!("{token}");
    println!("{line}");
    eprintln!(
        "The first line is the token: give it to {subject}; it is not kept anywhere.\n\
         The second line is its grant: add it to auth.tokens (VELLUM_AUTH_TOKENS, `;`-separated)\n\
         or to the token file{}, then restart vellum.",
        append_to.map_or(String::new(), |p| format!(" (appended to {})", p.display()))
    );
    ExitCode::SUCCESS
}
