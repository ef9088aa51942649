//! The `mugaika` command line: `serve`, `sanitize`, `check-config`, `queue`.
//!
//! Exit codes follow sysexits(3), because mail administrators script around them: 0 success,
//! 64 usage, 65 (EX_DATAERR) a message refused by policy, 75 (EX_TEMPFAIL) an internal error or
//! timeout, 78 (EX_CONFIG) a bad configuration. Every failure prints one line saying why.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use mugaika::config::{Config, LogFormat};
use mugaika::deliver;
use mugaika::pipeline::{self, Context, Report, SanitizeError};
use mugaika::quarantine::Quarantine;
use mugaika::smtp::server;
use mugaika::spool::Spool;

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(name = "mugaika", version, about = "Mail sanitisation (無害化) relay")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (built-in defaults without --config).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Sanitise message files: one INPUT (or - for stdin) to -o FILE (or stdout), or several
    /// files and directories to -o DIR.
    Sanitize {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write: a file for one input (default stdout), a directory for several.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write a JSON record of every action to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Message files or directories of them; `-` or nothing reads standard input.
        inputs: Vec<PathBuf>,
    },
    /// Which [[policy]] rule applies to a message for each recipient, why, and every action
    /// it would take (the real pipeline, into a temporary file); delivers nothing.
    Explain {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The message file.
        message: PathBuf,
        /// An envelope recipient (repeat for several).
        #[arg(long = "rcpt", required = true)]
        rcpt: Vec<String>,
        /// The envelope sender (default: the message's Return-Path, else its From address);
        /// "<>" for the null sender.
        #[arg(long)]
        sender: Option<String>,
        /// The SMTP client's address.
        #[arg(long)]
        client: Option<std::net::IpAddr>,
        /// Treat the sender as a first contact.
        #[arg(long)]
        first_contact: bool,
    },
    /// Check a configuration file and print the problem, if any, and warnings about policy
    /// rules that can never apply (exit 0 with warnings, 78 on an error).
    CheckConfig {
        /// The file to check (or use --config).
        file: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Make the running server re-read its configuration file (as SIGHUP does). The file is
    /// checked first; an invalid one is reported here and the server keeps the old one.
    Reload {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Inspect and manage the delivery queue.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// The quarantine of originals: list, show, export, release, unlock (PPAP), purge.
    Quarantine {
        #[command(subcommand)]
        action: mugaika::quarantine::cli::Command,
    },
    /// Internal: renders the PDF on standard input for `pdf = "rasterize"` (mugaika runs
    /// itself with this, in a child process with its own resource limits).
    #[command(name = "rasterize-worker", hide = true)]
    RasterizeWorker(mugaika::cdr::raster::WorkerArgs),
}

#[derive(Subcommand)]
enum QueueAction {
    /// List queued messages with their recipients and states.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Make every queued message due for delivery now.
    Flush {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Remove one queued message (it is not delivered and no bounce is sent).
    Remove {
        id: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A panic anywhere is a temporary failure with a reason, never an abort with a backtrace
    // that a wrapper script cannot interpret.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("mugaika: internal error: {info}");
    }));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(code) => code,
        Err(_) => ExitCode::from(EX_TEMPFAIL),
    }
}

fn run(cli: Cli) -> ExitCode {
    // `pdf = "rasterize"` renders in a child process: this same binary, re-executed.
    if let Ok(exe) = std::env::current_exe() {
        mugaika::cdr::raster::set_worker(exe);
    }
    match cli.command {
        Command::RasterizeWorker(args) => ExitCode::from(mugaika::cdr::raster::worker_main(&args)),
        Command::Serve { config } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(&cfg);
            match serve(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mugaika: {e:#}");
                    ExitCode::from(EX_TEMPFAIL)
                }
            }
        }
        Command::Sanitize {
            config,
            output,
            report,
            inputs,
        } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            sanitize(&cfg, &inputs, output.as_deref(), report.as_deref())
        }
        Command::Explain {
            config,
            message,
            rcpt,
            sender,
            client,
            first_contact,
        } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let req = mugaika::policy::explain::Request {
                message: &message,
                recipients: &rcpt,
                sender: sender.as_deref(),
                client,
                first_contact,
            };
            explain(&cfg, &req)
        }
        Command::CheckConfig { file, config } => {
            let Some(path) = file.or(config) else {
                eprintln!("mugaika: check-config needs a FILE");
                return ExitCode::from(EX_USAGE);
            };
            match Config::load(&path) {
                Ok(cfg) => {
                    // Warnings (rules that can never apply) do not make the file invalid.
                    let warnings = mugaika::policy::Policies::new(&cfg)
                        .map(|p| p.shadowed())
                        .unwrap_or_default();
                    for w in &warnings {
                        println!("{}: warning: {w}", path.display());
                    }
                    match warnings.len() {
                        0 => println!("{}: OK", path.display()),
                        n => println!("{}: OK with {n} warning(s)", path.display()),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mugaika: {e}");
                    ExitCode::from(EX_CONFIG)
                }
            }
        }
        Command::Queue { action } => queue(action),
        Command::Quarantine { action } => ExitCode::from(mugaika::quarantine::cli::run(action)),
        Command::Reload { config } => reload(config),
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    Config::load_or_default(path).map_err(|e| {
        eprintln!("mugaika: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Runs the relay: the SMTP server and the queue manager side by side, joined by a channel of
/// newly committed spool ids, until SIGTERM or SIGINT; then both drain (the server stops
/// accepting and finishes its sessions, the manager finishes deliveries in flight).
fn serve(cfg: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    // Before the runtime exists: a PostgreSQL index connects here, blocking.
    let quarantine = Quarantine::open(&cfg.quarantine)
        .with_context(|| format!("quarantine {}", cfg.quarantine.dir.display()))?;
    let spool = Spool::open(&cfg.spool.dir)
        .with_context(|| format!("spool {}", cfg.spool.dir.display()))?
        .with_quarantine(quarantine.clone());
    let spool = Arc::new(spool);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mugaika")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let (queued_tx, queued_rx) = tokio::sync::mpsc::unbounded_channel();
        // Live reload: SIGHUP re-reads the file; a valid configuration is published to the
        // server and the queue manager, an invalid one is logged and the old one kept.
        let (reload_tx, reload_rx) = tokio::sync::watch::channel(cfg.clone());
        let reloader = tokio::spawn(reload_on_sighup(config_path, reload_tx));
        tracing::info!(
            listen = ?cfg.server.listen,
            next_hop = %cfg.delivery.next_hop,
            spool = %cfg.spool.dir.display(),
            "mugaika starting"
        );
        // Retention: a first purge at once (it also re-indexes orphan blobs), then every
        // purge_interval.
        let purger = tokio::spawn(mugaika::quarantine::purge_every(
            quarantine.clone(),
            cfg.quarantine.purge_interval.0,
        ));
        let manager = tokio::spawn(deliver::run(
            cfg.clone(),
            spool.clone(),
            queued_rx,
            stopped(stop_rx.clone()),
            reload_rx.clone(),
        ));
        // The admin listener (health, readiness, metrics, quarantine API and page) runs until
        // the relay has drained, so /readyz can say "shutting down" meanwhile. It is not
        // essential to mail: when it cannot start, the relay runs on with an error logged.
        let readiness = Arc::new(mugaika::admin::Readiness::default());
        readiness.set_spool_open(true);
        let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let admin = if cfg.admin.enabled {
            let started = async {
                let admin = mugaika::admin::Admin::new(
                    cfg.clone(),
                    spool.clone(),
                    Some(quarantine.clone()),
                    readiness.clone(),
                )?;
                let listener = admin.bind().await?;
                Ok::<_, mugaika::admin::AdminError>((admin, listener))
            };
            match started.await {
                Ok((admin, listener)) => Some(tokio::spawn(admin.serve(listener, async {
                    let _ = admin_stop_rx.await;
                }))),
                Err(e) => {
                    tracing::error!(error = %e, "admin: not started; the relay runs without it");
                    None
                }
            }
        } else {
            None
        };
        // server::run, spelled out so that readiness is known once the listeners are bound.
        let server = {
            let cfg = cfg.clone();
            let spool = spool.clone();
            let shutdown = stopped(stop_rx.clone());
            let mut reloads = reload_rx.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let sanitizer: Arc<dyn server::Sanitize> =
                    Arc::new(server::Pipeline::new(cfg.clone()));
                let smtp = server::Server::new(cfg, spool, sanitizer, Some(queued_tx))?;
                let listeners = smtp.bind().await?;
                readiness.set_smtp_bound(true);
                let reloader = {
                    let smtp = smtp.clone();
                    tokio::spawn(async move {
                        while reloads.changed().await.is_ok() {
                            let cfg = reloads.borrow_and_update().clone();
                            match smtp.reload(cfg, None) {
                                Ok(()) => tracing::info!("smtp: configuration reloaded"),
                                Err(e) => tracing::error!(
                                    error = %e,
                                    "smtp: reload refused, old configuration kept"
                                ),
                            }
                        }
                    })
                };
                smtp.serve(listeners, shutdown).await;
                reloader.abort();
                readiness.set_smtp_bound(false);
                Ok::<(), server::ServerError>(())
            })
        };
        let stop_tx = Arc::new(stop_tx);
        let signals = {
            let stop_tx = stop_tx.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutdown requested: draining sessions and deliveries");
                readiness.set_stopping();
                let _ = stop_tx.send(true);
            })
        };
        let served = server.await.context("server task")?.context("server");
        readiness.set_stopping();
        // The server also ends on its own after a bind or TLS error: stop the manager then
        // too (its deliveries in flight finish or stay queued; nothing is lost).
        signals.abort();
        purger.abort();
        reloader.abort();
        let _ = stop_tx.send(true);
        manager
            .await
            .context("queue manager task")?
            .context("queue manager")?;
        if let Some(admin) = admin {
            let _ = admin_stop_tx.send(());
            // Open keep-alive connections must not hold the exit up.
            let admin_abort = admin.abort_handle();
            match tokio::time::timeout(std::time::Duration::from_secs(5), admin).await {
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "admin server"),
                Ok(_) => {}
                Err(_) => admin_abort.abort(),
            }
        }
        tracing::info!("mugaika stopped");
        served
    })
}

/// Publishes the configuration file anew at every SIGHUP, when it is valid.
async fn reload_on_sighup(path: Option<PathBuf>, tx: tokio::sync::watch::Sender<Arc<Config>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("reload: cannot listen for SIGHUP");
        return;
    };
    while hup.recv().await.is_some() {
        let Some(path) = &path else {
            tracing::warn!("reload: SIGHUP ignored, serve runs on built-in defaults (no --config)");
            continue;
        };
        // Reading and validating the file is blocking work (and cheap).
        let p = path.clone();
        match tokio::task::spawn_blocking(move || Config::load(&p)).await {
            Ok(Ok(cfg)) => {
                tracing::info!(config = %path.display(), "reload: configuration is valid, applying");
                tx.send_replace(Arc::new(cfg));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload: invalid configuration refused, old one kept")
            }
            Err(e) => tracing::error!(error = %e, "reload: task failed, old configuration kept"),
        }
    }
}

/// `mugaika reload`: checks the file, then signals the server holding the spool.
fn reload(config: Option<PathBuf>) -> ExitCode {
    let cfg = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match Spool::server_pid(&cfg.spool.dir) {
        Ok(Some(pid)) => {
            let Ok(raw) = i32::try_from(pid) else {
                eprintln!("mugaika: bad pid {pid} in the spool lock");
                return ExitCode::from(EX_TEMPFAIL);
            };
            use nix::sys::signal::{kill, Signal};
            match kill(nix::unistd::Pid::from_raw(raw), Signal::SIGHUP) {
                Ok(()) => {
                    println!("reload requested from mugaika serve (pid {pid})");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mugaika: cannot signal pid {pid}: {e}");
                    ExitCode::from(EX_TEMPFAIL)
                }
            }
        }
        Ok(None) => {
            eprintln!(
                "mugaika: no server is running on spool {}",
                cfg.spool.dir.display()
            );
            ExitCode::from(EX_TEMPFAIL)
        }
        Err(e) => {
            eprintln!("mugaika: {e}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn queue(action: QueueAction) -> ExitCode {
    let config = match &action {
        QueueAction::List { config } | QueueAction::Flush { config } => config,
        QueueAction::Remove { config, .. } => config,
    };
    let cfg = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = (|| -> anyhow::Result<()> {
        let spool = Spool::attach(&cfg.spool.dir)
            .with_context(|| format!("spool {}", cfg.spool.dir.display()))?;
        match action {
            QueueAction::List { .. } => {
                let entries = deliver::queue_list(&spool)?;
                let mut out = std::io::stdout().lock();
                for e in &entries {
                    let sender = if e.sender.is_empty() { "<>" } else { &e.sender };
                    writeln!(
                        out,
                        "{}  {:>9} bytes  {}  from {}  attempts {}",
                        e.id,
                        e.size,
                        format_ms(e.queued_at),
                        sender,
                        e.attempts
                    )?;
                    for r in &e.recipients {
                        let reply = r.last_reply.as_deref().unwrap_or("");
                        writeln!(
                            out,
                            "    {:<9} {}  {}",
                            format!("{:?}", r.state).to_lowercase(),
                            r.addr,
                            reply
                        )?;
                    }
                }
                writeln!(out, "{} message(s) queued", entries.len())?;
            }
            QueueAction::Flush { .. } => {
                deliver::flush(&spool)?;
                println!("flush requested: a running server retries every queued message now");
            }
            QueueAction::Remove { id, .. } => {
                deliver::remove(&spool, &id).with_context(|| format!("cannot remove {id}"))?;
                println!("{id} removed");
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mugaika: {e:#}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}

/// Unix milliseconds as an RFC 3339 UTC time, for listings.
fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant), enough for a listing without a date crate.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The outcome of one input, for the summary and the report.
#[derive(serde::Serialize)]
struct Outcome {
    input: String,
    output: Option<String>,
    result: &'static str,
    reason: Option<String>,
    report: Option<Report>,
}

fn sanitize(
    cfg: &Config,
    inputs: &[PathBuf],
    output: Option<&Path>,
    report_path: Option<&Path>,
) -> ExitCode {
    let ctx = Context::default();
    let stdin = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() {
        &stdin[..]
    } else {
        inputs
    };
    let many = inputs.len() > 1 || inputs.iter().any(|p| p.is_dir());
    let outcomes = if many {
        let Some(dir) = output else {
            eprintln!("mugaika: several inputs need -o DIR");
            return ExitCode::from(EX_USAGE);
        };
        match sanitize_many(cfg, &ctx, inputs, dir) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("mugaika: {e:#}");
                return ExitCode::from(EX_TEMPFAIL);
            }
        }
    } else {
        vec![sanitize_one(cfg, &ctx, &inputs[0], output)]
    };

    if let Some(path) = report_path {
        let json = if many {
            serde_json::to_string_pretty(&outcomes)
        } else {
            serde_json::to_string_pretty(&outcomes[0])
        };
        let written = json
            .map_err(anyhow::Error::from)
            .and_then(|j| write_atomically(path, j.as_bytes()));
        if let Err(e) = written {
            eprintln!("mugaika: cannot write report {}: {e:#}", path.display());
            return ExitCode::from(EX_TEMPFAIL);
        }
    }

    let count = |r: &str| outcomes.iter().filter(|o| o.result == r).count();
    let (ok, rejected, failed) = (count("sanitized"), count("rejected"), count("failed"));
    if many {
        eprintln!(
            "mugaika: {} inputs: {ok} sanitized, {rejected} rejected, {failed} failed",
            outcomes.len()
        );
    } else if let Some(reason) = &outcomes[0].reason {
        eprintln!("mugaika: {}: {reason}", outcomes[0].input);
    }
    if failed > 0 {
        ExitCode::from(EX_TEMPFAIL)
    } else if rejected > 0 {
        ExitCode::from(EX_DATAERR)
    } else {
        ExitCode::SUCCESS
    }
}

/// Sanitises one input to a file (written atomically) or to standard output.
fn sanitize_one(cfg: &Config, ctx: &Context, input: &Path, output: Option<&Path>) -> Outcome {
    let name = input.display().to_string();
    let result = (|| -> Result<Report, SanitizeError> {
        let internal = |e: std::io::Error| SanitizeError::Internal(e.to_string());
        let (out_dir, final_path) = match output {
            Some(p) if p != Path::new("-") => {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                (dir.unwrap_or(Path::new(".")).to_path_buf(), Some(p))
            }
            _ => (std::env::temp_dir(), None),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".mugaika-out-")
            .tempfile_in(&out_dir)
            .map_err(internal)?;
        let report = if input == Path::new("-") {
            pipeline::sanitize_reader(std::io::stdin().lock(), cfg, ctx, tmp.path())?
        } else {
            pipeline::sanitize_file(input, cfg, ctx, tmp.path())?
        };
        match final_path {
            Some(p) => {
                tmp.persist(p).map_err(|e| internal(e.error))?;
            }
            None => {
                let mut f = std::fs::File::open(tmp.path()).map_err(internal)?;
                let mut out = std::io::stdout().lock();
                std::io::copy(&mut f, &mut out).map_err(internal)?;
                out.flush().map_err(internal)?;
            }
        }
        Ok(report)
    })();
    outcome(name, output.map(|p| p.display().to_string()), result)
}

fn outcome(input: String, output: Option<String>, r: Result<Report, SanitizeError>) -> Outcome {
    match r {
        Ok(report) => Outcome {
            input,
            output,
            result: "sanitized",
            reason: None,
            report: Some(report),
        },
        Err(SanitizeError::Rejected(reason)) => Outcome {
            input,
            output: None,
            result: "rejected",
            reason: Some(format!("rejected: {reason}")),
            report: None,
        },
        Err(e) => Outcome {
            input,
            output: None,
            result: "failed",
            reason: Some(e.to_string()),
            report: None,
        },
    }
}

/// Sanitises files and directories (not recursively) into `dir`, one clean message each.
fn sanitize_many(
    cfg: &Config,
    ctx: &Context,
    inputs: &[PathBuf],
    dir: &Path,
) -> anyhow::Result<Vec<Outcome>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(input.clone());
        }
    }
    let mut outcomes = Vec::with_capacity(files.len());
    let mut used = std::collections::HashSet::new();
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "message".into());
        // Two inputs with the same name (from different directories) must not overwrite
        // each other's output.
        let mut name = format!("{stem}.eml");
        let mut n = 1;
        while !used.insert(name.clone()) {
            n += 1;
            name = format!("{stem}-{n}.eml");
        }
        let out = dir.join(name);
        let o = sanitize_one(cfg, ctx, &file, Some(&out));
        if let Some(reason) = &o.reason {
            eprintln!("mugaika: {}: {reason}", file.display());
        }
        outcomes.push(o);
    }
    Ok(outcomes)
}

fn write_atomically(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".mugaika-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.persist(path)?;
    Ok(())
}

/// `mugaika explain`: the explanation on standard output; 0, or 64 / 75 when it cannot run.
fn explain(cfg: &Config, req: &mugaika::policy::explain::Request) -> ExitCode {
    use mugaika::policy::explain::ExplainError;
    let mut out = std::io::stdout().lock();
    match mugaika::policy::explain::explain(cfg, req, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mugaika: explain: {e}");
            match e {
                ExplainError::NoRecipients => ExitCode::from(EX_USAGE),
                ExplainError::Config(_) => ExitCode::from(EX_CONFIG),
                _ => ExitCode::from(EX_TEMPFAIL),
            }
        }
    }
}
